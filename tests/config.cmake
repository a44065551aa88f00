# Configuration (dist/run/config_load.c, config_print.c): the unit tests at 1 and 4 ranks, and the
# tadist command on bad and shipped configuration files at 1 and 4 ranks.

tadist_unit_test(test_config ${CMAKE_CURRENT_SOURCE_DIR}/test_config.c)
target_compile_definitions(test_config PRIVATE TADIST_CONFIG_DIR="${PROJECT_SOURCE_DIR}/config")
set_tests_properties(test_config PROPERTIES TIMEOUT 60)
tadist_mpi_test(test_config_np4 4 $<TARGET_FILE:test_config>)
set_tests_properties(test_config_np4 PROPERTIES TIMEOUT 60)

# config_cmd_test(NAME EXPECT REGEX ARGS...): `mpirun -n NP tadist ARGS` at 1 and 4
# ranks, checked by config/expect_run.cmake (EXPECT is ok or error).
function(config_cmd_test name expect regex)
  string(REPLACE ";" "|" args "${ARGN}")
  foreach(np 1 4)
    add_test(NAME config_${name}_np${np}
             COMMAND ${CMAKE_COMMAND} -DMPIEXEC=${MPIEXEC_EXECUTABLE}
                     -DNP_FLAG=${MPIEXEC_NUMPROC_FLAG} -DNP=${np} -DTADIST=$<TARGET_FILE:tadist>
                     -DARGS=${args} -DEXPECT=${expect} -DREGEX=${regex}
                     -P ${CMAKE_CURRENT_SOURCE_DIR}/config/expect_run.cmake)
    set_tests_properties(config_${name}_np${np} PROPERTIES
                         ENVIRONMENT "${TADIST_TEST_ENV}" TIMEOUT 30)
  endforeach()
endfunction()

set(bad ${CMAKE_CURRENT_SOURCE_DIR}/config)
config_cmd_test(unknown_key error
    "bad_unknown_key\\.cfg:5: unknown key 'finetune\\.wieght_decay' \\(did you mean 'finetune\\.weight_decay'\\?\\)"
    ${bad}/bad_unknown_key.cfg)
config_cmd_test(nested_key error
    "bad_nested_key\\.cfg:6: unknown key 'merge\\.ties\\.kk'" ${bad}/bad_nested_key.cfg)
config_cmd_test(type error
    "bad_type\\.cfg:3: finetune\\.steps: expected an integer, got a string" ${bad}/bad_type.cfg)
config_cmd_test(range error
    "bad_range\\.cfg:4: merge\\.dare\\.p: must be in \\[0, 1\\), got 1" ${bad}/bad_range.cfg)
config_cmd_test(choice error
    "bad_choice\\.cfg:3: finetune\\.modes: 'attention' is not one of" ${bad}/bad_choice.cfg)
config_cmd_test(syntax error "bad_syntax\\.cfg:4: syntax error" ${bad}/bad_syntax.cfg)
config_cmd_test(cross error
    "bad_cross\\.cfg:4: finetune\\.warmup: .*longer than finetune\\.steps" ${bad}/bad_cross.cfg)
config_cmd_test(missing_file error "cannot read configuration '.*no_such\\.cfg'"
    ${bad}/no_such.cfg)
config_cmd_test(bad_set error "--set finetune\\.lr=0: finetune\\.lr: must be > 0, got 0"
    ${PROJECT_SOURCE_DIR}/config/demo.cfg --set finetune.lr=0)
config_cmd_test(set_print ok "modes = \\[\"full\", \"ntk\"\\].*steps = 77.*configuration OK"
    ${PROJECT_SOURCE_DIR}/config/demo.cfg --set finetune.steps=77 --set finetune.modes=full,ntk
    --print-config --check)

# Every shipped configuration loads cleanly.
file(GLOB shipped CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/config/*.cfg)
foreach(cfg ${shipped})
  get_filename_component(stem ${cfg} NAME_WE)
  config_cmd_test(shipped_${stem} ok "configuration OK" ${cfg} --check)
endforeach()
