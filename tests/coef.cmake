# Coefficient searches (kernels/coef, dist/stages/coef_search.c, coef_learn.c):
# the structure's numerics and the entropy objective against direct
# computations (test_coef).
tadist_unit_test(test_coef test_coef.c)

add_executable(test_learn test_learn.c)
target_link_libraries(test_learn PRIVATE tadist_dist)

# End to end, on the task vectors of the tiny two-task fine-tuning of
# tests/search.cmake (fixture se_base: attn and ntk, tasks quad and stripes).
set(CO ${TADIST_TEST_OUT}/coef)
set(CO_FT ${TADIST_TEST_OUT}/ft)
set(CO_CFG ${CMAKE_CURRENT_SOURCE_DIR}/finetune/tiny.cfg)
set(CO_SETS --set data.dir=${CO_FT}/data --set model.path=${CO_FT}/theta0.h5
            --set run.out_dir=${TADIST_TEST_OUT}/search/base)
set(CO_BIN $<TARGET_FILE:tadist>)
set(CO_LEARN $<TARGET_FILE:test_learn>)
set(CO_MPI "${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG}")

# The coefficient gradient against central differences of the objective, for
# every structure, both objectives and both kinds of task vector (attn: the
# model itself; ntk: the linearised model), and through TIES rows.
foreach(mode attn ntk)
  foreach(obj entropy val_ce)
    foreach(st uniform task block)
      tadist_mpi_test(co_fd_np2_${mode}_${obj}_${st} 2 ${CO_LEARN} fd ${CO_CFG} ${mode} sum ${st}
                      ${CO_SETS} --set merge.adamerging.objective=${obj})
      set_tests_properties(co_fd_np2_${mode}_${obj}_${st} PROPERTIES FIXTURES_REQUIRED se_base
                           TIMEOUT 60)
    endforeach()
  endforeach()
endforeach()
tadist_mpi_test(co_fd_np2_attn_ties_block 2 ${CO_LEARN} fd ${CO_CFG} attn ties block ${CO_SETS}
                --set merge.ties.k=30)
set_tests_properties(co_fd_np2_attn_ties_block PROPERTIES FIXTURES_REQUIRED se_base TIMEOUT 60)

# The chosen coefficients at 1 and 4 ranks: the same bits (adamerging: the
# exact per-micro-batch sum; black-box: one rank per item), for the learned
# and two black-box searches, attn and ntk, task and block coefficients.
set(CO_RUN --set run.stages=addition --set merge.methods=sum
    --set merge.search=adamerging,cmaes,bobyqa --set merge.coefficients=task,block
    --set merge.budget=20 --set merge.adamerging.steps=40 --set merge.adamerging.log_every=20)
string(REPLACE ";" " " CO_RUN "${CO_RUN}")
set(script "set -e")
foreach(np 1 4)
  string(APPEND script "; rm -rf ${CO}/np${np} && mkdir -p ${CO} && cp -r ${TADIST_TEST_OUT}/search/base ${CO}/np${np}; ${CO_MPI} ${np} --oversubscribe ${CO_BIN} ${CO_CFG} --set data.dir=${CO_FT}/data --set model.path=${CO_FT}/theta0.h5 --set run.out_dir=${CO}/np${np} ${CO_RUN}")
endforeach()
foreach(mode attn ntk)
  foreach(name adamerging_task adamerging_block cmaes_task cmaes_block bobyqa_task bobyqa_block)
    string(APPEND script "; ${CO_LEARN} same-coef ${CO}/np1/tiny ${CO}/np4/tiny ${mode} sum ${name}")
  endforeach()
endforeach()
add_test(NAME co_same_np1_np4 COMMAND sh -c "${script}")
set_tests_properties(co_same_np1_np4 PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_base FIXTURES_SETUP co_np1 TIMEOUT 240)

