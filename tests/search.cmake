# Collective merging, the coefficient search and its stages (dist/task_merge,
# dist/search, tadist merge / export), on the task vectors of the tiny
# two-task fine-tuning of tests/finetune.cmake (its data, its tiny.cfg).
# Claims: the collective merge at 1, 2 and 3 ranks equals a serial merge
# computed by direct loops, for every method; the addition stage's val grid
# and chosen alpha equal a serial evaluation of the same grid at 1, 2 and 3
# ranks (attn and ntk); every head set's normalised accuracy is its merged
# accuracy over the same head set's single-task accuracy, recomputed serially
# (frozen, refit, fine-tuned heads, also with heads trained by the finetune
# stage); a search stopped after some items, or killed with SIGKILL at a
# random moment, resumes from its journals to the uninterrupted answer;
# negation's alpha and accuracies equal a serial recomputation, and the check
# rejects a tampered results.json; export -> import is bit-exact.

add_executable(test_search test_search.c)
target_link_libraries(test_search PRIVATE tadist_dist)

set(SE ${TADIST_TEST_OUT}/search)
set(SE_FT ${TADIST_TEST_OUT}/ft)
set(SE_CFG ${CMAKE_CURRENT_SOURCE_DIR}/finetune/tiny.cfg)
set(SE_SETS "--set data.dir=${SE_FT}/data --set model.path=${SE_FT}/theta0.h5")
set(SE_BIN $<TARGET_FILE:tadist>)
set(SE_TEST $<TARGET_FILE:test_search>)
set(SE_MPI "${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG}")

# Its own fine-tuning of the tiny tasks, at a learning rate where the search
# picks an alpha inside the grid (not an end point).
add_test(NAME se_setup COMMAND sh -c
         "rm -rf ${SE} && mkdir -p ${SE} && ${SE_BIN} ${SE_CFG} ${SE_SETS} --set run.out_dir=${SE}/base --set finetune.lr=1e-4 --set finetune.checkpoint_every=0")
set_tests_properties(se_setup PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED ft_data FIXTURES_SETUP se_base TIMEOUT 30)

# name:method:k:scope:combine:p
set(SE_METHODS sum:sum:20:global:mean:0 mean:mean:20:global:mean:0
    ties_global_mean:ties:30:global:mean:0 ties_tensor_sum:ties:30:tensor:sum:0
    dare:dare:20:global:mean:0.4 dare_ties:dare_ties:30:global:mean:0.4)
foreach(np 1 2 3)
  set(script "set -e")
  foreach(m ${SE_METHODS})
    string(REPLACE ":" ";" f "${m}")
    list(GET f 0 name)
    list(GET f 1 method)
    list(GET f 2 k)
    list(GET f 3 scope)
    list(GET f 4 combine)
    list(GET f 5 p)
    set(out ${SE}/merge_np${np}_${name}.h5)
    string(APPEND script "; ${SE_MPI} ${np} --oversubscribe ${SE_BIN} merge ${SE_CFG} ${SE_SETS} --set run.out_dir=${SE}/base --set merge.ties.k=${k} --set merge.ties.scope=${scope} --set merge.ties.combine=${combine} --set merge.dare.p=${p} --set merge.dare.seed=9 --mode attn --method ${method} --alpha 0.7 -o ${out}; ${SE_TEST} merge-ref ${SE_FT}/theta0.h5 ${SE}/base/tiny/task_vectors_attn.h5 ${out} ${method} 0.7 ${k} ${scope} ${combine} ${p} 9")
  endforeach()
  add_test(NAME se_merge_np${np} COMMAND sh -c "${script}")
  set_tests_properties(se_merge_np${np} PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                       FIXTURES_REQUIRED se_base TIMEOUT 60)
endforeach()

# The addition stage against a serial evaluation of its grid.
foreach(np 1 2 3)
  set(run ${SE}/s_np${np})
  set(check "")
  foreach(mode attn ntk)
    foreach(method sum mean)
      string(APPEND check "; ${SE_TEST} check-search ${run}/tiny ${SE_FT}/data ${SE_FT}/theta0.h5 ${mode} ${method} 0 1 0.05 0")
      string(APPEND check "; ${SE_TEST} check-norm ${run}/tiny ${SE_FT}/data ${SE_FT}/theta0.h5 ${mode} ${method} 0")
    endforeach()
  endforeach()
  add_test(NAME se_search_np${np} COMMAND sh -c
           "set -e; rm -rf ${run} && cp -r ${SE}/base ${run}; ${SE_MPI} ${np} --oversubscribe ${SE_BIN} ${SE_CFG} ${SE_SETS} --set run.out_dir=${run} --set run.stages=single,addition --set merge.methods=sum,mean --set eval.heads=frozen,refit${check}; grep -q '\"refit\"' ${run}/tiny/results.json; grep -q '\"not trained\"' ${run}/tiny/results.json")
  set_tests_properties(se_search_np${np} PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                       FIXTURES_REQUIRED se_base FIXTURES_SETUP se_search_np${np} TIMEOUT 90)
