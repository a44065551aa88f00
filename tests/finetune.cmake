# Distributed fine-tuning (dist/finetune, dist/heads, dist/evaluate): a tiny
# two-task run (attn and ntk) at 1, 2 and 4 ranks on data this test writes.
# Claims: the task vectors are the same bits at any rank count (micro-batches
# of 4 images: 4 per step, shared by 1, 2 or 4 ranks); attn trains exactly the attention weights; ntk task vectors through
# the linearised model give the accuracy the run reported; a run killed after
# a checkpoint resumes to the uninterrupted result; checkpoints are on in the
# shipped demo and study configurations; bad input fails early.

add_executable(test_finetune test_finetune.c)
target_link_libraries(test_finetune PRIVATE tadist_dist)

set(FT ${TADIST_TEST_OUT}/ft)
set(FT_MODEL ${FT}/theta0.h5)
set(FT_CFG ${CMAKE_CURRENT_SOURCE_DIR}/finetune/tiny.cfg)
set(FT_SETS --set data.dir=${FT}/data --set model.path=${FT_MODEL})

add_test(NAME ft_setup COMMAND sh -c
         "rm -rf ${FT} && mkdir -p ${FT}/data && $<TARGET_FILE:test_finetune> gen ${FT}/data && $<TARGET_FILE:tadist> init --arch vit_tiny --seed 5 -o ${FT_MODEL}")
set_tests_properties(ft_setup PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_SETUP ft_data TIMEOUT 30)

foreach(np 1 2 4)
  tadist_mpi_test(ft_run_np${np} ${np} $<TARGET_FILE:tadist> ${FT_CFG} ${FT_SETS}
                  --set run.out_dir=${FT}/np${np})
  set_tests_properties(ft_run_np${np} PROPERTIES FIXTURES_REQUIRED ft_data
                       FIXTURES_SETUP ft_run_np${np} TIMEOUT 60
                       PASS_REGULAR_EXPRESSION "task vectors \\(ntk\\)")
endforeach()

foreach(np 2 4)
  foreach(mode attn ntk)
    add_test(NAME ft_same_${mode}_np1_np${np}
             COMMAND test_finetune same ${FT}/np1/tiny/task_vectors_${mode}.h5
                     ${FT}/np${np}/tiny/task_vectors_${mode}.h5 0)
    set_tests_properties(ft_same_${mode}_np1_np${np} PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                         FIXTURES_REQUIRED "ft_run_np1;ft_run_np${np}" TIMEOUT 30)
  endforeach()
endforeach()

add_test(NAME ft_attn_only COMMAND test_finetune attn ${FT}/np2/tiny/task_vectors_attn.h5 ${FT_MODEL})
set_tests_properties(ft_attn_only PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED ft_run_np2 TIMEOUT 30)

add_test(NAME ft_ntk_linearised COMMAND test_finetune ntk ${FT}/np1/tiny/task_vectors_ntk.h5
         ${FT_MODEL} ${FT}/np1/tiny/heads.h5 ${FT}/data)
set_tests_properties(ft_ntk_linearised PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED ft_run_np1 TIMEOUT 30)

# Killed after step 6 (last checkpoint at step 4), then rerun: the result must
# equal the uninterrupted 2-rank run (same reduction order: tight tolerance).
set(mpirun2 ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe $<TARGET_FILE:tadist>)
string(REPLACE ";" " " mpirun2 "${mpirun2}")
string(REPLACE ";" " " ft_sets "${FT_SETS}")
add_test(NAME ft_resume COMMAND sh -c
         "rm -rf ${FT}/resume && ${mpirun2} ${FT_CFG} ${ft_sets} --set run.out_dir=${FT}/resume --set finetune.stop_after=6 > ${FT}/resume.log 2>&1; rc=$?; cat ${FT}/resume.log; [ $rc -ne 0 ] || { echo 'FAIL: stop_after run exited 0'; exit 1; }; grep -q 'as if killed' ${FT}/resume.log || exit 1; [ ! -e ${FT}/resume/tiny/task_vectors_attn.h5 ] || exit 1; ${mpirun2} ${FT_CFG} ${ft_sets} --set run.out_dir=${FT}/resume > ${FT}/resume2.log 2>&1 || { cat ${FT}/resume2.log; exit 1; }; cat ${FT}/resume2.log; grep -q 'resuming from checkpoint at step 4' ${FT}/resume2.log || { echo 'FAIL: did not resume'; exit 1; }; for m in attn ntk; do $<TARGET_FILE:test_finetune> same ${FT}/np2/tiny/task_vectors_$m.h5 ${FT}/resume/tiny/task_vectors_$m.h5 1e-6 || exit 1; done")
set_tests_properties(ft_resume PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED "ft_data;ft_run_np2" TIMEOUT 90)

# Bad input: a clear error before any training, printed once.
function(ft_expect_error name np regex)
  add_test(NAME ${name} COMMAND ${CMAKE_COMMAND} -DMPIEXEC=${MPIEXEC_EXECUTABLE}
           -DNP_FLAG=${MPIEXEC_NUMPROC_FLAG} -DNP=${np} -DTADIST=$<TARGET_FILE:tadist>
           -DARGS=${FT_CFG}|--set|data.dir=${FT}/data|--set|run.out_dir=${FT}/bad|${ARGN}
           -DEXPECT=error -DREGEX=${regex}
           -P ${CMAKE_CURRENT_SOURCE_DIR}/config/expect_run.cmake)
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                       FIXTURES_REQUIRED ft_data TIMEOUT 40)
endfunction()
ft_expect_error(ft_missing_model 2 "base model '.*no_model\\.h5' not found"
                --set|model.path=${FT}/no_model.h5|--set|model.arch=|--set|model.random=false)
