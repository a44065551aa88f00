#include "h5util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

/* Each public function runs its body with HDF5's error printing off (the
 * caller gets a td_fail message instead) and restores it afterwards. */
#define H5U_QUIET(call)                  \
    do {                                 \
        H5E_BEGIN_TRY { s = (call); }    \
        H5E_END_TRY;                     \
    } while (0)

int h5u_attr_exists(hid_t obj, const char *name)
{
    htri_t ex = -1;
    H5E_BEGIN_TRY { ex = H5Aexists(obj, name); }
    H5E_END_TRY;
    return ex > 0;
}

/* ---- writing ---------------------------------------------------------- */

static TdStatus write_scalar(hid_t obj, const char *what, const char *name, hid_t ftype,
                             hid_t mtype, const void *buf)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t at = sp >= 0 ? H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    herr_t w = at >= 0 ? H5Awrite(at, mtype, buf) : -1;
    herr_t c = at >= 0 ? H5Aclose(at) : 0;
    if (sp >= 0)
        H5Sclose(sp);
    if (w < 0 || c < 0)
        return td_fail(TD_ERR_HDF5, "%s: cannot write attribute '%s'", what, name);
    return TD_OK;
}

static TdStatus write_str(hid_t obj, const char *what, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, strlen(value) + 1) < 0 ||
        H5Tset_strpad(t, H5T_STR_NULLTERM) < 0) {
        if (t >= 0)
            H5Tclose(t);
        return td_fail(TD_ERR_HDF5, "%s: cannot make a string type for attribute '%s'", what,
                       name);
    }
    TdStatus s = write_scalar(obj, what, name, t, t, value);
    H5Tclose(t);
    return s;
}

TdStatus h5u_attr_write(hid_t obj, const char *what, const char *name, hid_t ftype, hid_t mtype,
                        const void *buf)
{
    TdStatus s;
    H5U_QUIET(write_scalar(obj, what, name, ftype, mtype, buf));
    return s;
}

TdStatus h5u_attr_write_str(hid_t obj, const char *what, const char *name, const char *value)
{
    TdStatus s;
    H5U_QUIET(write_str(obj, what, name, value));
    return s;
}

