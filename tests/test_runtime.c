/* Start-up choice of OpenBLAS kernel (dist/run/runtime.c). The decision is fed
 * made-up inputs (the environment, OpenBLAS's core name, the CPU's flags), so
 * every case is tried on any machine without changing the environment, which
 * tests must never do to OPENBLAS_CORETYPE: some machines set it because older
 * OpenBLAS builds crash on their CPU. One test runs the program under the
 * environment as given and checks that its start-up line names the kernel
 * OpenBLAS runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cblas.h>
#include <cmocka.h>

#include "runtime.h"

static const RuntimeCpu k_avx512 = {.avx2 = true, .fma = true, .avx512f = true,
                                    .avx512bw = true, .avx512vl = true};
static const RuntimeCpu k_avx2 = {.avx2 = true, .fma = true};
static const RuntimeCpu k_sse = {0};

static void expect(RuntimeBlasPlan p, RuntimeBlasAction action, const char *kernel)
{
    assert_int_equal(p.action, action);
    if (kernel)
        assert_string_equal(p.kernel, kernel);
    else
        assert_null(p.kernel);
}

/* OpenBLAS detected a generic core on its own: run again with the best kernel. */
static void test_generic_core_reexecs(void **state)
{
    (void)state;
    expect(runtime_blas_plan(NULL, false, "Prescott", k_avx512), RUNTIME_BLAS_REEXEC, "SkylakeX");
    expect(runtime_blas_plan(NULL, false, "Prescott", k_avx2), RUNTIME_BLAS_REEXEC, "Haswell");
    expect(runtime_blas_plan(NULL, false, "nehalem", k_avx2), RUNTIME_BLAS_REEXEC, "Haswell");
    /* a detection that is right, or not generic, stays as it is */
    expect(runtime_blas_plan(NULL, false, "SkylakeX", k_avx512), RUNTIME_BLAS_KEEP, NULL);
    expect(runtime_blas_plan(NULL, false, "Haswell", k_avx2), RUNTIME_BLAS_KEEP, NULL);
    expect(runtime_blas_plan(NULL, false, "Sandybridge", k_avx512), RUNTIME_BLAS_KEEP, NULL);
    expect(runtime_blas_plan(NULL, false, NULL, k_avx512), RUNTIME_BLAS_KEEP, NULL);
    /* AVX-512 without BW/VL is not enough for SkylakeX; AVX2 without FMA not for Haswell */
    RuntimeCpu f_only = k_avx2;
    f_only.avx512f = true;
    expect(runtime_blas_plan(NULL, false, "Prescott", f_only), RUNTIME_BLAS_REEXEC, "Haswell");
    RuntimeCpu no_fma = {.avx2 = true};
    expect(runtime_blas_plan(NULL, false, "Prescott", no_fma), RUNTIME_BLAS_KEEP, NULL);
}

/* A kernel the user (or the site) set is kept; a hint names a faster one. */
static void test_user_kernel_kept(void **state)
{
    (void)state;
    expect(runtime_blas_plan("Haswell", false, "Haswell", k_avx512), RUNTIME_BLAS_HINT, "SkylakeX");
    expect(runtime_blas_plan("SkylakeX", false, "SkylakeX", k_avx512), RUNTIME_BLAS_KEEP, NULL);
    expect(runtime_blas_plan("cooperlake", false, "Cooperlake", k_avx512), RUNTIME_BLAS_KEEP, NULL);
    expect(runtime_blas_plan("Haswell", false, "Haswell", k_avx2), RUNTIME_BLAS_KEEP, NULL);
    /* even a generic kernel set by hand is never overridden, only hinted at */
    expect(runtime_blas_plan("Prescott", false, "Prescott", k_avx2), RUNTIME_BLAS_HINT, "Haswell");
    /* a name OpenBLAS did not know: it runs Prescott, which is what counts */
    expect(runtime_blas_plan("Skylake", false, "Prescott", k_avx512), RUNTIME_BLAS_HINT,
           "SkylakeX");
    /* set to "" is still set */
    expect(runtime_blas_plan("", false, "SkylakeX", k_avx512), RUNTIME_BLAS_KEEP, NULL);
    /* a kernel nobody ranked: no claim that another is faster */
    expect(runtime_blas_plan("Unknown", false, "Unknown", k_avx512), RUNTIME_BLAS_KEEP, NULL);
}

