# The linear surrogate (kernels/surrogate): projections, the Gray-code
# screening against scoring every candidate from scratch, Spearman's rho.
tadist_unit_test(test_surrogate test_surrogate.c)
