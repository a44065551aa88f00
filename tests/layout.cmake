# The source layout dist/README.md promises (jobs/check_layout.py): no cycle
# between modules, each folder includes only the layers below it, kernels/
# free of MPI and HDF5, at most 12 files at dist/'s top, no stage source over
# 900 lines.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME layout COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/jobs/check_layout.py
           ${CMAKE_SOURCE_DIR})
  set_tests_properties(layout PROPERTIES PASS_REGULAR_EXPRESSION "layout: .*: OK" TIMEOUT 30)
endif()
