# Studies (dist/disentangle, dist/kernel_diag, dist/report, dist/svg): a tiny
# two-task run (attn and ntk, tests/finetune/tiny.cfg, on the data of
# tests/finetune.cmake's generator) fine-tuned once, then studied at 1 and 2
# ranks. Claims: the disentanglement grids equal a serial computation done by
# the test, xi(0,0) = 0 and xi(a,0)'s first term is 0; the grids do not depend
# on the rank count; the symmetric KL matches hand values; the kernel
# diagnostic's accuracies, disagreement and feature distances of
# f(theta0 + tau) against f0 + J tau equal a serial recomputation, and at
# this large lr both attn and ntk disagree with their linearisation
# somewhere; the report is built from a hand-written run directory.

add_executable(test_study test_study.c)
target_link_libraries(test_study PRIVATE tadist_dist)

tadist_unit_test(test_report test_report.c)
set_tests_properties(test_report PROPERTIES TIMEOUT 30)

add_test(NAME study_symkl COMMAND test_study symkl)
set_tests_properties(study_symkl PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}" TIMEOUT 10)

set(ST ${TADIST_TEST_OUT}/study)
set(ST_MODEL ${ST}/theta0.h5)
set(ST_SETS ${CMAKE_CURRENT_SOURCE_DIR}/finetune/tiny.cfg --set data.dir=${ST}/data
    --set model.path=${ST_MODEL} --set finetune.lr=3e-3 --set disentangle.points=5
    --set disentangle.batch=16)

add_test(NAME study_setup COMMAND sh -c
         "rm -rf ${ST} && mkdir -p ${ST}/data && $<TARGET_FILE:test_finetune> gen ${ST}/data && $<TARGET_FILE:tadist> init --arch vit_tiny --seed 5 -o ${ST_MODEL}")
set_tests_properties(study_setup PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_SETUP st_data TIMEOUT 30)

# Fine-tune once (1 rank), then run the study stages on that run directory at
# 1 and 2 ranks (copies, so that the two never share results.json).
tadist_mpi_test(study_finetune 1 $<TARGET_FILE:tadist> ${ST_SETS} --set run.out_dir=${ST}/ft
                --set run.stages=finetune)
set_tests_properties(study_finetune PROPERTIES FIXTURES_REQUIRED st_data
                     FIXTURES_SETUP st_ft TIMEOUT 60)
foreach(np 1 2)
  add_test(NAME study_copy_np${np} COMMAND sh -c "rm -rf ${ST}/np${np} && mkdir -p ${ST}/np${np} && cp -r ${ST}/ft/tiny ${ST}/np${np}/")
  set_tests_properties(study_copy_np${np} PROPERTIES FIXTURES_REQUIRED st_ft
                       FIXTURES_SETUP st_copy_np${np} TIMEOUT 10)
  tadist_mpi_test(study_run_np${np} ${np} $<TARGET_FILE:tadist> ${ST_SETS}
                  --set run.out_dir=${ST}/np${np} --set run.stages=disentangle,kernel,report)
  set_tests_properties(study_run_np${np} PROPERTIES FIXTURES_REQUIRED st_copy_np${np}
                       FIXTURES_SETUP st_run_np${np} TIMEOUT 60
                       PASS_REGULAR_EXPRESSION "report: .*report\\.md")
endforeach()

foreach(mode attn ntk)
  add_test(NAME study_serial_${mode} COMMAND test_study serial ${ST}/np2/tiny ${ST_MODEL}
           ${ST}/data ${mode} quad stripes 16 4)
  set_tests_properties(study_serial_${mode} PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                       FIXTURES_REQUIRED st_run_np2 TIMEOUT 60)
endforeach()

add_test(NAME study_same_np1_np2 COMMAND test_study same ${ST}/np1/tiny ${ST}/np2/tiny)
set_tests_properties(study_same_np1_np2 PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED "st_run_np1;st_run_np2" TIMEOUT 30)

add_test(NAME study_kernel COMMAND test_study kernel ${ST}/np1/tiny ${ST_MODEL} ${ST}/data 0)
set_tests_properties(study_kernel PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED st_run_np1 TIMEOUT 30)

# The report of a real (tiny) run: the heat maps of both modes are there.
add_test(NAME study_report_files COMMAND sh -c
         "for f in disentangle_attn_quad_stripes_pred disentangle_ntk_quad_stripes_repr; do grep -q '</svg>' ${ST}/np2/tiny/figures/$f.svg || { echo FAIL: $f; exit 1; }; done; grep -q '| attn | quad+stripes |' ${ST}/np2/tiny/report.md && grep -q '| ntk | quad | ' ${ST}/np2/tiny/report.md")
set_tests_properties(study_report_files PROPERTIES FIXTURES_REQUIRED st_run_np2 TIMEOUT 10)
