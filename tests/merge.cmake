# Merge numerics (kernels/merge): every method on hand-made vectors with known
# answers, top-k selection against a sort, DARE determinism and rescaling.
tadist_unit_test(test_merge test_merge.c)