# Black-box searches of ntk vectors score candidates through the linear
# surrogate (coef_sur_tensors): against the same searches through the pool's
# linearised forwards (merge.surrogate.ntk = false), the candidates both runs
# share (at least CMA-ES's first generation, BOBYQA's interpolation points)
# have the same per-task val accuracies, and cross-entropies (val_ce) to
# float rounding.
set(run ${CO}/bb_pool)
set(BB_RUN --set run.stages=addition --set finetune.modes=ntk --set merge.methods=sum
    --set merge.search=cmaes,bobyqa --set merge.coefficients=task,block --set merge.budget=20)
string(REPLACE ";" " " BB_RUN "${BB_RUN}")
set(script "set -e; rm -rf ${run} ${run}_ce ${run}_cesur && for d in ${run} ${run}_ce ${run}_cesur; do cp -r ${TADIST_TEST_OUT}/search/base $d; done; A='${CO_CFG} --set data.dir=${CO_FT}/data --set model.path=${CO_FT}/theta0.h5 ${BB_RUN}'")
string(APPEND script "; ${CO_MPI} 2 --oversubscribe ${CO_BIN} $A --set run.out_dir=${run} --set merge.surrogate.ntk=false")
string(APPEND script "; ${CO_MPI} 2 --oversubscribe ${CO_BIN} $A --set run.out_dir=${run}_ce --set merge.surrogate.ntk=false --set merge.objective=val_ce")
string(APPEND script "; ${CO_MPI} 2 --oversubscribe ${CO_BIN} $A --set run.out_dir=${run}_cesur --set merge.objective=val_ce")
foreach(name cmaes_task cmaes_block bobyqa_task bobyqa_block)
  string(APPEND script "; ${CO_LEARN} same-values ${CO}/np1/tiny ${run}/tiny ntk sum ${name} 5 0")
  string(APPEND script "; ${CO_LEARN} same-values ${run}_cesur/tiny ${run}_ce/tiny ntk sum ${name} 5 1e-5")
endforeach()
add_test(NAME co_bb_ntk_surrogate COMMAND sh -c "${script}")
set_tests_properties(co_bb_ntk_surrogate PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED "se_base;co_np1" TIMEOUT 240)

# A learned search stopped after 12 steps (checkpoints every 5: resumes at 10)
# and a black-box one after 25 items (merge.stop_after counts the run's pool
# items: the uniform grid runs to completion first), rerun: the same
# coefficients as the uninterrupted run above.
set(run ${CO}/stop)
add_test(NAME co_stop_resume COMMAND sh -c
         "rm -rf ${run} && cp -r ${TADIST_TEST_OUT}/search/base ${run}; A='${CO_CFG} --set data.dir=${CO_FT}/data --set model.path=${CO_FT}/theta0.h5 --set run.out_dir=${run} --set run.stages=addition --set finetune.modes=attn --set merge.methods=sum --set merge.coefficients=block --set merge.budget=20 --set merge.adamerging.steps=40 --set merge.adamerging.checkpoint_every=5'; ${CO_MPI} 2 --oversubscribe ${CO_BIN} $A > ${run}0.log 2>&1 || { cat ${run}0.log; exit 1; }; ${CO_MPI} 2 --oversubscribe ${CO_BIN} $A --set merge.search=adamerging --set merge.stop_after=12 > ${run}.log 2>&1; rc=$?; cat ${run}.log; [ $rc -ne 0 ] && grep -q 'as if killed' ${run}.log || exit 1; ${CO_MPI} 2 --oversubscribe ${CO_BIN} $A --set merge.search=adamerging > ${run}2.log 2>&1 || { cat ${run}2.log; exit 1; }; cat ${run}2.log; grep -q 'resuming at step 10 of 40' ${run}2.log || exit 1; ${CO_MPI} 2 --oversubscribe ${CO_BIN} $A --set merge.search=cmaes --set merge.stop_after=25 > ${run}3.log 2>&1; grep -q 'as if killed' ${run}3.log || { cat ${run}3.log; exit 1; }; ${CO_MPI} 2 --oversubscribe ${CO_BIN} $A --set merge.search=cmaes > ${run}4.log 2>&1 || { cat ${run}4.log; exit 1; }; grep -q 'items already done' ${run}4.log || exit 1; ${CO_LEARN} same-coef ${CO}/np1/tiny ${run}/tiny attn sum adamerging_block && ${CO_LEARN} same-coef ${CO}/np1/tiny ${run}/tiny attn sum cmaes_block")
