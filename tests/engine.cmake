# The ViT engine (kernels/vit, kernels/trainable, dist/ref_file, tadist check).
# test_vit: finite differences, jvp identities, trainable subsets, ntk.
tadist_unit_test(test_vit test_vit.c)

# Import each Hugging Face fixture, then `tadist check` it against the
# reference outputs, gradients and JVPs that transformers computed.
foreach(fx clip_tiny_a clip_tiny_b)
  set(model ${TADIST_TEST_OUT}/engine_${fx}.h5)
  add_test(NAME engine_import_${fx}
           COMMAND tadist import ${TADIST_FIXTURES}/${fx} -o ${model})
  set_tests_properties(engine_import_${fx} PROPERTIES
      ENVIRONMENT "${TADIST_TEST_ENV}" FIXTURES_SETUP engine_model_${fx})
  tadist_mpi_test(engine_check_${fx} 1 $<TARGET_FILE:tadist> check
                  --model ${model} --ref ${TADIST_FIXTURES}/${fx}/ref.h5)
  set_tests_properties(engine_check_${fx} PROPERTIES FIXTURES_REQUIRED engine_model_${fx}
      FAIL_REGULAR_EXPRESSION "FAIL|error")
endforeach()

# Rank 0 works while another rank waits; the exit status reaches mpirun.
tadist_mpi_test(engine_check_np2 2 $<TARGET_FILE:tadist> check
                --model ${TADIST_TEST_OUT}/engine_clip_tiny_b.h5
                --ref ${TADIST_FIXTURES}/clip_tiny_b/ref.h5)
set_tests_properties(engine_check_np2 PROPERTIES FIXTURES_REQUIRED engine_model_clip_tiny_b)

# The check can fail, with a non-zero exit status and the reason: a tolerance
# below float32 rounding (2 ranks), and a model whose architecture is not the
# reference's.
function(engine_expect_failure name pattern)
  add_test(NAME ${name} COMMAND sh -c
           "out=$(\"$@\" 2>&1); rc=$?; echo \"$out\"; [ $rc -ne 0 ] && echo \"$out\" | grep -q \"${pattern}\""
           sh ${ARGN})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}")
endfunction()
engine_expect_failure(engine_check_fails_tolerance "79 of 79 tensors past tolerance"
    ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe $<TARGET_FILE:tadist> check
    --model ${TADIST_TEST_OUT}/engine_clip_tiny_a.h5 --ref ${TADIST_FIXTURES}/clip_tiny_a/ref.h5
    --tol-out 1e-9 --tol-grad 1e-9)
set_tests_properties(engine_check_fails_tolerance PROPERTIES
    FIXTURES_REQUIRED engine_model_clip_tiny_a)
engine_expect_failure(engine_check_fails_arch "has width 64 but"
    $<TARGET_FILE:tadist> check --model ${TADIST_TEST_OUT}/engine_clip_tiny_a.h5
    --ref ${TADIST_FIXTURES}/clip_tiny_b/ref.h5)
set_tests_properties(engine_check_fails_arch PROPERTIES FIXTURES_REQUIRED engine_model_clip_tiny_a)
