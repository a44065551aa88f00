# Runs tadist under mpirun and checks how it ended (used by tests/config.cmake).
#   -DMPIEXEC= -DNP_FLAG= -DNP= -DTADIST= -DARGS=a|b|c -DEXPECT=ok|error -DREGEX=
# ok:    exit status 0 and REGEX somewhere in the output.
# error: a non-zero exit status within the time limit (no hang), exactly one
#        "tadist: error" line (printed once, not once per rank), matching REGEX.
string(REPLACE "|" ";" args "${ARGS}")
execute_process(COMMAND ${MPIEXEC} ${NP_FLAG} ${NP} --oversubscribe ${TADIST} ${args}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 25)
set(all "${out}${err}")
message("${all}")
if(NOT rc MATCHES "^[0-9]+$")
  message(FATAL_ERROR "tadist did not end by itself: ${rc}")
endif()
if(EXPECT STREQUAL "ok")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "exit status ${rc}, expected 0")
  endif()
  if(NOT all MATCHES "${REGEX}")
    message(FATAL_ERROR "output does not match: ${REGEX}")
  endif()
else()
  if(rc EQUAL 0)
    message(FATAL_ERROR "exit status 0, expected an error")
  endif()
  string(REGEX MATCHALL "tadist: error[^\n]*" lines "${all}")
  list(LENGTH lines n)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "the error was printed ${n} times, expected once")
  endif()
  if(NOT lines MATCHES "${REGEX}")
    message(FATAL_ERROR "the error does not match: ${REGEX}")
  endif()
endif()