endforeach()

# check-norm rejects what the stage wrote before each head set had its own
# normaliser: the refit (and every) head set divided by single.<task>.test.
set(run ${SE}/old_norm)
add_test(NAME se_norm_old_rejected COMMAND sh -c
         "rm -rf ${run} && cp -r ${SE}/s_np1 ${run} && ${SE_TEST} old-norm ${run}/tiny attn sum || exit 1; ${SE_TEST} check-norm ${run}/tiny ${SE_FT}/data ${SE_FT}/theta0.h5 attn sum 0 > ${run}.log 2>&1; rc=$?; cat ${run}.log; [ $rc -ne 0 ] && grep -q 'refit heads, .*: normalised .* is not merged / single' ${run}.log")
set_tests_properties(se_norm_old_rejected PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_search_np1 TIMEOUT 60)

# Killed after 5 evaluations of the alpha grid (merge.stop_after counts the 8
# single-task items first: 2 tasks x frozen, refit x val, test), then rerun:
# resumes from the journal and ends with the serial answer. A torn record (a
# kill during a write, then the next append behind it) is added to the
# journal first: read as a value it would change the grid (and count as a 6th
# item done), so the resume must ignore the whole line.
set(run ${SE}/resume)
set(j ${run}/tiny/search/addition_attn_sum.jsonl)
add_test(NAME se_resume COMMAND sh -c
         "rm -rf ${run} && cp -r ${SE}/base ${run}; ${SE_MPI} 2 --oversubscribe ${SE_BIN} ${SE_CFG} ${SE_SETS} --set run.out_dir=${run} --set run.stages=addition --set finetune.modes=attn --set merge.stop_after=13 > ${run}.log 2>&1; rc=$?; cat ${run}.log; [ $rc -ne 0 ] || { echo 'FAIL: stop_after run exited 0'; exit 1; }; grep -q 'as if killed' ${run}.log || exit 1; n=$(grep -c item ${j}); [ $n -eq 5 ] || { echo \"FAIL: journal has $n items, expected 5\"; exit 1; }; printf '{\"item\":41,\"value\":0.9{\"item\":40,\"value\":0.5}\\n' >> ${j}; ${SE_MPI} 2 --oversubscribe ${SE_BIN} ${SE_CFG} ${SE_SETS} --set run.out_dir=${run} --set run.stages=addition --set finetune.modes=attn > ${run}2.log 2>&1 || { cat ${run}2.log; exit 1; }; cat ${run}2.log; grep -q '5 of 42 items already done' ${run}2.log || { echo 'FAIL: did not resume'; exit 1; }; n=$(grep -c item ${j}); [ $n -eq 43 ] || { echo \"FAIL: journal has $n lines, expected 42 items and the torn one\"; exit 1; }; ${SE_TEST} check-search ${run}/tiny ${SE_FT}/data ${SE_FT}/theta0.h5 attn sum 0 1 0.05 0")
set_tests_properties(se_resume PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_base TIMEOUT 90)

# Negation of quad with stripes as the control: the grid, the chosen alpha and
# every accuracy reported against a serial recomputation (check-negation).
set(run ${SE}/neg)
add_test(NAME se_negation COMMAND sh -c
         "set -e; rm -rf ${run} && cp -r ${SE}/base ${run}; ${SE_MPI} 2 --oversubscribe ${SE_BIN} ${SE_CFG} ${SE_SETS} --set run.out_dir=${run} --set run.stages=negation --set negation.control=stripes --set negation.targets=quad; for m in attn ntk; do ${SE_TEST} check-negation ${run}/tiny ${SE_FT}/data ${SE_FT}/theta0.h5 $m quad stripes 0 1 0.05 0.95 0; done")
set_tests_properties(se_negation PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_base FIXTURES_SETUP se_neg TIMEOUT 90)
# The checker rejects a results.json edited after the stage: an alpha off the
# grid with a perfect target and a dead control, and each of those alone.
add_test(NAME se_negation_tampered COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/search/negation_tamper.sh
         ${SE_TEST} ${SE}/neg ${SE}/neg_tampered ${SE_FT}/data ${SE_FT}/theta0.h5)
set_tests_properties(se_negation_tampered PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_neg TIMEOUT 90)
add_test(NAME se_negation_bad_control COMMAND sh -c
         "rm -rf ${SE}/negbad && cp -r ${SE}/base ${SE}/negbad; ${SE_MPI} 2 --oversubscribe ${SE_BIN} ${SE_CFG} ${SE_SETS} --set run.out_dir=${SE}/negbad --set run.stages=negation --set negation.control=nosuch > ${SE}/negbad.log 2>&1; rc=$?; cat ${SE}/negbad.log; [ $rc -ne 0 ] && [ $(grep -c 'tadist: error.*negation.control .nosuch.' ${SE}/negbad.log) -eq 1 ]")
