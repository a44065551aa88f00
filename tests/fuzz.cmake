# Fuzz harnesses (tests/fuzz): one libFuzzer harness per input kind, each
# calling tadist's real parsers. In the normal build each harness links the
# standalone driver (tests/fuzz/driver.c) and ctest replays its seed corpus,
# tests/fuzz/<kind>/corpus, and its regression inputs, tests/fuzz/<kind>/regressions
# when present (test fuzz_<kind>). With -DTADIST_FUZZ=ON (clang only; jobs/fuzz.sh)
# the harnesses link libFuzzer (-fsanitize=fuzzer) instead of the driver; build
# everything with -fsanitize=fuzzer-no-link,address,undefined in CMAKE_C_FLAGS
# so that tadist's own code is instrumented too. Inputs that crash go to
# tests/fuzz/<kind>/crashes-found/, which ctest does not run.

option(TADIST_FUZZ "Link the tests/fuzz harnesses with libFuzzer (clang) instead of the driver" OFF)
if(TADIST_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "TADIST_FUZZ=ON needs clang (CC=clang); see jobs/fuzz.sh")
endif()

set(TADIST_FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
set(TADIST_FUZZ_KINDS safetensors idx mnist_json image model_h5 task_h5 clip_tokenizer config)

foreach(kind ${TADIST_FUZZ_KINDS})
  set(target fuzz_${kind})
  if(TADIST_FUZZ)
    add_executable(${target} ${TADIST_FUZZ_DIR}/fuzz_${kind}.c)
    target_link_options(${target} PRIVATE -fsanitize=fuzzer)
    set(runs_flag -runs=0)
  else()
    add_executable(${target} ${TADIST_FUZZ_DIR}/fuzz_${kind}.c ${TADIST_FUZZ_DIR}/driver.c)
    set(runs_flag)
  endif()
  target_include_directories(${target} PRIVATE ${TADIST_FUZZ_DIR})
  target_link_libraries(${target} PRIVATE tadist_dist)
  set(inputs ${TADIST_FUZZ_DIR}/${kind}/corpus)
  if(IS_DIRECTORY ${TADIST_FUZZ_DIR}/${kind}/regressions)
    list(APPEND inputs ${TADIST_FUZZ_DIR}/${kind}/regressions)
  endif()
  add_test(NAME ${target} COMMAND ${target} ${runs_flag} ${inputs})
  set_tests_properties(${target} PROPERTIES ENVIRONMENT "${TADIST_TEST_ENV};TADIST_QUIET=1"
                       TIMEOUT 120 LABELS fuzz)
endforeach()
