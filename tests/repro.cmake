# Reproducibility by construction (dist/stages/train_step.h, kernels/ops.c gemm_plan):
# - test_xsum: the exact sum behind a step's gradient gives the same bits for
#   any grouping and order of its terms (micro-batches over any rank count);
# - test_parallel (kernels.cmake) records every cblas_sgemm call through the
#   linker's --wrap and checks that the call shapes do not follow the thread
#   count: the property that makes results kernel-independent;
# - test_vit: an image's embedding does not depend on the other images of its
#   micro-batch; the loader test: ranks take whole micro-batches;
# - ft_same_* / sweep_same_* / study_same_*: whole runs at 1 to 4 ranks, the
#   same bits.
# None of them sets OPENBLAS_CORETYPE: they hold under whatever kernel the
# environment selects.
tadist_unit_test(test_xsum test_xsum.c)
target_link_options(test_parallel PRIVATE -Wl,--wrap=cblas_sgemm)