TdStatus h5u_attr_write_f64(hid_t obj, const char *what, const char *name, double v)
{
    return h5u_attr_write(obj, what, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

TdStatus h5u_attr_write_i64(hid_t obj, const char *what, const char *name, long long v)
{
    return h5u_attr_write(obj, what, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, &v);
}

/* ---- reading ---------------------------------------------------------- */

/* Opens attribute name of obj, which must hold one value. */
static TdStatus open_one(hid_t obj, const char *what, const char *name, hid_t *at)
{
    *at = -1;
    htri_t ex = H5Aexists(obj, name);
    if (ex == 0)
        return td_fail(TD_ERR_FORMAT, "%s: attribute '%s' is missing", what, name);
    hid_t a = ex > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : -1;
    if (a < 0)
        return td_fail(TD_ERR_HDF5, "%s: cannot open attribute '%s'", what, name);
    hid_t sp = H5Aget_space(a);
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0)
        H5Sclose(sp);
    if (n != 1) {
        H5Aclose(a);
        return td_fail(TD_ERR_FORMAT, "%s: attribute '%s' holds more than one value", what,
                       name);
    }
    *at = a;
    return TD_OK;
}

static TdStatus read_num(hid_t obj, const char *what, const char *name, hid_t mtype, void *buf)
{
    hid_t at;
    TD_TRY(open_one(obj, what, name, &at));
    hid_t ft = H5Aget_type(at);
    H5T_class_t cls = ft >= 0 ? H5Tget_class(ft) : H5T_NO_CLASS;
    herr_t r = (cls == H5T_INTEGER || cls == H5T_FLOAT) ? H5Aread(at, mtype, buf) : -1;
    if (ft >= 0)
        H5Tclose(ft);
    H5Aclose(at);
    if (r < 0)
        return td_fail(TD_ERR_FORMAT, "%s: attribute '%s' is not a number", what, name);
    return TD_OK;
}

static TdStatus read_str(hid_t obj, const char *what, const char *name, char *buf, size_t cap)
{
    hid_t at;
    TD_TRY(open_one(obj, what, name, &at));
    buf[0] = '\0';
    hid_t ft = H5Aget_type(at);
    if (ft < 0 || H5Tget_class(ft) != H5T_STRING) {
        if (ft >= 0)
            H5Tclose(ft);
        H5Aclose(at);
        return td_fail(TD_ERR_FORMAT, "%s: attribute '%s' is not a string", what, name);
    }
    TdStatus s = TD_OK;
    herr_t r = -1;
    htri_t var = H5Tis_variable_str(ft);
    size_t size = H5Tget_size(ft);
    hid_t mt = H5Tcopy(H5T_C_S1);
    /* the file's character set: no ASCII <-> UTF-8 conversion in HDF5 */
    if (mt >= 0 && H5Tset_cset(mt, H5Tget_cset(ft)) < 0) {
        H5Tclose(mt);
        mt = -1;
    }
    if (mt >= 0 && var > 0 && H5Tset_size(mt, H5T_VARIABLE) >= 0) {
        char *v = NULL;
        r = H5Aread(at, mt, &v);
        if (r >= 0 && v)
            snprintf(buf, cap, "%s", v);
        if (v)
            H5free_memory(v);
    } else if (mt >= 0 && var == 0 && size > 0 && H5Tset_size(mt, size + 1) >= 0) {
        char *v = calloc(size + 1, 1);
        if (!v)
            s = td_fail(TD_ERR_NOMEM, "%s: out of memory reading attribute '%s'", what, name);
        else if ((r = H5Aread(at, mt, v)) >= 0)
            snprintf(buf, cap, "%s", v);
        free(v);
    }
    if (mt >= 0)
        H5Tclose(mt);
    H5Tclose(ft);
    H5Aclose(at);
    if (s == TD_OK && r < 0)
        s = td_fail(TD_ERR_FORMAT, "%s: attribute '%s' is not a readable string", what, name);
    return s;
}

TdStatus h5u_attr_read(hid_t obj, const char *what, const char *name, hid_t mtype, void *buf)
{
    TdStatus s;
    H5U_QUIET(read_num(obj, what, name, mtype, buf));
    return s;
}

TdStatus h5u_attr_read_f64(hid_t obj, const char *what, const char *name, double *v)
{
    return h5u_attr_read(obj, what, name, H5T_NATIVE_DOUBLE, v);
}

TdStatus h5u_attr_read_i64(hid_t obj, const char *what, const char *name, long long *v)
{
    return h5u_attr_read(obj, what, name, H5T_NATIVE_LLONG, v);
}

TdStatus h5u_attr_read_str(hid_t obj, const char *what, const char *name, char *buf, size_t cap)
{
    TdStatus s;
    H5U_QUIET(read_str(obj, what, name, buf, cap));
    return s;
}

TdStatus h5u_check_format(hid_t obj, const char *what, const char *expected, const char *kind)
{
    char fmt[128];
    if (!h5u_attr_exists(obj, "format"))
        return td_fail(TD_ERR_FORMAT, "%s: attribute 'format' is missing (not a %s?)", what,
                       kind);
    TD_TRY(h5u_attr_read_str(obj, what, "format", fmt, sizeof fmt));
    if (strcmp(fmt, expected) != 0)
        return td_fail(TD_ERR_FORMAT, "%s: format '%s' is not %s", what, fmt, expected);
    return TD_OK;
}

/* ---- files, before libhdf5 parses them -------------------------------- */

#define SEAL_MAGIC "tadist-seal-1\n"

static const unsigned char k_h5_signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

typedef struct {
    unsigned long long at;   /* where the signature is */
    unsigned long long base; /* base address (absolute) */
    unsigned long long end;  /* end-of-file address: where the file must end */
} SuperBlock;

static unsigned long long le_bytes(const unsigned char *p, int n)
{
    unsigned long long v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int size_ok(int n) { return n == 2 || n == 4 || n == 8; }

/* Finds the HDF5 signature where HDF5 looks for it (byte 0, 512, 1024, ...)
 * and reads the superblock's version, base and end-of-file addresses: the
 * fields every version has, nothing else. */
static TdStatus read_superblock(FILE *f, const char *path, unsigned long long size, SuperBlock *sb)
{
    unsigned char b[64];
    for (unsigned long long at = 0; at + sizeof k_h5_signature <= size; at = at ? at * 2 : 512) {
        if (fseeko(f, (off_t)at, SEEK_SET) != 0)
            break;
        size_t n = fread(b, 1, sizeof b, f);
        if (n < sizeof k_h5_signature || memcmp(b, k_h5_signature, sizeof k_h5_signature) != 0)
            continue;
        int version = b[8], osz, lsz, first;
        if (version == 0 || version == 1) {
            osz = b[13];
            lsz = b[14];
            first = version == 0 ? 24 : 28; /* base, free space, end of file, driver info */
        } else if (version == 2 || version == 3) {
            osz = b[9];
            lsz = b[10];
            first = 12; /* base, superblock extension, end of file, root group */
        } else {
            return td_fail(TD_ERR_FORMAT, "%s: HDF5 superblock version %d at byte %llu is not one "
                           "HDF5 1.10 writes (corrupt?)", path, version, at);
        }
        if (!size_ok(osz) || !size_ok(lsz))
            return td_fail(TD_ERR_FORMAT, "%s: HDF5 superblock gives %d-byte addresses and "
                           "%d-byte lengths (corrupt?)", path, osz, lsz);
        if (n < (size_t)(first + 3 * osz))
            return td_fail(TD_ERR_FORMAT, "%s: truncated: the file ends inside its HDF5 "
                           "superblock", path);
        unsigned long long undef = osz == 8 ? ~0ull : (1ull << (8 * osz)) - 1;
        unsigned long long base = le_bytes(b + first, osz);
        unsigned long long eof = le_bytes(b + first + 2 * osz, osz);
        if (eof == undef)
            return td_fail(TD_ERR_FORMAT, "%s: its HDF5 end-of-file address is undefined (the "
                           "file was not closed by its writer)", path);
        if (base != at)
            return td_fail(TD_ERR_FORMAT, "%s: HDF5 superblock at byte %llu gives base address "
                           "%llu (corrupt?)", path, at, base);
        sb->at = at;
        sb->base = base;
        sb->end = eof; /* absolute: HDF5 stores the base address plus the relative end */
        return TD_OK;
    }
    return td_fail(TD_ERR_FORMAT, "%s: not an HDF5 file (no HDF5 signature)", path);
}

static TdStatus check_end(const char *path, const SuperBlock *sb, unsigned long long size)
{
    if (sb->end > size)
        return td_fail(TD_ERR_FORMAT, "%s: truncated: its HDF5 superblock says the file ends at "
                       "byte %llu, it has %llu bytes", path, sb->end, size);
    if (sb->end < size)
        return td_fail(TD_ERR_FORMAT, "%s: %llu bytes after the end of its HDF5 data (byte "
                       "%llu): corrupt, or something was appended", path, size - sb->end,
                       sb->end);
    return TD_OK;
}

/* XXH3-128 of bytes [from, size) of f, as 32 hex digits. */
static TdStatus hash_from(FILE *f, const char *path, unsigned long long from, char out[33])
{
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf)
        return td_fail(TD_ERR_NOMEM, "%s: out of memory checking the file", path);
    XXH3_state_t st;
    XXH3_INITSTATE(&st);
    XXH3_128bits_reset(&st);
    int bad = fseeko(f, (off_t)from, SEEK_SET) != 0;
    size_t n;
    while (!bad && (n = fread(buf, 1, CHUNK, f)) > 0)
        XXH3_128bits_update(&st, buf, n);
    bad |= ferror(f);
    free(buf);
    if (bad)
        return td_fail(TD_ERR_IO, "%s: read error: %s", path, strerror(errno));
    XXH128_hash_t h = XXH3_128bits_digest(&st);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.high64,
             (unsigned long long)h.low64);
    return TD_OK;
}

