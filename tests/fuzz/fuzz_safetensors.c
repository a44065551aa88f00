/* Fuzz harness: a Hugging Face model.safetensors, with config.json beside it.
 * Input: CONFIG_JSON FUZZ_SEP SAFETENSORS, or SAFETENSORS alone (no config.json:
 * the architecture comes from the tensor shapes, --heads 2).
 * Calls st_open / st_find / st_read_f32 on the file, then `tadist import`
 * (cmd_import: config.json parsing, name mapping, model_write) on the folder,
 * with --text when config.json mentions text_config. */
#include "fuzz_common.h"

#include "commands.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_mpi_init();
    FuzzParts parts;
    fuzz_split(data, size, 2, &parts);
    char st_path[1024], cfg_path[1024], out_path[1024], src[1024];
    const uint8_t *st = parts.p[parts.n - 1];
    size_t st_len = parts.len[parts.n - 1];
    int text = 0;
    fuzz_write(st_path, sizeof st_path, "m/model.safetensors", st, st_len);
    if (parts.n == 2) {
        fuzz_write(cfg_path, sizeof cfg_path, "m/config.json", parts.p[0], parts.len[0]);
        text = memmem(parts.p[0], parts.len[0], "text_config", 11) != NULL;
    }

    StFile f;
    if (st_open(st_path, &f) == TD_OK) {
        for (int i = 0; i < f.count; i++) {
            const StTensor *t = &f.tensors[i];
            if (st_find(&f, t->name) == NULL)
                abort(); /* every listed tensor must be found by its name */
            float *buf = malloc((t->numel ? t->numel : 1) * sizeof *buf);
            if (buf) {
                (void)st_read_f32(&f, t, buf);
                free(buf);
            }
            td_error_clear();
        }
        st_close(&f);
    }
    td_error_clear();

    fuzz_path(src, sizeof src, "m");
    fuzz_path(out_path, sizeof out_path, "out.h5");
    char *argv[8];
    int argc = 0;
    argv[argc++] = src;
    argv[argc++] = "-o";
    argv[argc++] = out_path;
    if (parts.n == 2) {
        if (text)
            argv[argc++] = "--text";
    } else {
        argv[argc++] = "--heads";
        argv[argc++] = "2";
    }
    argv[argc] = NULL;
    (void)cmd_import(argc, argv);
    fuzz_clean();
    return 0;
}
