/* results.json updates by key path and grids.h5 round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "results.h"

#define DIR TADIST_TEST_OUT "/results"

static void test_json_paths(void **state)
{
    (void)state;
    remove(DIR "/results.json");
    assert_int_equal(results_set(DIR, "modes.attn.single.mnist", cJSON_CreateNumber(0.5)), TD_OK);
    assert_int_equal(results_set(DIR, "modes.attn.single.svhn", cJSON_CreateNumber(0.25)), TD_OK);
    assert_int_equal(results_set(DIR, "modes.attn.single.mnist", cJSON_CreateNumber(0.75)), TD_OK);
    assert_int_equal(results_set(DIR, "run", cJSON_CreateString("x")), TD_OK);
    cJSON *root;
    assert_int_equal(results_load(DIR, &root), TD_OK);
    cJSON *single = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "modes"), "attn"), "single");
    assert_non_null(single);
    assert_float_equal(cJSON_GetObjectItem(single, "mnist")->valuedouble, 0.75, 0);
    assert_float_equal(cJSON_GetObjectItem(single, "svhn")->valuedouble, 0.25, 0);
    assert_string_equal(cJSON_GetObjectItem(root, "run")->valuestring, "x");
    cJSON_Delete(root);
    /* a corrupt file is an error naming it, not silently replaced */
    FILE *f = fopen(DIR "/results.json", "w");
    fputs("{ broken", f);
    fclose(f);
    assert_int_not_equal(results_set(DIR, "a", cJSON_CreateNumber(1)), TD_OK);
    remove(DIR "/results.json");
}

static void test_grid_roundtrip(void **state)
{
    (void)state;
    remove(DIR "/grids.h5");
    double g[6] = {1, 2, 3, 4, 5, 6}, h[2] = {7, 8};
    size_t dims[2] = {2, 3}, dims1[1] = {2};
    assert_int_equal(results_grid_write(DIR, "/attn/addition/sum", g, 2, dims, "alpha,task"), TD_OK);
    assert_int_equal(results_grid_write(DIR, "/attn/addition/sum", h, 1, dims1, NULL), TD_OK);
    double *out;
    int nd;
    size_t od[4];
    assert_int_equal(results_grid_read(DIR, "/attn/addition/sum", &out, &nd, od), TD_OK);
    assert_int_equal(nd, 1);
    assert_int_equal(od[0], 2);
    assert_float_equal(out[1], 8, 0);
    free(out);
    assert_int_not_equal(results_grid_read(DIR, "/nope", &out, &nd, od), TD_OK);
}

int main(void)
{
    if (system("mkdir -p " DIR) != 0)
        return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_json_paths),
                                       cmocka_unit_test(test_grid_roundtrip)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