/* The seal at the start of buf (n bytes read from byte 0). 1: a seal, whose
 * hash and size are returned; 0: none; -1: it starts like one but is not. */
static int parse_seal(const unsigned char *buf, size_t n, char hash[33], unsigned long long *bytes)
{
    const size_t ml = sizeof SEAL_MAGIC - 1;
    if (n < ml || memcmp(buf, SEAL_MAGIC, ml) != 0)
        return 0;
    if (n < H5U_USERBLOCK)
        return -1;
    char text[H5U_USERBLOCK + 1];
    memcpy(text, buf, H5U_USERBLOCK);
    text[H5U_USERBLOCK] = '\0';
    int used = 0;
    if (sscanf(text + ml, "xxh3-128 %32[0-9a-f]\nbytes %llu\n%n", hash, bytes, &used) != 2 ||
        strlen(hash) != 32 || used == 0)
        return -1;
    return 1;
}

/* Files verified by their seal, by identity: hashed once per process. */
typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} SealedFile;
enum { SEALED_CACHE = 64 };
static SealedFile g_sealed[SEALED_CACHE];
static int g_sealed_n, g_sealed_next;

static int same_file(const SealedFile *a, const struct stat *st)
{
    return a->dev == st->st_dev && a->ino == st->st_ino && a->size == st->st_size &&
           a->mtime.tv_sec == st->st_mtim.tv_sec && a->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static int sealed_known(const struct stat *st)
{
    for (int i = 0; i < g_sealed_n; i++)
        if (same_file(&g_sealed[i], st))
            return 1;
    return 0;
}

/* Remembered only when last modified at least 2 s ago: file times tick
 * coarsely (a jiffy, or a second or two on some file systems), so a file
 * changed in place right after it was verified could keep the same time.
 * Anything that changes it later gets a later time (git's "racy clean"). */
static void sealed_remember(const struct stat *st)
{
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0 || st->st_mtim.tv_sec > now.tv_sec - 2)
        return;
    SealedFile *e = &g_sealed[g_sealed_next];
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->size = st->st_size;
    e->mtime = st->st_mtim;
    g_sealed_next = (g_sealed_next + 1) % SEALED_CACHE;
    if (g_sealed_n < SEALED_CACHE)
        g_sealed_n++;
}

