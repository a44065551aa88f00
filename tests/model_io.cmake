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

# model.hf_import: a job whose model.path is missing imports that Hugging Face
# checkpoint first (here at 2 ranks, before the pretrain stage skips), the
# imported encoder passes `tadist check` against transformers' outputs, and a
# second run uses the file as it is.
set(hfi ${TADIST_TEST_OUT}/mio_hf_import)
add_test(NAME model_io_hf_import_np2 COMMAND sh -c
         "set -e; rm -rf ${hfi} && mkdir -p ${hfi}; A='${CMAKE_CURRENT_SOURCE_DIR}/finetune/tiny.cfg --set model.path=${hfi}/base.h5 --set model.hf_import=${TADIST_FIXTURES}/clip_tiny_a --set run.stages=pretrain --set run.out_dir=${hfi}/run'; ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe $<TARGET_FILE:tadist> $A > ${hfi}/1.log 2>&1 || { cat ${hfi}/1.log; exit 1; }; grep -q 'importing model.hf_import' ${hfi}/1.log; $<TARGET_FILE:tadist> check --model ${hfi}/base.h5 --ref ${TADIST_FIXTURES}/clip_tiny_a/ref.h5 | tail -1; ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe $<TARGET_FILE:tadist> $A > ${hfi}/2.log 2>&1; if grep -q 'importing' ${hfi}/2.log; then echo 'FAIL: imported again'; exit 1; fi")
set_tests_properties(model_io_hf_import_np2 PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}" TIMEOUT 60
                     FAIL_REGULAR_EXPRESSION "FAIL")
