# Single-process numerics that are not layers: optimizer, schedule, clipping.
tadist_unit_test(test_optim test_optim.c)
tadist_unit_test(test_parallel test_parallel.c)
