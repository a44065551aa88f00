# kernels/ops: every layer against finite differences, jvp identities, NULL-skip.
tadist_unit_test(test_ops test_ops.c)
