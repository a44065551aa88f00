# Graceful stop (dist/run/runtime.h): a 2-rank run gets SIGTERM or SIGUSR1 in
# the middle of fine-tuning, of the single/addition searches' work pool, and
# of an AdaMerging search; it must exit with status 75 having written its
# checkpoint or journal, and the same command run again must resume and end
# with the uninterrupted run's results, bit for bit (tests/stop/stop_resume.sh).
set(ST ${TADIST_TEST_OUT}/stop)
foreach(what finetune search coef)
  if(what STREQUAL finetune)
    set(fixture ft_data)
  else()
    set(fixture se_base)
  endif()
  add_test(NAME stop_${what}_np2 COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/stop/stop_resume.sh ${what}
           ${MPIEXEC_EXECUTABLE} $<TARGET_FILE:tadist> $<TARGET_FILE:test_finetune>
           $<TARGET_FILE:test_search> $<TARGET_FILE:test_learn> ${CMAKE_CURRENT_SOURCE_DIR}/finetune/tiny.cfg
           ${TADIST_TEST_OUT}/ft/data ${TADIST_TEST_OUT}/ft/theta0.h5 ${TADIST_TEST_OUT}/search/base
           ${ST}/${what})
  set_tests_properties(stop_${what}_np2 PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                       FIXTURES_REQUIRED ${fixture} TIMEOUT 240)
endforeach()
