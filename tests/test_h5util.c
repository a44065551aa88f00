/* dist/h5util: attribute round trips, the messages of failed reads, the
 * checks before libhdf5 opens a file (superblock, size, seal), mkdir -p. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "h5util.h"

#define DIR TADIST_TEST_OUT "/h5util"
#define FILE_H5 DIR "/attrs.h5"

static void expect_error(TdStatus s, TdStatus code, const char *needle)
{
    printf("  %s\n", td_error_message());
    assert_int_equal(s, code);
    assert_non_null(strstr(td_error_message(), needle));
    assert_non_null(strstr(td_error_message(), FILE_H5));
    td_error_clear();
}

static void test_attrs(void **state)
{
    (void)state;
    assert_int_equal(fs_mkdir_p(DIR), TD_OK);
    hid_t f = H5Fcreate(FILE_H5, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    int32_t i32 = -7;
    assert_int_equal(h5u_attr_write_str(f, FILE_H5, "s", "hello"), TD_OK);
    assert_int_equal(h5u_attr_write_str(f, FILE_H5, "format", "hello"), TD_OK);
    assert_int_equal(h5u_attr_write_str(f, FILE_H5, "empty", ""), TD_OK);
    assert_int_equal(h5u_attr_write_f64(f, FILE_H5, "x", 0.125), TD_OK);
    assert_int_equal(h5u_attr_write_i64(f, FILE_H5, "n", 1LL << 40), TD_OK);
    assert_int_equal(h5u_attr_write(f, FILE_H5, "i", H5T_STD_I32LE, H5T_NATIVE_INT32, &i32), TD_OK);
    /* a variable-length UTF-8 string, as h5py writes them */
    hid_t vt = H5Tcopy(H5T_C_S1);
    H5Tset_size(vt, H5T_VARIABLE);
    H5Tset_cset(vt, H5T_CSET_UTF8);
    const char *vs = "quick_gelu";
    assert_int_equal(h5u_attr_write(f, FILE_H5, "v", vt, vt, &vs), TD_OK);
    H5Tclose(vt);
    /* creating twice fails, naming the file and the attribute */
    expect_error(h5u_attr_write_str(f, FILE_H5, "s", "again"), TD_ERR_HDF5, "'s'");

    char buf[64];
    double x = 0;
    long long n = 0;
    int i = 0;
    assert_true(h5u_attr_exists(f, "s"));
    assert_false(h5u_attr_exists(f, "nope"));
    assert_int_equal(h5u_attr_read_str(f, FILE_H5, "s", buf, sizeof buf), TD_OK);
    assert_string_equal(buf, "hello");
    assert_int_equal(h5u_attr_read_str(f, FILE_H5, "s", buf, 3), TD_OK);
    assert_string_equal(buf, "he"); /* truncated to fit */
    assert_int_equal(h5u_attr_read_str(f, FILE_H5, "empty", buf, sizeof buf), TD_OK);
    assert_string_equal(buf, "");
    assert_int_equal(h5u_attr_read_str(f, FILE_H5, "v", buf, sizeof buf), TD_OK);
    assert_string_equal(buf, "quick_gelu");
    assert_int_equal(h5u_attr_read_f64(f, FILE_H5, "x", &x), TD_OK);
    assert_float_equal(x, 0.125, 0);
    assert_int_equal(h5u_attr_read_i64(f, FILE_H5, "n", &n), TD_OK);
    assert_true(n == 1LL << 40);
    assert_int_equal(h5u_attr_read(f, FILE_H5, "i", H5T_NATIVE_INT, &i), TD_OK);
    assert_int_equal(i, -7);
    assert_int_equal(h5u_attr_read_f64(f, FILE_H5, "i", &x), TD_OK); /* converted */
    assert_float_equal(x, -7, 0);

    expect_error(h5u_attr_read_str(f, FILE_H5, "nope", buf, sizeof buf), TD_ERR_FORMAT,
                 "attribute 'nope' is missing");
    expect_error(h5u_attr_read_f64(f, FILE_H5, "nope", &x), TD_ERR_FORMAT,
                 "attribute 'nope' is missing");
    expect_error(h5u_attr_read_f64(f, FILE_H5, "s", &x), TD_ERR_FORMAT,
                 "attribute 's' is not a number");
    expect_error(h5u_attr_read_str(f, FILE_H5, "x", buf, sizeof buf), TD_ERR_FORMAT,
                 "attribute 'x' is not a string");
    /* more than one value */
    hsize_t two = 2;
    hid_t sp = H5Screate_simple(1, &two, NULL);
    hid_t a = H5Acreate2(f, "pair", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    double pair[2] = {1, 2};
    H5Awrite(a, H5T_NATIVE_DOUBLE, pair);
    H5Aclose(a);
    H5Sclose(sp);
    expect_error(h5u_attr_read_f64(f, FILE_H5, "pair", &x), TD_ERR_FORMAT,
                 "attribute 'pair' holds more than one value");
    /* the format check every tadist file starts with */
    assert_int_equal(h5u_check_format(f, FILE_H5, "hello", "tadist test file"), TD_OK);
    expect_error(h5u_check_format(f, FILE_H5, "tadist-x-1", "tadist test file"), TD_ERR_FORMAT,
                 "format 'hello' is not tadist-x-1");
    hid_t g = H5Gcreate2(f, "g", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    expect_error(h5u_check_format(g, FILE_H5, "tadist-x-1", "tadist test file"), TD_ERR_FORMAT,
                 "attribute 'format' is missing (not a tadist test file?)");
    H5Gclose(g);
    H5Fclose(f);
}

/* ---- h5u_check_file, h5u_seal: the checks before libhdf5 opens a file ---- */

#define PLAIN_H5 DIR "/plain.h5"
#define UB_H5 DIR "/userblock.h5"

static void make_file(const char *path, hid_t fcpl)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_int_equal(h5u_attr_write_str(f, path, "format", "hello"), TD_OK);
    H5Fclose(f);
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *n, fp), *n);
    fclose(fp);
    return b;
}