set_tests_properties(se_negation_bad_control PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_base TIMEOUT 30)

# A merged encoder exported to Hugging Face safetensors and imported back.
set(ex ${SE}/export)
add_test(NAME se_export_roundtrip COMMAND sh -c
         "set -e; rm -rf ${ex} && mkdir -p ${ex}/hf; ${SE_BIN} merge ${SE_CFG} ${SE_SETS} --set run.out_dir=${SE}/base --mode attn --method ties --alpha 0.5 -o ${ex}/merged.h5; ${SE_BIN} export ${ex}/merged.h5 -o ${ex}/hf/model.safetensors; ${SE_BIN} import ${ex}/hf -o ${ex}/back.h5; ${SE_TEST} same-model ${ex}/merged.h5 ${ex}/back.h5; ${SE_BIN} export ${ex}/merged.h5 -o ${ex}/bare.safetensors --no-config; ${SE_BIN} import ${ex}/bare.safetensors --heads 4 -o ${ex}/back2.h5; ${SE_TEST} same-model ${ex}/merged.h5 ${ex}/back2.h5")
set_tests_properties(se_export_roundtrip PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_base TIMEOUT 30)

# Per-task coefficients (merge.search, task coefficients) at 1 and 2 ranks against a serial
# run of the same search in test_search (same grid, budget and seed), on a
# coarser alpha grid (11 points). With ties (k 20) both searches find a vector
# better on val than the uniform alpha, so the chosen vector is not the start.
set(SE_COEF "--set run.stages=addition --set finetune.modes=attn --set merge.methods=sum --set merge.alpha.step=0.1")
foreach(np 1 2)
  foreach(kind random:6:3 coordinate:14:0)
    string(REPLACE ":" ";" f "${kind}")
    list(GET f 0 search)
    list(GET f 1 budget)
    list(GET f 2 seed)
    set(run ${SE}/coef_${search}_np${np})
    add_test(NAME se_coef_${search}_np${np} COMMAND sh -c
             "set -e; rm -rf ${run} && cp -r ${SE}/base ${run}; ${SE_MPI} ${np} --oversubscribe ${SE_BIN} ${SE_CFG} ${SE_SETS} --set run.out_dir=${run} ${SE_COEF} --set merge.methods=ties --set merge.search=${search} --set merge.budget=${budget} --set merge.seed=${seed}; ${SE_TEST} check-coef ${run}/tiny ${SE_FT}/data ${SE_FT}/theta0.h5 attn ties 0 1 0.1 0 - 0 ${search} ${budget} ${seed}; grep -q '\"${search}_task\"' ${run}/tiny/results.json")
    set_tests_properties(se_coef_${search}_np${np} PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                         FIXTURES_REQUIRED se_base TIMEOUT 120)
  endforeach()
endforeach()

# A TIES k grid searched with alpha (from 0.5, where the k values differ on
# val): the (k, alpha) pair of a serial search; then coordinate per-task
# coefficients at that k.
set(run ${SE}/ties_grid)
add_test(NAME se_ties_grid COMMAND sh -c
         "set -e; rm -rf ${run} && cp -r ${SE}/base ${run}; ${SE_MPI} 2 --oversubscribe ${SE_BIN} ${SE_CFG} ${SE_SETS} --set run.out_dir=${run} ${SE_COEF} --set merge.methods=ties --set merge.alpha.start=0.5 --set merge.ties.k_grid=10,30,60 --set merge.search=coordinate --set merge.budget=6; ${SE_TEST} check-coef ${run}/tiny ${SE_FT}/data ${SE_FT}/theta0.h5 attn ties 0.5 1 0.1 0 10,30,60 0 coordinate 6 0; grep -q '\"param_grid\"' ${run}/tiny/results.json")
set_tests_properties(se_ties_grid PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_base TIMEOUT 120)