set_tests_properties(co_stop_resume PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED "se_base;co_np1" TIMEOUT 180)

# A real kill (SIGKILL to every rank at a random moment), then a rerun.
add_test(NAME co_kill_resume COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/coef/kill_resume.sh
         ${MPIEXEC_EXECUTABLE} ${CO_BIN} ${CO_LEARN} ${CO_CFG} ${CO_FT}/data ${CO_FT}/theta0.h5
         ${TADIST_TEST_OUT}/search/base ${CO}/kill)
set_tests_properties(co_kill_resume PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_base TIMEOUT 300 RUN_SERIAL TRUE)

# tadist merge --search: the encoder of a saved search (per-task CMA-ES on
# attn) against tadist merge --coef with the same coefficients through the
# collective merge: the same model to float rounding, moved from theta0.
set(run ${CO}/merge_saved)
add_test(NAME co_merge_saved COMMAND sh -c
         "set -e; rm -rf ${run} && mkdir -p ${run}; A='${CO_CFG} --set data.dir=${CO_FT}/data --set model.path=${CO_FT}/theta0.h5 --set run.out_dir=${CO}/np1 --mode attn --method sum'; ${CO_BIN} merge $A --search cmaes_task -o ${run}/saved.h5; c=$(python3 -c \"import json; o=json.load(open('${CO}/np1/tiny/results.json'))['modes']['attn']['coef_search']['sum']['cmaes_task']['coef']; print(','.join(repr(o[t][0]) for t in ('quad','stripes')))\"); echo coefficients $c; ${CO_BIN} merge $A --coef $c --alpha 1 -o ${run}/coef.h5; ${CO_LEARN} close-model ${run}/saved.h5 ${run}/coef.h5 1e-6 ${CO_FT}/theta0.h5; ${CO_BIN} merge $A --search nosuch -o ${run}/x.h5 > ${run}/err.log 2>&1 && exit 1; grep -q 'no coefficient search modes.attn.coef_search.sum.nosuch' ${run}/err.log")
set_tests_properties(co_merge_saved PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED "se_base;co_np1" TIMEOUT 60)

# The linear surrogate (dist/stages/sur_data.c): for ntk task vectors its
# logits are the linearised model's to 1e-5 relative, for every coefficient
# structure (three random coefficient vectors each); for attn it is the
# first-order surrogate, whose error the test prints.
foreach(case ntk_task ntk_block attn_task)
  string(REPLACE "_" ";" parts ${case})
  list(GET parts 0 mode)
  list(GET parts 1 st)
  set(run ${CO}/sur_${case})
  add_test(NAME co_sur_exact_np2_${case} COMMAND sh -c
           "rm -rf ${run} && mkdir -p ${CO} && cp -r ${TADIST_TEST_OUT}/search/base ${run} && ${CO_MPI} 2 --oversubscribe ${CO_LEARN} sur-exact ${CO_CFG} ${mode} sum ${st} --set data.dir=${CO_FT}/data --set model.path=${CO_FT}/theta0.h5 --set run.out_dir=${run}")
  set_tests_properties(co_sur_exact_np2_${case} PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                       FIXTURES_REQUIRED se_base TIMEOUT 60)
endforeach()

# merge.search = surrogate end to end at 1 and 2 ranks: the exhaustive
# per-task grid screened, its top K verified exactly, the same choice at both
# rank counts; a second run reuses the surrogate tensors (keyed by checksums).
set(SUR_RUN --set run.stages=addition --set merge.methods=sum --set merge.search=surrogate
    --set merge.coefficients=task --set merge.surrogate.top_k=8)
