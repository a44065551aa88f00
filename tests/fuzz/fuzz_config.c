/* Fuzz harness: libconfig run files and `--set key=value` arguments.
 * Input: CONFIG_FILE [FUZZ_SEP SET_LINES]: each line of SET_LINES is one --set
 * argument (at most 64). config_load_local (the single-process half of
 * config_load: defaults, the file, the sets, validation); on success also
 * config_print, config_value_text of a few keys, and the sweep axes
 * (config_sweep_parse, and config_sweep_derive of the first and last run). */
#include "fuzz_common.h"

#include "cli.h"
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FuzzParts parts;
    fuzz_split(data, size, 2, &parts);
    char path[1024];
    fuzz_write(path, sizeof path, "run.cfg", parts.p[0], parts.len[0]);
    char *sets_text = parts.n == 2 ? fuzz_strdup(parts.p[1], parts.len[1]) : NULL;
    CliList sets = {0};
    if (sets_text) {
        char *save = NULL;
        for (char *line = strtok_r(sets_text, "\n", &save); line && sets.count < 64;
             line = strtok_r(NULL, "\n", &save))
            sets.items[sets.count++] = line;
    }
    static TdConfig cfg; /* large: keep it off the stack */
    memset(&cfg, 0, sizeof cfg);
    if (config_load_local(path, sets_text ? &sets : NULL, &cfg) == TD_OK) {
        FILE *devnull = fopen("/dev/null", "w");
        if (devnull) {
            config_print(&cfg, devnull);
            fclose(devnull);
        }
        char buf[4096];
        static const char *const keys[] = {"run.stages", "model.arch", "finetune.lr", "sweep.axes",
                                           "no.such_key"};
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
            (void)config_value_text(&cfg, keys[k], buf, sizeof buf);
        td_error_clear();
        static TdSweep sw;
        if (config_sweep_parse(&cfg, &sw) == TD_OK) {
            static TdConfig run;
            (void)config_sweep_derive(&cfg, &sw, 0, &run);
            td_error_clear();
            (void)config_sweep_derive(&cfg, &sw, sw.runs - 1, &run);
        }
    }
    free(sets_text);
    fuzz_clean();
    return 0;
}
