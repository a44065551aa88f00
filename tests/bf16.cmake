# The bf16 evaluation path (kernels/mm_bf16, eval.precision = bf16): the
# product within bf16's rounding bound, the fused forward ops, agreement with
# fp32 on the fixture towers (or, without native bf16, the fp32 fallback).
tadist_unit_test(test_bf16 test_bf16.c)

# The fallback on this machine too: oneDNN limited to AVX-512 without bf16
# (DNNL_MAX_CPU_ISA), so the path must give the fp32 results bit for bit.
add_test(NAME test_bf16_fallback COMMAND test_bf16)
set_tests_properties(test_bf16_fallback PROPERTIES
    ENVIRONMENT "${TADIST_TEST_ENV};DNNL_MAX_CPU_ISA=AVX512_CORE"
    PASS_REGULAR_EXPRESSION "the fallback equals fp32 bit for bit")

# The single stage on the tiny fine-tuning of tests/search.cmake, at 2 ranks,
# fp32 and then eval.precision = bf16: the log says which precision ran, and
# every single-task accuracy (2 modes x 2 tasks x frozen, refit x val, test)
# is within 0.07 of fp32's (measured: 0.031, 2 of the 64 test images of one
# task, 0.025 on val, 1 of 40; the tiny tower's margins are small, the
# fixture test and the demo figures measure agreement); with oneDNN held below
# bf16, the log names the fallback and the accuracies equal fp32's exactly.
set(BF ${TADIST_TEST_OUT}/bf16)
set(BF_BASE ${TADIST_TEST_OUT}/search/base) # se_setup's run (tests/search.cmake)
set(BF_FT ${TADIST_TEST_OUT}/ft)
set(BF_RUN "${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe $<TARGET_FILE:tadist> ${CMAKE_CURRENT_SOURCE_DIR}/finetune/tiny.cfg --set data.dir=${BF_FT}/data --set model.path=${BF_FT}/theta0.h5 --set run.stages=single --set eval.heads=frozen,refit")
set(BF_CMP "python3 ${CMAKE_CURRENT_SOURCE_DIR}/bf16/compare_single.py ${BF}/fp32/tiny/results.json")
add_test(NAME bf16_single_np2 COMMAND sh -c
         "set -e; rm -rf ${BF} && mkdir -p ${BF}; for p in fp32 bf16 fallback; do cp -r ${BF_BASE} ${BF}/$p; done; ${BF_RUN} --set run.out_dir=${BF}/fp32; ${BF_RUN} --set run.out_dir=${BF}/bf16 --set eval.precision=bf16 > ${BF}/bf16.log 2>&1 || { cat ${BF}/bf16.log; exit 1; }; cat ${BF}/bf16.log; if grep -q avx512_bf16 /proc/cpuinfo; then grep -q 'evaluation products in bf16' ${BF}/bf16.log; ${BF_CMP} ${BF}/bf16/tiny/results.json 0.07; else grep -q 'evaluation stays fp32' ${BF}/bf16.log; fi; DNNL_MAX_CPU_ISA=AVX512_CORE ${BF_RUN} --set run.out_dir=${BF}/fallback --set eval.precision=bf16 > ${BF}/fallback.log 2>&1 || { cat ${BF}/fallback.log; exit 1; }; grep -q 'evaluation stays fp32' ${BF}/fallback.log; ${BF_CMP} ${BF}/fallback/tiny/results.json 0")
set_tests_properties(bf16_single_np2 PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_base TIMEOUT 120)