# The random per-task search killed after 5 of its 14 items (start + 6 vectors, 2 tasks; 8
# single-task items and 22 of the uniform grid first: merge.stop_after counts
# the run's items), then resumed.
set(run ${SE}/coef_resume)
set(j ${run}/tiny/search/coef_attn_sum_random_task.jsonl)
add_test(NAME se_coef_resume COMMAND sh -c
         "rm -rf ${run} && cp -r ${SE}/base ${run}; ${SE_MPI} 2 --oversubscribe ${SE_BIN} ${SE_CFG} ${SE_SETS} --set run.out_dir=${run} ${SE_COEF} --set merge.search=random --set merge.budget=6 --set merge.stop_after=35 > ${run}.log 2>&1; rc=$?; cat ${run}.log; [ $rc -ne 0 ] || { echo 'FAIL: stop_after run exited 0'; exit 1; }; grep -q 'as if killed' ${run}.log || exit 1; n=$(grep -c item ${j}); [ $n -eq 5 ] || { echo \"FAIL: journal has $n items, expected 5\"; exit 1; }; ${SE_MPI} 2 --oversubscribe ${SE_BIN} ${SE_CFG} ${SE_SETS} --set run.out_dir=${run} ${SE_COEF} --set merge.search=random --set merge.budget=6 > ${run}2.log 2>&1 || { cat ${run}2.log; exit 1; }; cat ${run}2.log; grep -q ': 5 items already done' ${run}2.log || { echo 'FAIL: did not resume'; exit 1; }; ${SE_TEST} check-coef ${run}/tiny ${SE_FT}/data ${SE_FT}/theta0.h5 attn sum 0 1 0.1 0 - 0 random 6 0")
set_tests_properties(se_coef_resume PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_base TIMEOUT 120)

# Fine-tuned heads: a heads_attn.h5 written by hand is read and scored; listed
# in eval.heads without the file, a clear error naming it.
set(run ${SE}/ft_heads)
add_test(NAME se_finetuned_heads COMMAND sh -c
         "set -e; rm -rf ${run} && cp -r ${SE}/base ${run}; ${SE_TEST} write-heads ${run}/tiny attn; ${SE_MPI} 2 --oversubscribe ${SE_BIN} ${SE_CFG} ${SE_SETS} --set run.out_dir=${run} ${SE_COEF} --set finetune.train_heads=true --set eval.heads=frozen,finetuned; ${SE_TEST} check-finetuned ${run}/tiny ${SE_FT}/data ${SE_FT}/theta0.h5 attn sum; ${SE_TEST} check-norm ${run}/tiny ${SE_FT}/data ${SE_FT}/theta0.h5 attn sum 0")
set_tests_properties(se_finetuned_heads PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_base TIMEOUT 90)
add_test(NAME se_finetuned_heads_missing COMMAND sh -c
         "rm -rf ${SE}/ftmiss && cp -r ${SE}/base ${SE}/ftmiss; rm -f ${SE}/ftmiss/tiny/heads_attn.h5; ${SE_MPI} 2 --oversubscribe ${SE_BIN} ${SE_CFG} ${SE_SETS} --set run.out_dir=${SE}/ftmiss ${SE_COEF} --set finetune.train_heads=true --set eval.heads=frozen,finetuned > ${SE}/ftmiss.log 2>&1; rc=$?; cat ${SE}/ftmiss.log; [ $rc -ne 0 ] && [ $(grep -c 'tadist: error.*heads_attn.h5. does not exist' ${SE}/ftmiss.log) -eq 1 ]")
set_tests_properties(se_finetuned_heads_missing PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_base TIMEOUT 60)

# Heads trained by the finetune stage (tests/finetune.cmake's ft_heads run:
# attn, finetune.train_heads): its task-vector file's accuracies are the
# trained heads', yet the alpha search scores with the frozen heads, so its
# normaliser must be the frozen heads' single-task val accuracy, and each head
# set (frozen, refit, finetuned) is normalised by its own.
set(run ${SE}/trained)
add_test(NAME se_trained_heads COMMAND sh -c
         "set -e; rm -rf ${run} && mkdir -p ${run} && cp -r ${SE_FT}/heads/tiny ${run}/; ${SE_MPI} 2 --oversubscribe ${SE_BIN} ${SE_CFG} ${SE_SETS} --set run.out_dir=${run} --set run.stages=single,addition --set finetune.modes=attn --set finetune.train_heads=true --set eval.heads=frozen,refit,finetuned; ${SE_TEST} check-search ${run}/tiny ${SE_FT}/data ${SE_FT}/theta0.h5 attn sum 0 1 0.05 0; ${SE_TEST} check-norm ${run}/tiny ${SE_FT}/data ${SE_FT}/theta0.h5 attn sum 0")
set_tests_properties(se_trained_heads PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED "se_base;ft_heads" TIMEOUT 120)

# A real kill: the single and addition stages (attn and ntk, a fine alpha
# grid) at 2 ranks get SIGKILL once a random number of items is in their
# journals, are rerun, and must give results identical to an uninterrupted
# run (tests/search/kill_resume.sh).
add_test(NAME se_kill_resume COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/search/kill_resume.sh
         ${MPIEXEC_EXECUTABLE} ${SE_BIN} ${SE_TEST} ${SE_CFG} ${SE_FT}/data ${SE_FT}/theta0.h5
         ${SE}/base ${SE}/kill)
set_tests_properties(se_kill_resume PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_base TIMEOUT 300 RUN_SERIAL TRUE)
