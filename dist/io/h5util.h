/* h5util: the small HDF5 attribute helpers and the mkdir -p that the file
 * modules of dist/ share, so that each file format reads and writes scalar
 * attributes the same way and reports failures the same way.
 *
 * Attributes are scalar (one value): a number, or a null-terminated string.
 * Strings are written fixed-length (strlen + 1 bytes); reading accepts fixed-
 * and variable-length strings in any character set.
 *
 * Errors: every function that returns TdStatus records one td_fail message on
 * failure, "<what>: ..." naming the attribute, where what is the caller's
 * description of the object: the file's path, or the path and the group
 * ("runs/x/heads.h5", "task vectors 'p.h5', task 'mnist'"). HDF5's own error
 * stack is not printed. The codes are given per function below.
 *
 * Single-process: plain HDF5 and POSIX calls on objects the caller opened;
 * nothing collective by itself, except h5u_create_mpio, which creates a file
 * with the MPI-IO driver. (On a file opened with the MPI-IO
 * driver, creating attributes is a metadata operation: HDF5 requires every
 * rank to make the same h5u_attr_write* calls with the same values.) */
#ifndef TD_H5UTIL_H
#define TD_H5UTIL_H

#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>

#include "status.h"

/* 1 when obj has an attribute called name, 0 when not or when obj cannot be
 * queried (records nothing). */
int h5u_attr_exists(hid_t obj, const char *name);

/* Creates scalar attribute name of file type ftype on obj and writes one value
 * of memory type mtype from buf. Fails when it already exists.
 * Error: TD_ERR_HDF5, "<what>: cannot write attribute '<name>'". */
TdStatus h5u_attr_write(hid_t obj, const char *what, const char *name, hid_t ftype, hid_t mtype,
                        const void *buf);
/* Writes value as a fixed-length, null-terminated string. Error: TD_ERR_HDF5. */
TdStatus h5u_attr_write_str(hid_t obj, const char *what, const char *name, const char *value);
/* Writes v as IEEE float64 / as signed 64-bit integer. Error: TD_ERR_HDF5. */
TdStatus h5u_attr_write_f64(hid_t obj, const char *what, const char *name, double v);
TdStatus h5u_attr_write_i64(hid_t obj, const char *what, const char *name, long long v);

/* Reads the one value of number attribute name (integer or float in the file)
 * into buf as memory type mtype (HDF5 converts).
 * Errors, all TD_ERR_FORMAT: "<what>: attribute '<name>' is missing", "... holds
 * more than one value", "... is not a number" (also when the conversion fails). */
TdStatus h5u_attr_read(hid_t obj, const char *what, const char *name, hid_t mtype, void *buf);
/* h5u_attr_read as double / as long long. */
TdStatus h5u_attr_read_f64(hid_t obj, const char *what, const char *name, double *v);
TdStatus h5u_attr_read_i64(hid_t obj, const char *what, const char *name, long long *v);

/* Reads string attribute name into buf[cap] (cap >= 1), truncating to fit.
 * Errors: TD_ERR_FORMAT, "<what>: attribute '<name>' is missing", "... is not a
 * string", "... is not a readable string"; TD_ERR_NOMEM. */
TdStatus h5u_attr_read_str(hid_t obj, const char *what, const char *name, char *buf, size_t cap);

/* Checks that obj's string attribute "format" reads expected. kind names
 * the file type for the hint ("tadist model file").
 * Errors, TD_ERR_FORMAT: "<what>: attribute 'format' is missing (not a <kind>?)",
 * "<what>: format '<found>' is not <expected>", and those of h5u_attr_read_str. */
TdStatus h5u_check_format(hid_t obj, const char *what, const char *expected, const char *kind);

/* ---- files, before libhdf5 parses them ---------------------------------
 *
 * libhdf5 trusts the bytes of a file: a corrupted object header can make it
 * read freed or out-of-bounds memory (1.10.8). These two functions keep the
 * files tadist writes (model and task files) away from it when they are not
 * what was written.
 *
 * The seal: such files are created with a user block of H5U_USERBLOCK bytes
 * (h5u_sealed_fcpl), a region at the start of the file that HDF5 leaves to
 * the application. After the file is closed, h5u_seal writes into it
 *   "tadist-seal-1\nxxh3-128 <32 hex digits>\nbytes <file size>\n"
 * (NUL-padded): the XXH3-128 of every byte after the user block, and the size
 * of the whole file. */
enum { H5U_USERBLOCK = 512 };

/* Collective over comm: creates (truncates) path with the MPI-IO driver for
 * parallel writes; -1 when HDF5 refuses (nothing recorded: the caller names
 * the file in its message). */
hid_t h5u_create_mpio(MPI_Comm comm, const char *path);

/* A file creation property list with the seal's user block (close it with
 * H5Pclose), or -1 when HDF5 refuses. */
hid_t h5u_sealed_fcpl(void);

/* Seals the closed file path (see above). A file without a user block of
 * H5U_USERBLOCK bytes (written by another program or an older tadist) is
 * left as it is: nothing to do, TD_OK.
 * Errors: TD_ERR_IO "<path>: cannot seal: <strerror>"; TD_ERR_FORMAT when path
 * is not an HDF5 file. */
TdStatus h5u_seal(const char *path);

/* The checks before H5Fopen, with plain stdio and the least parsing: the file
 * starts with a seal or with the HDF5 signature (or holds it at 512, 1024, ...
 * bytes, after a blank user block); its superblock has a version HDF5 1.10 writes
 * (0 to 3), a base address where the signature is, and an end-of-file
 * address that is the file's size (a cut or extended file is found here, not
 * by libhdf5); and when it is sealed, the seal's size and hash match every
 * byte. A sealed file verified once is remembered by device, inode, size and
 * modification time (when that is 2 s old or more), so a process hashes it
 * once. Not thread-safe (one table per process).
 * Errors (messages start "<path>: "): TD_ERR_IO "cannot open: <strerror>";
 * TD_ERR_FORMAT "not an HDF5 file", "truncated: ...", "... bytes after the
 * end of its HDF5 data ...", "HDF5 superblock ...", "checksum mismatch: ...
 * (corrupted or edited)", "... more than its seal says ...", "its tadist seal
 * ... is unreadable", "its HDF5 user block ... is neither blank nor a tadist
 * seal". */
TdStatus h5u_check_file(const char *path);

/* mkdir -p: creates path and every missing parent (mode 0777 less the umask);
 * succeeds when path already is a folder.
 * Errors: TD_ERR_ARG "path too long: <path>"; TD_ERR_IO "cannot create directory
 * '<part>': <strerror>", or "... : not a directory" when a part is a file. */
TdStatus fs_mkdir_p(const char *path);

#endif
