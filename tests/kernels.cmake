# Single-process numerics that are not layers: optimizer, schedule, clipping.
tadist_unit_test(test_optim test_optim.c)
tadist_unit_test(test_parallel test_parallel.c)

# Start-up: a generic OpenBLAS kernel on an AVX2/AVX-512 CPU makes tadist
# re-execute itself with a suitable OPENBLAS_CORETYPE (the detection is faked
# with TADIST_TEST_BLAS_CORE; the log line names both core types).
add_test(NAME runtime_blas_coretype COMMAND env -u OPENBLAS_CORETYPE
         TADIST_TEST_BLAS_CORE=Prescott $<TARGET_FILE:tadist> init --arch vit_tiny --seed 1
         -o ${TADIST_TEST_OUT}/coretype.h5)
set_tests_properties(runtime_blas_coretype PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
    PASS_REGULAR_EXPRESSION "detected this CPU as Prescott; running with OPENBLAS_CORETYPE=(SkylakeX|Haswell)")
# A user's OPENBLAS_CORETYPE is never overridden.
add_test(NAME runtime_blas_user_coretype COMMAND env OPENBLAS_CORETYPE=Haswell
         TADIST_TEST_BLAS_CORE=Prescott $<TARGET_FILE:tadist> init --arch vit_tiny --seed 1
         -o ${TADIST_TEST_OUT}/coretype2.h5)
set_tests_properties(runtime_blas_user_coretype PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
    PASS_REGULAR_EXPRESSION "BLAS core Haswell" FAIL_REGULAR_EXPRESSION "detected this CPU")