static void write_all(const char *path, const void *b, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, n, fp), n);
    fclose(fp);
}

static void check_fails(const char *path, TdStatus code, const char *needle)
{
    TdStatus s = h5u_check_file(path);
    printf("  %s\n", td_error_message());
    assert_int_equal(s, code);
    assert_non_null(strstr(td_error_message(), path));
    assert_non_null(strstr(td_error_message(), needle));
    td_error_clear();
}

static void test_check_file(void **state)
{
    (void)state;
    assert_int_equal(fs_mkdir_p(DIR), TD_OK);
    /* no user block: nothing to seal, the superblock checked */
    make_file(PLAIN_H5, H5P_DEFAULT);
    size_t n, m, k;
    unsigned char *plain = read_all(PLAIN_H5, &n);
    assert_int_equal(h5u_check_file(PLAIN_H5), TD_OK);
    assert_int_equal(h5u_seal(PLAIN_H5), TD_OK);
    unsigned char *again = read_all(PLAIN_H5, &m);
    assert_int_equal(m, n);
    assert_memory_equal(again, plain, n); /* left as it was */
    free(again);

    /* a blank user block: unsealed until h5u_seal */
    hid_t fcpl = h5u_sealed_fcpl();
    assert_true(fcpl >= 0);
    make_file(UB_H5, fcpl);
    H5Pclose(fcpl);
    assert_int_equal(h5u_check_file(UB_H5), TD_OK);
    assert_int_equal(h5u_seal(UB_H5), TD_OK);
    unsigned char *sealed = read_all(UB_H5, &m);
    assert_memory_equal(sealed, "tadist-seal-1\nxxh3-128 ", 23);
    char bytes[64];
    snprintf(bytes, sizeof bytes, "\nbytes %zu\n", m);
    assert_non_null(strstr((const char *)sealed, bytes));
    assert_int_equal(h5u_check_file(UB_H5), TD_OK);
    assert_int_equal(h5u_seal(UB_H5), TD_OK); /* resealing an unchanged file: the same bytes */
    unsigned char *resealed = read_all(UB_H5, &k);
    assert_int_equal(k, m);
    assert_memory_equal(resealed, sealed, m);
    free(resealed);
    /* libhdf5 reads a sealed file like any other */
    hid_t f = H5Fopen(UB_H5, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_int_equal(h5u_check_format(f, UB_H5, "hello", "test file"), TD_OK);
    H5Fclose(f);
    /* the seal's text damaged: unreadable */
    sealed[30] = 'z';
    write_all(UB_H5, sealed, m);
    check_fails(UB_H5, TD_ERR_FORMAT, "seal (the first 512 bytes) is unreadable");
    /* someone else's user block: left alone by h5u_seal, refused by the check */
    memset(sealed, 0, H5U_USERBLOCK);
    memcpy(sealed, "another program's notes", 23);
    write_all(UB_H5, sealed, m);
    assert_int_equal(h5u_seal(UB_H5), TD_OK);
    resealed = read_all(UB_H5, &k);
    assert_int_equal(k, m);
    assert_memory_equal(resealed, sealed, m);
    free(resealed);
    check_fails(UB_H5, TD_ERR_FORMAT, "neither blank nor a tadist seal");
    free(sealed);

    /* the superblock of a file without a seal (version 0: base address at
     * byte 24, end-of-file address at byte 40) */
    assert_int_equal(plain[8], 0);
    unsigned char *b = malloc(n + 1);
    assert_non_null(b);
    memcpy(b, plain, n);
    memset(b + 40, 0xff, 8);
    write_all(PLAIN_H5, b, n);
    check_fails(PLAIN_H5, TD_ERR_FORMAT, "end-of-file address is undefined");
    memcpy(b, plain, n);
    b[24] = 1;
    write_all(PLAIN_H5, b, n);
    check_fails(PLAIN_H5, TD_ERR_FORMAT, "base address 1");
    memcpy(b, plain, n);
    b[13] = 3;
    write_all(PLAIN_H5, b, n);
    check_fails(PLAIN_H5, TD_ERR_FORMAT, "3-byte addresses");
    memcpy(b, plain, n);
    write_all(PLAIN_H5, b, 30);
    check_fails(PLAIN_H5, TD_ERR_FORMAT, "ends inside its HDF5 superblock");
    b[n] = 0;
    write_all(PLAIN_H5, b, n + 1);
    check_fails(PLAIN_H5, TD_ERR_FORMAT, "1 bytes after the end of its HDF5 data");
    b[0] = 'X';
    write_all(PLAIN_H5, b, n);
    check_fails(PLAIN_H5, TD_ERR_FORMAT, "not an HDF5 file");
    write_all(PLAIN_H5, "", 0);
    check_fails(PLAIN_H5, TD_ERR_FORMAT, "not an HDF5 file");
    free(b);
    free(plain);
    check_fails(DIR "/no_such.h5", TD_ERR_IO, "cannot open");
    check_fails(DIR, TD_ERR_FORMAT, "not a regular file");
}

static void test_mkdir_p(void **state)
{
    (void)state;
    struct stat st;
    assert_int_equal(fs_mkdir_p(DIR "/a/b//c/"), TD_OK);
    assert_int_equal(stat(DIR "/a/b/c", &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(fs_mkdir_p(DIR "/a/b/c"), TD_OK); /* already there */
    FILE *fp = fopen(DIR "/a/file", "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(fs_mkdir_p(DIR "/a/file/d"), TD_ERR_IO);
    printf("  %s\n", td_error_message());
    assert_non_null(strstr(td_error_message(), DIR "/a/file"));
    td_error_clear();
    assert_int_equal(fs_mkdir_p(DIR "/a/file"), TD_ERR_IO);
    assert_non_null(strstr(td_error_message(), "not a directory"));
    td_error_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attrs),
        cmocka_unit_test(test_check_file),
        cmocka_unit_test(test_mkdir_p),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
