# Coefficient searches (kernels/coef, dist/stages/coef_search.c, coef_learn.c):
# the structure's numerics and the entropy objective against direct
# computations (test_coef).
tadist_unit_test(test_coef test_coef.c)
