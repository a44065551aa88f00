# The batch scripts, run for real: a one-node Slurm on localhost
# (jobs/slurm_local.sh; Debian's slurmctld, slurmd and munge, as root, as CI
# runs) runs jobs/slurm_vit.sbatch on the tiny test tasks at 2 ranks, started
# by srun through Slurm's PMIx plugin (tests/slurm/slurm_job.sh): an
# uninterrupted job, checked against a serial recomputation of its search, and
# a job stopped by SIGUSR1 (the time-limit warning) and by SIGTERM, requeued
# twice by the script, whose results must equal the uninterrupted job's.
# Skipped (exit 77) only where Slurm is not installed (bash jobs/setup.sh
# installs it). pbs_script_static: jobs/pbs_vit.pbs's directives parse and it
# runs the Slurm script's tadist command line (jobs/check_pbs.py).
set(SL ${TADIST_TEST_OUT}/slurm)
add_test(NAME slurm_start COMMAND bash ${PROJECT_SOURCE_DIR}/jobs/slurm_local.sh start)
set_tests_properties(slurm_start PROPERTIES FIXTURES_SETUP slurm TIMEOUT 60 SKIP_RETURN_CODE 77)
add_test(NAME slurm_stop COMMAND bash ${PROJECT_SOURCE_DIR}/jobs/slurm_local.sh stop)
set_tests_properties(slurm_stop PROPERTIES FIXTURES_CLEANUP slurm TIMEOUT 60)
# only the 2-rank jobs need the cluster (jobs/sanitize.sh runs ctest -LE multirank)
set_property(TEST slurm_start slurm_stop APPEND PROPERTY LABELS multirank)

set(slurm_args ${PROJECT_SOURCE_DIR} $<TARGET_FILE:tadist> $<TARGET_FILE:test_finetune>
    $<TARGET_FILE:test_search> ${CMAKE_CURRENT_SOURCE_DIR}/finetune/tiny.cfg
    ${TADIST_TEST_OUT}/ft/data ${TADIST_TEST_OUT}/ft/theta0.h5)
add_test(NAME slurm_job_np2 COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/slurm/slurm_job.sh job
         ${slurm_args} ${SL}/job)
set_tests_properties(slurm_job_np2 PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED "slurm;ft_data" FIXTURES_SETUP slurm_job
                     TIMEOUT 200 SKIP_RETURN_CODE 77)
add_test(NAME slurm_requeue_np2 COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/slurm/slurm_job.sh requeue
         ${slurm_args} ${SL}/requeue ${SL}/job)
set_tests_properties(slurm_requeue_np2 PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED "slurm;ft_data;slurm_job" TIMEOUT 200 SKIP_RETURN_CODE 77)
add_test(NAME slurm_mpirun_np2 COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/slurm/slurm_job.sh mpirun
         ${slurm_args} ${SL}/mpirun)
set_tests_properties(slurm_mpirun_np2 PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     FIXTURES_REQUIRED "slurm;ft_data" TIMEOUT 120 SKIP_RETURN_CODE 77)

# PBS: no server in Debian, so a static check (jobs/pbs_check.py), and the
# same check must reject a copy whose walltime and command line differ.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME pbs_script_static COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/jobs/pbs_check.py
           ${PROJECT_SOURCE_DIR}/jobs/slurm_vit.sbatch ${PROJECT_SOURCE_DIR}/jobs/pbs_vit.pbs)
  set_tests_properties(pbs_script_static PROPERTIES PASS_REGULAR_EXPRESSION "pbs_check: .*: OK"
                       TIMEOUT 30)
  add_test(NAME pbs_script_static_rejects COMMAND sh -c
           "sed 's/walltime=24:00:00/walltime=25:00:00/; s/\"[$]@\" &$/--set run.seed=1 \\&/' ${PROJECT_SOURCE_DIR}/jobs/pbs_vit.pbs > ${SL}_bad.pbs && ! ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/jobs/pbs_check.py ${PROJECT_SOURCE_DIR}/jobs/slurm_vit.sbatch ${SL}_bad.pbs > ${SL}_bad.log 2>&1; rc=$?; cat ${SL}_bad.log; [ $rc -eq 0 ] && grep -q 'wall time' ${SL}_bad.log && grep -q 'command line .*run.seed=1.* differs' ${SL}_bad.log")
  set_tests_properties(pbs_script_static_rejects PROPERTIES TIMEOUT 30)
endif()
