/* report: the report stage (last) - <run_dir>/report.md, its SVG figures
 * (<run_dir>/figures/<name>.svg, written by svg.h, no external program) and
 * CSV tables (<run_dir>/tables/<name>.csv), all from results.json and grids.h5 alone.
 *
 * Every number shown is read from results.json (the key is named beside each
 * table) or from a grids.h5 dataset (named under each figure); a part of
 * results.json that is missing is printed as "not run". The report names the
 * command(s) that produced the run (results.json "commands", recorded by
 * report_note_command at the start of each pipeline run).
 *
 * Sections: training time per mode; single-task accuracy (table, per-task
 * bars); task addition per mode / method / head set at the chosen alpha
 * (absolute and normalised, per task) with accuracy against alpha;
 * coefficient searches (report_coef.c: per-task and per-block coefficients
 * against the uniform alpha, coefficient heat maps, objective traces); negation;
 * disentanglement heat maps (pred and repr, one per mode and pair, shared
 * colour scale) with their mean errors; kernel-behaviour diagnostic.
 * Tables: single.csv, addition.csv, coef_search.csv, coef_search_coef.csv,
 * negation.csv, disentangle.csv, kernel.csv, train_time.csv. Rank 0 writes; the others wait. */
#ifndef TD_REPORT_H
#define TD_REPORT_H

#include <cjson/cJSON.h>
#include <stdio.h>

#include "config.h"
#include "status.h"

/* Collective over the run communicator (g_rt.comm); returns an agreed status. */
TdStatus report_stage(const TdConfig *cfg);

/* Appends this process's command line (/proc/self/cmdline, with the rank
 * count) and the stages it runs to results.json "commands". Collective over
 * the run communicator (g_rt.comm) (rank 0 writes); creates the run directory. */
TdStatus report_note_command(const TdConfig *cfg);

/* ---- shared by the report's own sources (report.c, report_coef.c) ---- */

/* One head set's scores of a merged encoder, results.h
 * "<merge>.heads.<head set>" (task addition and the coefficient searches
 * alike): abs_test, norm_test (NaN when absent) and normalised_by (NULL when
 * not recorded). Returns 0, with NaN / NULL, when h is not an object (e.g.
 * "finetuned": "not trained"). */
typedef struct {
    double abs_test, norm_test;
    const char *normalised_by;
} ReportHeads;
int report_heads_read(const cJSON *h, ReportHeads *out);

/* The "Coefficient searches" section (report_coef.c) into md, from
 * results.json "modes" and grids.h5 in run_dir (figures under
 * run_dir/figures, tables under run_dir/tables); returns the number of
 * figures written. */
int report_coef_section(FILE *md, const char *run_dir, const cJSON *modes);

#endif