string(REPLACE ";" " " SUR_RUN "${SUR_RUN}")
set(script "set -e")
foreach(np 1 2)
  string(APPEND script "; rm -rf ${CO}/sur_np${np} && mkdir -p ${CO} && cp -r ${TADIST_TEST_OUT}/search/base ${CO}/sur_np${np}; ${CO_MPI} ${np} --oversubscribe ${CO_BIN} ${CO_CFG} --set data.dir=${CO_FT}/data --set model.path=${CO_FT}/theta0.h5 --set run.out_dir=${CO}/sur_np${np} ${SUR_RUN} > ${CO}/sur_np${np}.log 2>&1 || { cat ${CO}/sur_np${np}.log; exit 1; }")
endforeach()
string(APPEND script "; cat ${CO}/sur_np2.log")
foreach(mode attn ntk)
  string(APPEND script "; ${CO_LEARN} same-coef ${CO}/sur_np1/tiny ${CO}/sur_np2/tiny ${mode} sum surrogate_task")
endforeach()
string(APPEND script "; ${CO_MPI} 2 --oversubscribe ${CO_BIN} ${CO_CFG} --set data.dir=${CO_FT}/data --set model.path=${CO_FT}/theta0.h5 --set run.out_dir=${CO}/sur_np2 ${SUR_RUN} > ${CO}/sur_again.log 2>&1 || { cat ${CO}/sur_again.log; exit 1; }; grep -q 'reused' ${CO}/sur_again.log || { echo 'FAIL: the surrogate tensors were not reused'; cat ${CO}/sur_again.log; exit 1; }")
add_test(NAME co_surrogate_np1_np2 COMMAND sh -c "${script}")
set_tests_properties(co_surrogate_np1_np2 PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED se_base TIMEOUT 180)

# The cmaes and adamerging strategies of merge.search = surrogate at 1 and 3
# ranks: the same choice (cmaes: a generation's candidates dealt over the
# ranks, each scored by one; adamerging: every rank takes the same steps);
# cmaes scores the whole budget, adamerging lowers its objective (the entropy
# on test); for ntk the surrogate's scores of the best candidate are the
# pool's exact ones (the surrogate is exact for the linearised model).
foreach(case "cmaes;1500;--set merge.surrogate.samples=1500"
             "adamerging;60;--set merge.adamerging.steps=60 --set merge.adamerging.lr=0.01")
  list(GET case 0 strat)
  list(GET case 1 budget)
  list(GET case 2 extra)
  set(SUR_RUN --set run.stages=addition --set merge.methods=sum --set merge.search=surrogate
      --set merge.surrogate.strategy=${strat} ${extra} --set merge.coefficients=task,block
      --set merge.surrogate.top_k=6)
  string(REPLACE ";" " " SUR_RUN "${SUR_RUN}")
  set(script "set -e")
  foreach(np 1 3)
    set(run ${CO}/sur${strat}_np${np})
    string(APPEND script "; rm -rf ${run} && mkdir -p ${CO} && cp -r ${TADIST_TEST_OUT}/search/base ${run}; ${CO_MPI} ${np} --oversubscribe ${CO_BIN} ${CO_CFG} --set data.dir=${CO_FT}/data --set model.path=${CO_FT}/theta0.h5 --set run.out_dir=${run} ${SUR_RUN} > ${run}.log 2>&1 || { cat ${run}.log; exit 1; }")
  endforeach()
  string(APPEND script "; grep 'surrogate ${strat}\\|surrogate_' ${CO}/sur${strat}_np3.log")
  foreach(mode attn ntk)
    foreach(st task block)
      string(APPEND script "; ${CO_LEARN} same-coef ${CO}/sur${strat}_np1/tiny ${CO}/sur${strat}_np3/tiny ${mode} sum surrogate_${st}")
    endforeach()
  endforeach()
  string(APPEND script "; python3 ${CMAKE_CURRENT_SOURCE_DIR}/coef/check_sur_strategy.py ${CO}/sur${strat}_np3/tiny/results.json ${strat} ${budget}")
  add_test(NAME co_sur_${strat}_np1_np3 COMMAND sh -c "${script}")
  set_tests_properties(co_sur_${strat}_np1_np3 PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                       FIXTURES_REQUIRED se_base TIMEOUT 180)
endforeach()
