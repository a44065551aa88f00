# Single-process numerics that are not layers: optimizer, schedule, clipping.
tadist_unit_test(test_optim test_optim.c)
tadist_unit_test(test_parallel test_parallel.c)

# Start-up choice of OpenBLAS kernel: the decision fed made-up inputs (generic
# core detected, kernel set by the user, re-execution, CPUs without AVX2), and
# the program run under the environment as given, whose start-up line must name
# the kernel OpenBLAS runs. No test changes OPENBLAS_CORETYPE: some machines set
# it because older OpenBLAS builds crash on their CPU.
tadist_unit_test(test_runtime test_runtime.c)
