/* dist/safetensors: half and bfloat16 conversion against an independent
 * formula, every header check on hand-made files, and a mutation fuzz that
 * must never crash. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "safetensors.h"

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* binary16 by its definition: (-1)^s * 2^(e-15) * 1.m, or 2^-14 * 0.m. */
static uint32_t ref_f16_bits(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    if (e == 31) /* inf and NaN: exponent all ones, payload in the top mantissa bits */
        return (uint32_t)s << 31 | 0x7f800000u | (uint32_t)m << 13;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return f32_bits((float)(s ? -v : v));
}

static void test_f16_exhaustive(void **state)
{
    (void)state;
    int bad = 0, subnormals = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t got = f32_bits(st_f16_to_f32((uint16_t)h)), want = ref_f16_bits((uint16_t)h);
        bad += got != want;
        subnormals += ((h >> 10) & 31) == 0 && (h & 1023) != 0;
    }
    printf("f16: %d of 65536 patterns differ (%d subnormals checked)\n", bad, subnormals);
    assert_int_equal(bad, 0);
    assert_true(st_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_true(st_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(isinf(st_f16_to_f32(0xfc00)) && st_f16_to_f32(0xfc00) < 0);
    assert_true(isnan(st_f16_to_f32(0x7e00)));
}

static void test_bf16_exhaustive(void **state)
{
    (void)state;
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t e = (h >> 7) & 255, m = h & 127, s = h >> 15;
        uint32_t want;
        if (e == 255)
            want = s << 31 | 0x7f800000u | m << 16;
        else {
            double v = e == 0 ? ldexp(m, -133) : ldexp(128 + m, (int)e - 134);
            want = f32_bits((float)(s ? -v : v));
        }
        bad += f32_bits(st_bf16_to_f32((uint16_t)h)) != want;
    }
    printf("bf16: %d of 65536 patterns differ\n", bad);
    assert_int_equal(bad, 0);
}

/* ---- hand-made files --------------------------------------------------- */

static char g_path[512];

static void write_st(const char *header, const void *data, size_t data_len, uint64_t hlen_override)
{
    snprintf(g_path, sizeof g_path, "%s/st_unit.safetensors", TADIST_TEST_OUT);
    FILE *fp = fopen(g_path, "wb");
    assert_non_null(fp);
    uint64_t n = hlen_override ? hlen_override : strlen(header);
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(n >> (8 * i));
    fwrite(len, 1, 8, fp);
    fwrite(header, 1, strlen(header), fp);
    if (data_len)
        fwrite(data, 1, data_len, fp);
    fclose(fp);
}

/* st_open must fail with a message that names needle and stays on one line. */
static void expect_open_error(const char *header, size_t data_len, uint64_t hlen,
                              const char *needle)
{
    static unsigned char data[4096];
    write_st(header, data, data_len, hlen);
    StFile f;
    td_error_clear();
    TdStatus s = st_open(g_path, &f);
    printf("  %-60.60s -> %s\n", header, td_error_message());
    assert_int_not_equal(s, TD_OK);
    assert_non_null(strstr(td_error_message(), needle));
    assert_null(strchr(td_error_message(), '\n'));
    assert_non_null(strstr(td_error_message(), "st_unit.safetensors"));
}

static void test_header_errors(void **state)
{
    (void)state;
    expect_open_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 1000,
                      "header length");
    expect_open_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, 0,
                      "JSON");
    expect_open_error("[1,2]", 0, 0, "not a JSON object");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 8, 0,
                      "'w'");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 12, 0,
                      "'w'");
    expect_open_error("{\"w\":{\"dtype\":\"I7\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0,
                      "unknown dtype");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0,
                      "'w'");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, 0,
                      "'w'");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, 0,
                      "'w'");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, 0, "'w'");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                      8, 0, "'w' appears twice");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                      "\"data_offsets\":[0,8]}}",
                      8, 0, "'w'");
    expect_open_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} xx", 8, 0,
                      "trailing");
    /* a file shorter than the length field */
    snprintf(g_path, sizeof g_path, "%s/st_unit.safetensors", TADIST_TEST_OUT);
    FILE *fp = fopen(g_path, "wb");
    fwrite("abc", 1, 3, fp);
    fclose(fp);
    StFile f;
    td_error_clear();
    assert_int_not_equal(st_open(g_path, &f), TD_OK);
    assert_non_null(strstr(td_error_message(), "too short"));
}

static void test_valid_and_unaligned(void **state)
{
    (void)state;
    /* a 7-byte header leaves the data area unaligned; read must still be exact */
    const float v[3] = {1.5f, -2.25f, 3.0e-40f};
    const uint16_t h[2] = {0x3c00, 0x0001};
    unsigned char data[16];
    memcpy(data, v, 12);
    memcpy(data + 12, h, 4);
    char header[256];
    snprintf(header, sizeof header,
             "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[3],"
             "\"data_offsets\":[0,12]},\"s\":{\"dtype\":\"F16\",\"shape\":[],"
             "\"data_offsets\":[12,14]},\"e\":{\"dtype\":\"F16\",\"shape\":[0],"
             "\"data_offsets\":[14,14]}}   ");
    write_st(header, data, 16, 0);
    StFile f;
    td_error_clear();
    assert_int_equal(st_open(g_path, &f), TD_OK);
    assert_int_equal(f.count, 3);
    assert_null(st_find(&f, "__metadata__"));
    float out[3];
    assert_int_equal(st_read_f32(&f, st_find(&f, "a"), out), TD_OK);
    assert_memory_equal(out, v, sizeof v);
    const StTensor *s = st_find(&f, "s");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->numel, 1);
    assert_int_equal(st_read_f32(&f, s, out), TD_OK);
    assert_true(out[0] == 1.0f);
    st_close(&f);
}

/* Random byte mutations of a valid file: every outcome is an error or a
 * successful read, never a crash (run under ASan/valgrind for more). */
static void test_mutation_fuzz(void **state)
{
    (void)state;
    const char *header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                         "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]}}";
    size_t hl = strlen(header), n = 8 + hl + 22;
    unsigned char *base = calloc(n, 1), *buf = malloc(n);
    for (int i = 0; i < 8; i++)
        base[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(base + 8, header, hl);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int opened = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, base, n);
        size_t len = n;
        for (int k = 0; k < 1 + it % 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t pos = (size_t)(x % n);
            if (it % 7 == 0)
                len = pos; /* truncation */
            else
                buf[pos] = (unsigned char)(x >> 32);
        }
        snprintf(g_path, sizeof g_path, "%s/st_fuzz.safetensors", TADIST_TEST_OUT);
        FILE *fp = fopen(g_path, "wb");
        fwrite(buf, 1, len, fp);
        fclose(fp);
        StFile f;
        td_error_clear();
        if (st_open(g_path, &f) != TD_OK) {
            assert_null(strchr(td_error_message(), '\n'));
            continue;
        }
        opened++;
        for (int i = 0; i < f.count; i++) {
            float *out = malloc((f.tensors[i].numel ? f.tensors[i].numel : 1) * sizeof *out);
            td_error_clear();
            (void)st_read_f32(&f, &f.tensors[i], out);
            free(out);
        }
        st_close(&f);
    }
    printf("fuzz: 3000 mutated files, %d still valid, no crash\n", opened);
    free(base);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_bf16_exhaustive),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_valid_and_unaligned),
        cmocka_unit_test(test_mutation_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
