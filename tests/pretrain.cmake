# Pre-training (dist/pretrain, dist/train_step): a tiny vit_tiny trained for a
# few steps on a tiny generated task (test_finetune gen) at 1 and 2 ranks.
# Claims: the loss goes down; the written model does not depend on the rank
# count (beyond reduction order) and says where it came from; a second run
# reuses the cached file without retraining (log line, and the file is not
# rewritten).

add_executable(test_pretrain test_pretrain.c)
target_link_libraries(test_pretrain PRIVATE tadist_dist)

set(PT ${TADIST_TEST_OUT}/pt)
set(PT_CFG ${CMAKE_CURRENT_SOURCE_DIR}/pretrain/tiny.cfg)

add_test(NAME pt_setup COMMAND sh -c
         "rm -rf ${PT} && mkdir -p ${PT}/data && $<TARGET_FILE:test_finetune> gen ${PT}/data")
set_tests_properties(pt_setup PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_SETUP pt_data TIMEOUT 30)

foreach(np 1 2)
  set(run ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} --oversubscribe
      $<TARGET_FILE:tadist> ${PT_CFG} --set data.dir=${PT}/data --set run.out_dir=${PT}/runs
      --set model.path=${PT}/np${np}/theta0.h5)
  string(REPLACE ";" " " run "${run}")
  add_test(NAME pt_run_np${np} COMMAND sh -c
           "${run} > ${PT}/np${np}.log 2>&1; rc=$?; cat ${PT}/np${np}.log; exit $rc")
  set_tests_properties(pt_run_np${np} PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                       FIXTURES_REQUIRED pt_data FIXTURES_SETUP pt_run_np${np} TIMEOUT 60
                       PASS_REGULAR_EXPRESSION "pretrain: wrote .*theta0\\.h5")
  add_test(NAME pt_loss_np${np} COMMAND test_pretrain loss ${PT}/np${np}.log)
  set_tests_properties(pt_loss_np${np} PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                       FIXTURES_REQUIRED pt_run_np${np} TIMEOUT 30)
endforeach()

add_test(NAME pt_same_np1_np2 COMMAND test_pretrain same ${PT}/np1/theta0.h5 ${PT}/np2/theta0.h5 5e-4)
set_tests_properties(pt_same_np1_np2 PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED "pt_run_np1;pt_run_np2" TIMEOUT 30)

add_test(NAME pt_source COMMAND test_pretrain source ${PT}/np2/theta0.h5
         "pretrain:${PT}/data/quad:steps=16:seed=4")
set_tests_properties(pt_source PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED pt_run_np2 TIMEOUT 30)

# Rerun on the np2 output: reused (log line), not retrained (no step line, the
# file's checksum and modification time unchanged).
set(run2 ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe $<TARGET_FILE:tadist>
    ${PT_CFG} --set data.dir=${PT}/data --set run.out_dir=${PT}/runs
    --set model.path=${PT}/np2/theta0.h5)
string(REPLACE ";" " " run2 "${run2}")
add_test(NAME pt_cached COMMAND sh -c
         "m=${PT}/np2/theta0.h5; before=$(stat -c %Y.%s $m; md5sum < $m) || exit 1; sleep 1; ${run2} > ${PT}/cached.log 2>&1; rc=$?; cat ${PT}/cached.log; [ $rc -eq 0 ] || exit 1; grep -q 'reused, not retrained' ${PT}/cached.log || { echo 'FAIL: no reuse line'; exit 1; }; ! grep -q 'pretrain step' ${PT}/cached.log || { echo 'FAIL: retrained'; exit 1; }; after=$(stat -c %Y.%s $m; md5sum < $m); [ \"$before\" = \"$after\" ] || { echo 'FAIL: model file rewritten'; exit 1; }")
set_tests_properties(pt_cached PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED "pt_run_np2" TIMEOUT 60)

# CLIP-style pre-training (pretrain.text_arch): a scaled-down captioned scenes
# set (tadist data suite --only scenes: 7205 captions, most without an image at
# this scale), a vit_tiny image tower against the text_demo tower's captions,
# at 1 and 2 ranks. Claims: the loss goes down; both towers are the same at 1
# and 2 ranks; the model file carries the text tower, which `tadist zeroshot`
# reads with the shipped demo tokenizer to make heads of the tiny model's width.
set(PTC ${TADIST_TEST_OUT}/ptc)
add_test(NAME ptc_setup COMMAND sh -c
         "rm -rf ${PTC} && TADIST_QUIET=1 $<TARGET_FILE:tadist> data suite --out ${PTC}/data --scale 0.02 --only scenes")
set_tests_properties(ptc_setup PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_SETUP ptc_data TIMEOUT 120
                     PASS_REGULAR_EXPRESSION "scenes +7205 ")
