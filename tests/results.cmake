# results.json and grids.h5 (dist/io/results.c).
tadist_unit_test(test_results test_results.c)
