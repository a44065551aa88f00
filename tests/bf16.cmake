# The bf16 evaluation path (kernels/mm_bf16, eval.precision = bf16): the
# product within bf16's rounding bound, the fused forward ops, agreement with
# fp32 on the fixture towers (or, without native bf16, the fp32 fallback).
tadist_unit_test(test_bf16 test_bf16.c)
