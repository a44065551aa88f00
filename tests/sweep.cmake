# Sweeps and studies (dist/sweep, dist/sweep_study, kernels/stats).
# Claims: the interval, t-quantile and interpolation code and a whole study's
# matched comparison agree with values worked out by hand (test_sweep); a
# tiny sweep (8 runs) gives the same per-run results at 1 and 3 ranks, and
# with 3 ranks on each run; a sweep killed mid-way resumes, skipping its done
# runs, to the uninterrupted result. Uses the fine-tuning tests' data.

tadist_unit_test(test_sweep test_sweep.c)

set(SW ${TADIST_TEST_OUT}/sweep)
set(SW_CFG ${CMAKE_CURRENT_SOURCE_DIR}/sweep/tiny.cfg)
set(SW_SETS --set data.dir=${FT}/data --set model.path=${FT_MODEL})

foreach(v np1 np3 np3x3)
  if(v STREQUAL np1)
    set(np 1)
    set(extra "")
  elseif(v STREQUAL np3)
    set(np 3)
    set(extra "")
  else()
    set(np 3)
    set(extra --set sweep.ranks_per_run=3)
  endif()
  add_test(NAME sweep_${v}_clean COMMAND sh -c "rm -rf ${SW}/${v}")
  set_tests_properties(sweep_${v}_clean PROPERTIES FIXTURES_SETUP sweep_clean_${v})
  tadist_mpi_test(sweep_${v}_run ${np} $<TARGET_FILE:tadist> ${SW_CFG} ${SW_SETS}
                  --set run.out_dir=${SW}/${v} ${extra})
  set_tests_properties(sweep_${v}_run PROPERTIES FIXTURES_REQUIRED "ft_data;sweep_clean_${v}"
                       FIXTURES_SETUP sweep_${v} TIMEOUT 120
                       PASS_REGULAR_EXPRESSION "study: .*study.md \\(8 run result")
endforeach()

add_test(NAME sweep_same_np1_np3 COMMAND test_sweep same ${SW}/np1/sweep/tables/study_runs.csv
         ${SW}/np3/sweep/tables/study_runs.csv 0)
set_tests_properties(sweep_same_np1_np3 PROPERTIES FIXTURES_REQUIRED "sweep_np1;sweep_np3"
                     TIMEOUT 30)
# 3 ranks on one run, sharing each step's micro-batches unevenly (2, 1, 1):
# the exact gradient sum gives the same table.
add_test(NAME sweep_same_np1_np3x3 COMMAND test_sweep same
         ${SW}/np1/sweep/tables/study_runs.csv ${SW}/np3x3/sweep/tables/study_runs.csv 0)
set_tests_properties(sweep_same_np1_np3x3 PROPERTIES FIXTURES_REQUIRED "sweep_np1;sweep_np3x3"
                     TIMEOUT 30)

add_test(NAME sweep_kill_resume COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/sweep/kill_resume.sh
         ${MPIEXEC_EXECUTABLE} $<TARGET_FILE:tadist> $<TARGET_FILE:test_sweep> ${SW_CFG}
         ${FT}/data ${FT_MODEL} ${SW}/kill)
set_tests_properties(sweep_kill_resume PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED ft_data TIMEOUT 300 RUN_SERIAL TRUE)

# The study's coefficient-search table (merge.search = cmaes, task
# coefficients, in tests/sweep/tiny.cfg): every configuration's mean over
# seeds is the mean of its runs' own results, and study.md shows it.
add_test(NAME sweep_coef_study COMMAND sh -c
         "python3 ${CMAKE_CURRENT_SOURCE_DIR}/sweep/check_coef_study.py ${SW}/np1/sweep && grep -q '| attn | finetune.lr=3e-4 | cmaes_task | 2 |' ${SW}/np1/sweep/study.md")
set_tests_properties(sweep_coef_study PROPERTIES FIXTURES_REQUIRED sweep_np1 TIMEOUT 30)