/* The re-executed process never plans again, whatever OpenBLAS reports. */
static void test_reexec_does_not_loop(void **state)
{
    (void)state;
    expect(runtime_blas_plan("SkylakeX", true, "Prescott", k_avx512), RUNTIME_BLAS_KEEP, NULL);
    expect(runtime_blas_plan(NULL, true, "Prescott", k_avx512), RUNTIME_BLAS_KEEP, NULL);
    expect(runtime_blas_plan("Haswell", true, "Haswell", k_avx512), RUNTIME_BLAS_KEEP, NULL);
}

/* Without AVX2 tadist has no better kernel to offer: nothing at all. */
static void test_no_avx2_nothing(void **state)
{
    (void)state;
    expect(runtime_blas_plan(NULL, false, "Prescott", k_sse), RUNTIME_BLAS_KEEP, NULL);
    expect(runtime_blas_plan("Prescott", false, "Prescott", k_sse), RUNTIME_BLAS_KEEP, NULL);
    expect(runtime_blas_plan("Nehalem", false, "Nehalem", k_sse), RUNTIME_BLAS_KEEP, NULL);
}

/* The hint names the value set, the faster kernel, and figures only for the
 * pair they were measured on. */
static void test_hint_line(void **state)
{
    (void)state;
    char line[512];
    runtime_blas_hint(line, sizeof line, "Haswell", "Haswell", "SkylakeX");
    assert_non_null(strstr(line, "OPENBLAS_CORETYPE=Haswell is set; this CPU also supports "
                                 "SkylakeX, which ran ViT-B/32 1.5x"));
    assert_non_null(strstr(line, "AMD EPYC Zen 5"));
    assert_null(strstr(line, "OpenBLAS runs"));
    runtime_blas_hint(line, sizeof line, "Prescott", "Prescott", "Haswell");
    assert_string_equal(line, "OPENBLAS_CORETYPE=Prescott is set; this CPU also supports Haswell "
                              "(unset OPENBLAS_CORETYPE or set it to Haswell to use it)");
    runtime_blas_hint(line, sizeof line, "Skylake", "Prescott", "SkylakeX");
    assert_non_null(strstr(line, "OPENBLAS_CORETYPE=Skylake is set (OpenBLAS runs Prescott); "
                                 "this CPU also supports SkylakeX ("));
}

/* The program under ctest's environment, unchanged: its start-up line names
 * the kernel OpenBLAS runs there. That is this process's kernel (same library,
 * same environment, same CPU) unless the plan re-executes, and then the one
 * planned; the hint line appears exactly when the plan says so. */
static void test_startup_line_names_running_kernel(void **state)
{
    (void)state;
    const char *core = openblas_get_corename();
    RuntimeBlasPlan p = runtime_blas_plan(getenv("OPENBLAS_CORETYPE"),
                                          getenv("TADIST_BLAS_REEXEC") != NULL, core,
                                          runtime_cpu_flags());
    const char *runs = p.action == RUNTIME_BLAS_REEXEC ? p.kernel : core;

    unsetenv("TADIST_QUIET"); /* the start-up lines are what is tested */
    char out[600], cmd[2048];
    snprintf(out, sizeof out, "%s/runtime_core_%d.h5", TADIST_TEST_OUT, (int)getpid());
    snprintf(cmd, sizeof cmd, "'%s' init --arch vit_tiny --seed 1 -o '%s' 2>&1", TADIST_BIN, out);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    static char log[1 << 16];
    size_t n = fread(log, 1, sizeof log - 1, f);
    log[n] = '\0';
    assert_int_equal(pclose(f), 0);
    remove(out);
    print_message("OpenBLAS here: %s; plan %d; program's log:\n%s", core, (int)p.action, log);

    char want[128];
    snprintf(want, sizeof want, "BLAS core %s,", runs);
    assert_non_null(strstr(log, want));
    if (p.action == RUNTIME_BLAS_HINT) {
        snprintf(want, sizeof want, "this CPU also supports %s", p.kernel);
        assert_non_null(strstr(log, want));
    } else {
        assert_null(strstr(log, "also supports"));
    }
    assert_true((p.action == RUNTIME_BLAS_REEXEC) == (strstr(log, "detected this CPU") != NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_generic_core_reexecs),
                                       cmocka_unit_test(test_user_kernel_kept),
                                       cmocka_unit_test(test_reexec_does_not_loop),
                                       cmocka_unit_test(test_no_avx2_nothing),
                                       cmocka_unit_test(test_hint_line),
                                       cmocka_unit_test(test_startup_line_names_running_kernel)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
