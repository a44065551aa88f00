# kernels/cmaes (the ask/tell CMA-ES of the coefficient search): evaluations to
# reach 1e-8 / 1e-10 on sphere, ellipsoid and Rosenbrock in 10-D against the
# published figures (medians of 11 seeds), linear convergence, C learning the
# inverse Hessian; bit-identical candidates for a seed (with a fixed checksum),
# stable ranking of ties and NaN, candidates inside the box with the optimum on
# bounds found, the default population size, argument errors.
tadist_unit_test(test_cmaes test_cmaes.c)
