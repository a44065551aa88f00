/* commands: the subcommands of the tadist program. Each takes the arguments
 * after its name, runs on every rank (collective over MPI_COMM_WORLD), and
 * returns a TdStatus already agreed across ranks (runtime_agree). */
#ifndef TD_COMMANDS_H
#define TD_COMMANDS_H

#include "status.h"

TdStatus cmd_run(int argc, char **argv);    /* tadist CONFIG [--set key=value]... */
TdStatus cmd_import(int argc, char **argv); /* tadist import SRC -o MODEL.h5 */
TdStatus cmd_init(int argc, char **argv);   /* tadist init --arch NAME --seed S -o MODEL.h5 */
TdStatus cmd_check(int argc, char **argv);  /* tadist check --model M.h5 --ref REF.h5 */
TdStatus cmd_bench(int argc, char **argv);  /* tadist bench --arch NAME --batch B */
TdStatus cmd_data(int argc, char **argv);   /* tadist data ... (task data sets) */
TdStatus cmd_merge(int argc, char **argv);  /* tadist merge [CONFIG] [options] -o MODEL.h5 */
TdStatus cmd_export(int argc, char **argv); /* tadist export MODEL.h5 -o model.safetensors */
TdStatus cmd_zeroshot(int argc, char **argv); /* tadist zeroshot --model M.h5 ... -o HEADS.h5 */

#endif
