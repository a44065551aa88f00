# Shared HDF5 attribute helpers and mkdir -p (dist/io/h5util.c).
tadist_unit_test(test_h5util test_h5util.c)