foreach(np 1 2)
  set(run ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} --oversubscribe
      $<TARGET_FILE:tadist> ${PT_CFG} --set data.dir=${PTC}/data --set run.out_dir=${PTC}/runs
      --set model.path=${PTC}/np${np}/theta0.h5 --set pretrain.task=scenes
      --set data.tasks=scenes --set pretrain.text_arch=text_demo --set pretrain.steps=32 --set pretrain.batch=64
      --set heads.vocab=${PROJECT_SOURCE_DIR}/config/text/vocab.json
      --set heads.merges=${PROJECT_SOURCE_DIR}/config/text/merges.txt)
  string(REPLACE ";" " " run "${run}")
  add_test(NAME ptc_run_np${np} COMMAND sh -c
           "${run} > ${PTC}/np${np}.log 2>&1; rc=$?; cat ${PTC}/np${np}.log; exit $rc")
  set_tests_properties(ptc_run_np${np} PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                       FIXTURES_REQUIRED ptc_data FIXTURES_SETUP ptc_run_np${np} TIMEOUT 120
                       PASS_REGULAR_EXPRESSION "7205 captions of .*embedded by the text tower.*pretrain: wrote .*theta0\\.h5")
  add_test(NAME ptc_loss_np${np} COMMAND test_pretrain loss ${PTC}/np${np}.log)
  set_tests_properties(ptc_loss_np${np} PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                       FIXTURES_REQUIRED ptc_run_np${np} TIMEOUT 30)
endforeach()
add_test(NAME ptc_same_np1_np2 COMMAND test_pretrain same ${PTC}/np1/theta0.h5 ${PTC}/np2/theta0.h5 5e-4)
set_tests_properties(ptc_same_np1_np2 PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED "ptc_run_np1;ptc_run_np2" TIMEOUT 30
                     PASS_REGULAR_EXPRESSION "text tower: relative difference")
add_test(NAME ptc_zeroshot COMMAND $<TARGET_FILE:tadist> zeroshot --model ${PTC}/np2/theta0.h5
         --vocab ${PROJECT_SOURCE_DIR}/config/text/vocab.json
         --merges ${PROJECT_SOURCE_DIR}/config/text/merges.txt --classes circle,square,star
         --name shapes --templates ${PROJECT_SOURCE_DIR}/config/templates/demo/shapes.txt
         -o ${PTC}/heads.h5)
set_tests_properties(ptc_zeroshot PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED ptc_run_np2 TIMEOUT 30)

# A pre-training stopped after 16 of its 32 steps (pretrain.stop_after, as if
# killed) leaves its checkpoint; the rerun resumes there and writes the same
# model, bit for bit, as the uninterrupted np2 run; the checkpoint is then gone.
set(run ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe
    $<TARGET_FILE:tadist> ${PT_CFG} --set data.dir=${PTC}/data --set run.out_dir=${PTC}/runs_resume
    --set model.path=${PTC}/resume/theta0.h5 --set pretrain.task=scenes
    --set data.tasks=scenes --set pretrain.text_arch=text_demo --set pretrain.steps=32 --set pretrain.batch=64
    --set heads.vocab=${PROJECT_SOURCE_DIR}/config/text/vocab.json
    --set heads.merges=${PROJECT_SOURCE_DIR}/config/text/merges.txt)
string(REPLACE ";" " " run "${run}")
add_test(NAME ptc_resume COMMAND sh -c
         "rm -rf ${PTC}/resume ${PTC}/runs_resume; ${run} --set pretrain.stop_after=16 > ${PTC}/resume1.log 2>&1; rc=$?; cat ${PTC}/resume1.log; [ $rc -ne 0 ] || { echo 'FAIL: the stopped run exited 0'; exit 1; }; grep -q 'stopped after step 16' ${PTC}/resume1.log || exit 1; [ -f ${PTC}/runs_resume/tiny/ckpt/pretrain.h5 ] || { echo 'FAIL: no checkpoint'; exit 1; }; ${run} > ${PTC}/resume2.log 2>&1 || { cat ${PTC}/resume2.log; exit 1; }; cat ${PTC}/resume2.log; grep -q 'resumed from its checkpoint at step 16 of 32' ${PTC}/resume2.log || exit 1; [ ! -e ${PTC}/runs_resume/tiny/ckpt/pretrain.h5 ] || { echo 'FAIL: checkpoint left behind'; exit 1; }; $<TARGET_FILE:test_pretrain> same ${PTC}/resume/theta0.h5 ${PTC}/np2/theta0.h5 0")
set_tests_properties(ptc_resume PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED "ptc_data;ptc_run_np2" TIMEOUT 120)