static TdStatus check_open_file(FILE *f, const char *path)
{
    struct stat st;
    if (fstat(fileno(f), &st) != 0)
        return td_fail(TD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return td_fail(TD_ERR_FORMAT, "%s: not a regular file", path);
    if (sealed_known(&st))
        return TD_OK;
    unsigned long long size = (unsigned long long)st.st_size;
    unsigned char head[H5U_USERBLOCK];
    size_t n = fread(head, 1, sizeof head, f);
    if (ferror(f))
        return td_fail(TD_ERR_IO, "%s: read error: %s", path, strerror(errno));
    char want[33], got[33];
    unsigned long long bytes = 0;
    int sealed = parse_seal(head, n, want, &bytes);
    if (sealed < 0)
        return td_fail(TD_ERR_FORMAT, "%s: its tadist seal (the first %d bytes) is unreadable "
                       "(corrupt?)", path, H5U_USERBLOCK);
    if (sealed) {
        if (size < bytes)
            return td_fail(TD_ERR_FORMAT, "%s: truncated: its seal says %llu bytes, the file has "
                           "%llu", path, bytes, size);
        if (size > bytes)
            return td_fail(TD_ERR_FORMAT, "%s: %llu bytes more than its seal says (%llu): "
                           "corrupt, or something was appended", path, size - bytes, bytes);
        TD_TRY(hash_from(f, path, H5U_USERBLOCK, got));
        if (strcmp(want, got) != 0)
            return td_fail(TD_ERR_FORMAT, "%s: checksum mismatch: its seal says %s, its bytes "
                           "hash to %s (corrupted or edited)", path, want, got);
    }
    SuperBlock sb;
    TD_TRY(read_superblock(f, path, size, &sb));
    if (sealed && sb.at != H5U_USERBLOCK)
        return td_fail(TD_ERR_FORMAT, "%s: sealed, but its HDF5 superblock is at byte %llu, not "
                       "%d (corrupt?)", path, sb.at, H5U_USERBLOCK);
    /* a user block that is not a seal must be blank: a seal whose first bytes
     * were damaged must not pass as a file without one */
    int blank = 1;
    for (size_t i = 0; !sealed && sb.at > 0 && i < n && blank; i++)
        blank = head[i] == 0;
    if (!blank)
        return td_fail(TD_ERR_FORMAT, "%s: its HDF5 user block (the first %llu bytes) is neither "
                       "blank nor a tadist seal (corrupt?)", path, sb.at);
    TD_TRY(check_end(path, &sb, size));
    if (sealed)
        sealed_remember(&st);
    return TD_OK;
}

TdStatus h5u_check_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return td_fail(TD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    TdStatus s = check_open_file(f, path);
    fclose(f);
    return s;
}

hid_t h5u_create_mpio(MPI_Comm comm, const char *path)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0)
        return -1;
    hid_t f = H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0
                  ? -1 : H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    return f;
}

