# dist/safetensors, dist/model_io, dist/hf_names, `tadist import` and `tadist init`.
tadist_unit_test(test_safetensors test_safetensors.c)
tadist_unit_test(test_model_io test_model_io.c)
set_tests_properties(test_model_io PROPERTIES TIMEOUT 300)

# The commands under several ranks: only rank 0 works, every rank agrees on the outcome.
tadist_mpi_test(model_io_import_np2 2 $<TARGET_FILE:tadist> import ${TADIST_FIXTURES}/clip_tiny_a
                -o ${TADIST_TEST_OUT}/mio_np2_tiny_a.h5)
tadist_mpi_test(model_io_init_np3 3 $<TARGET_FILE:tadist> init --arch vit_tiny --seed 4
                -o ${TADIST_TEST_OUT}/mio_np3_init.h5)
# A failing import must end every rank with an error, not hang.
tadist_mpi_test(model_io_import_fail_np2 2 $<TARGET_FILE:tadist> import
                ${TADIST_FIXTURES}/no_such_model -o ${TADIST_TEST_OUT}/mio_np2_fail.h5)
set_tests_properties(model_io_import_fail_np2 PROPERTIES WILL_FAIL TRUE TIMEOUT 60)