# A mistyped model.path with model.arch set is an error naming the path, not a
# run from a random encoder: that takes model.random = true (tiny.cfg has it).
ft_expect_error(ft_model_path_typo 1
                "base model '.*no_model\\.h5' not found \\(model\\.path\\): a mistyped path\\?"
                --set|model.path=${FT}/no_model.h5|--set|model.random=false)
ft_expect_error(ft_random_needs_arch 1 "model\\.random = true needs model\\.arch"
                --set|model.path=${FT}/no_model.h5|--set|model.arch=)
ft_expect_error(ft_missing_task 2 "nosuch"
                --set|model.path=${FT_MODEL}|--set|data.tasks=quad,nosuch)
ft_expect_error(ft_bad_heads 2 "heads file '.*no_heads\\.h5'"
                --set|model.path=${FT_MODEL}|--set|heads.source=file|--set|heads.file=${FT}/no_heads.h5)
# A diverging task stops with a message; the other finishes and says so.
ft_expect_error(ft_nan 2 "task\\(s\\) stopped on a NaN/Inf loss"
                --set|model.path=${FT_MODEL}|--set|finetune.modes=attn|--set|finetune.lr=1e30|--set|finetune.grad_clip=0|--set|run.name=nan)

# finetune.train_heads: each task's head trained with the encoder and written
# to heads_<mode>.h5 (heads.h layout); it differs from the initial head, the
# task-vector file names it, and acc_val/acc_test are the trained heads'.
tadist_mpi_test(ft_heads_run 2 $<TARGET_FILE:tadist> ${FT_CFG} ${FT_SETS}
                --set run.out_dir=${FT}/heads --set finetune.modes=attn
                --set finetune.train_heads=true)
set_tests_properties(ft_heads_run PROPERTIES FIXTURES_REQUIRED ft_data FIXTURES_SETUP ft_heads
                     TIMEOUT 60 PASS_REGULAR_EXPRESSION "trained heads \\(attn\\)")
add_test(NAME ft_heads_check COMMAND test_finetune heads ${FT}/heads/tiny/task_vectors_attn.h5
         ${FT}/heads/tiny/heads_attn.h5 ${FT}/heads/tiny/heads.h5 ${FT_MODEL} ${FT}/data)
set_tests_properties(ft_heads_check PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED ft_heads TIMEOUT 30)

# finetune.label_smoothing: the head loss against a hand-computed value, and a
# run with it ends at another loss than the same run without (np2, attn).
add_test(NAME ft_smoothing_loss COMMAND test_finetune smoothing)
set_tests_properties(ft_smoothing_loss PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}" TIMEOUT 30)
# data.augment = false: the run trains on other pixels than the default one
# (the loader side is tests/test_data_loader.c, no_crop).
foreach(v smoothing noaug)
  if(v STREQUAL smoothing)
    set(ft_v_set finetune.label_smoothing=0.1)
  else()
    set(ft_v_set data.augment=false)
  endif()
  tadist_mpi_test(ft_${v}_run 2 $<TARGET_FILE:tadist> ${FT_CFG} ${FT_SETS}
                  --set run.out_dir=${FT}/${v} --set finetune.modes=attn --set ${ft_v_set})
  set_tests_properties(ft_${v}_run PROPERTIES FIXTURES_REQUIRED ft_data FIXTURES_SETUP ft_${v}
                       TIMEOUT 60 PASS_REGULAR_EXPRESSION "task vectors \\(attn\\)")
  add_test(NAME ft_${v}_differs COMMAND test_finetune loss_differs
           ${FT}/np2/tiny/task_vectors_attn.h5 ${FT}/${v}/tiny/task_vectors_attn.h5)
  set_tests_properties(ft_${v}_differs PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                       FIXTURES_REQUIRED "ft_run_np2;ft_${v}" TIMEOUT 30)
endforeach()

# A real kill: a 2-rank run (trained heads, checkpoint every 2 steps) gets
# SIGKILL once both tasks have a checkpoint, is rerun, and must equal an
# uninterrupted run (task vectors and heads, tolerance 1e-6).
add_test(NAME ft_kill_resume COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/finetune/kill_resume.sh
         ${MPIEXEC_EXECUTABLE} $<TARGET_FILE:tadist> $<TARGET_FILE:test_finetune> ${FT_CFG}
         ${FT}/data ${FT_MODEL} ${FT}/kill)
set_tests_properties(ft_kill_resume PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED ft_data TIMEOUT 300 RUN_SERIAL TRUE)

# Checkpoints are on by default: the shipped demo and study configurations
# (which do not set finetune.checkpoint_every) write several per task, and
# the check itself rejects a configuration that turns them off.
add_test(NAME ft_shipped_checkpoints COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/finetune/shipped_checkpoints.sh
         $<TARGET_FILE:tadist> ${PROJECT_SOURCE_DIR}/config/demo.cfg ${PROJECT_SOURCE_DIR}/config/study.cfg ${PROJECT_SOURCE_DIR}/config/coef_study.cfg)
set_tests_properties(ft_shipped_checkpoints PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}" TIMEOUT 30)
add_test(NAME ft_shipped_checkpoints_off COMMAND sh -c
         "sed 's/checkpoint_every = 50;/checkpoint_every = 0;/' ${PROJECT_SOURCE_DIR}/config/demo.cfg > ${FT}_off.cfg; sh ${CMAKE_CURRENT_SOURCE_DIR}/finetune/shipped_checkpoints.sh $<TARGET_FILE:tadist> ${FT}_off.cfg > ${FT}_off.log 2>&1; rc=$?; cat ${FT}_off.log; [ $rc -ne 0 ] && grep -q 'turns checkpoints off' ${FT}_off.log")
set_tests_properties(ft_shipped_checkpoints_off PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}" TIMEOUT 30)