hid_t h5u_sealed_fcpl(void)
{
    hid_t p = H5Pcreate(H5P_FILE_CREATE);
    if (p >= 0 && H5Pset_userblock(p, H5U_USERBLOCK) < 0) {
        H5Pclose(p);
        p = -1;
    }
    return p;
}

static TdStatus seal_open_file(FILE *f, const char *path)
{
    struct stat st;
    if (fstat(fileno(f), &st) != 0)
        return td_fail(TD_ERR_IO, "%s: cannot seal: %s", path, strerror(errno));
    unsigned long long size = (unsigned long long)st.st_size;
    SuperBlock sb;
    TD_TRY(read_superblock(f, path, size, &sb));
    if (sb.at != H5U_USERBLOCK)
        return TD_OK; /* no user block of ours: nothing to seal */
    unsigned char head[H5U_USERBLOCK];
    if (fseeko(f, 0, SEEK_SET) != 0 || fread(head, 1, sizeof head, f) != sizeof head)
        return td_fail(TD_ERR_IO, "%s: cannot seal: read error", path);
    int blank = 1;
    for (size_t i = 0; i < sizeof head && blank; i++)
        blank = head[i] == 0;
    if (!blank && memcmp(head, SEAL_MAGIC, sizeof SEAL_MAGIC - 1) != 0)
        return TD_OK; /* someone else's user block: left alone */
    char hash[33];
    TD_TRY(hash_from(f, path, H5U_USERBLOCK, hash));
    memset(head, 0, sizeof head);
    snprintf((char *)head, sizeof head, SEAL_MAGIC "xxh3-128 %s\nbytes %llu\n", hash, size);
    if (fseeko(f, 0, SEEK_SET) != 0 || fwrite(head, 1, sizeof head, f) != sizeof head ||
        fflush(f) != 0)
        return td_fail(TD_ERR_IO, "%s: cannot seal: %s", path, strerror(errno));
    return TD_OK;
}

TdStatus h5u_seal(const char *path)
{
    FILE *f = fopen(path, "r+b");
    if (!f)
        return td_fail(TD_ERR_IO, "%s: cannot seal: %s", path, strerror(errno));
    TdStatus s = seal_open_file(f, path);
    if (fclose(f) != 0 && s == TD_OK)
        s = td_fail(TD_ERR_IO, "%s: cannot seal: %s", path, strerror(errno));
    return s;
}

/* ---- folders ---------------------------------------------------------- */

static TdStatus mkdir_one(const char *dir)
{
    if (mkdir(dir, 0777) == 0)
        return TD_OK;
    int err = errno;
    struct stat st;
    if (err == EEXIST && stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return TD_OK;
        return td_fail(TD_ERR_IO, "cannot create directory '%s': not a directory", dir);
    }
    return td_fail(TD_ERR_IO, "cannot create directory '%s': %s", dir, strerror(err));
}

TdStatus fs_mkdir_p(const char *path)
{
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return td_fail(TD_ERR_ARG, "path too long: %s", path);
    if (tmp[0] == '\0')
        return td_fail(TD_ERR_ARG, "cannot create a directory with an empty name");
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/' && p[-1] != '/') {
            *p = '\0';
            TD_TRY(mkdir_one(tmp));
            *p = '/';
        }
    return mkdir_one(tmp);
}
