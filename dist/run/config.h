/* config: the run configuration (libconfig files), its schema, and how every
 * rank gets the same copy.
 *
 * The schema is the option lists below: one line per option,
 *   X(section, TYPE, name, default, limits, doc)
 * From that one line come the field of TdConfig (cfg->section.name), the key
 * "section.name" in files and --set, its default, its validation, the
 * canonical dump and the line in config/reference.cfg. Adding an option is
 * adding a line; a new section also needs its struct and its place in the
 * table in config_load.c.
 *
 * TYPE       C field      limits                       text form (--set, defaults)
 * INT        int          range "[lo,hi]", NULL = any  42
 * FLOAT      double       range, ( ) = open end        1e-5   (an int is accepted)
 * BOOL       int (0/1)    NULL                         true | false
 * STR        char[256]    NULL                         models/x.h5  or  "a b"
 * ENUM       char[256]    "a|b|c"                      a
 * CHOICES    TdCfgNames   "a|b|c": one or more, no repeats   ["a","b"]  or  a,b
 * NAMES      TdCfgNames   NULL: zero or more free names      [] , ["x","y"]  or  x,y
 * NUM2/NUM3  double[2/3]  range of each entry                [0.9, 1.0]  or  0.9,1.0
 * NUMS       TdCfgNums    range of each entry: zero or more, no repeats  [10, 20]  or  10,20
 * Ranges use "inf"; "(0,inf)" means > 0. Every field is fixed-size, so a
 * TdConfig is plain bytes: rank 0 reads and validates, then broadcasts it. */
#ifndef TD_CONFIG_H
#define TD_CONFIG_H

#include <stdio.h>

#include "cli.h"
#include "status.h"

enum { TD_CFG_STR_MAX = 256, TD_CFG_NAME_MAX = 128, TD_CFG_LIST_MAX = 32 };

typedef char TdCfgStr[TD_CFG_STR_MAX];
typedef struct {
    int count;
    char item[TD_CFG_LIST_MAX][TD_CFG_NAME_MAX];
} TdCfgNames;
typedef struct {
    int count;
    double v[TD_CFG_LIST_MAX];
} TdCfgNums;
typedef double TdCfgNum2[2];
typedef double TdCfgNum3[3];

/* ---- the options, section by section ------------------------------------ */

#define TD_CONFIG_RUN(X)                                                                        \
    X(run, STR, name, "tadist", NULL, "label of the run; its outputs go to out_dir/name")        \
    X(run, STR, out_dir, "runs", NULL, "directory for checkpoints, task vectors and results")    \
    X(run, INT, seed, "0", "[0,2147483647]",                                                    \
      "seed of every random choice (data order, augmentation, initialisation)")                  \
    X(run, CHOICES, stages, "finetune,single,addition",                                         \
      "pretrain|finetune|single|addition|negation|disentangle|kernel|report",                   \
      "stages to run, in this order: pre-train theta0 (pretrain section), fine-tune each task, " \
      "single-task accuracy, task addition, "                                                    \
      "task negation, weight disentanglement, kernel-behaviour diagnostic, report")

#define TD_CONFIG_MODEL(X)                                                                      \
    X(model, STR, path, "models/vit_b32.h5", NULL,                                             \
      "the pre-trained encoder theta0 (tadist model file)")                                     \
    X(model, STR, arch, "", NULL,                                                               \
      "when model.path is missing and model.random is true: write a random encoder of this "     \
      "architecture (vit_b32, vit_b16, vit_l14, vit_tiny, vit_small28, vit_demo), or the "      \
      "pretrain stage trains one; \"\" = the file must exist")                                    \
    X(model, BOOL, random, "false", NULL,                                                       \
      "when model.path is missing: true = start from a random model.arch encoder written there " \
      "(tests, smoke runs); false = a missing model.path is an error (a mistyped path must not " \
      "train from random weights)")                                                             \
    X(model, STR, hf_import, "", NULL,                                                          \
      "when model.path is missing: Hugging Face CLIP directory (model.safetensors) to import "   \
      "into it; \"\" = none")

#define TD_CONFIG_DATA(X)                                                                       \
    X(data, STR, dir, "data", NULL, "task suite directory: one TASK.h5 per task (tadist data)")  \
    X(data, NAMES, tasks, "cars,dtd,eurosat,gtsrb,mnist,resisc45,sun397,svhn", NULL,           \
      "tasks, by file name in data.dir without .h5; one fine-tuning per task")                  \
    X(data, BOOL, augment, "true", NULL,                                                        \
      "random resized crop at train time; false = the eval preprocessing (resize, centre crop) " \
      "for training too")                                                                       \
    X(data, NUM2, crop_scale, "0.9,1.0", "(0,1]",                                             \
      "random resized crop: range of the area kept")                                             \
    X(data, NUM3, mean, "0.48145466,0.4578275,0.40821073", "[0,1]",                             \
      "per-channel normalisation mean (CLIP's); every resize is bicubic")                                                 \
    X(data, NUM3, std, "0.26862954,0.26130258,0.27577711", "(0,inf)",                           \
      "per-channel normalisation std (CLIP's)")

#define TD_CONFIG_HEADS(X)                                                                      \
    X(heads, ENUM, source, "zeroshot", "prototype|probe|file|zeroshot",                         \
      "each task's head: zeroshot = CLIP class-name prompt heads (the paper's), prototype = "    \
      "class means of theta0 features, probe = linear probe on theta0 features, "              \
      "file = heads.file")                                                                      \
    X(heads, STR, file, "", NULL, "heads file, when heads.source = \"file\"") \
    X(heads, STR, vocab, "", NULL,                                                              \
      "heads.source = zeroshot: the CLIP tokenizer's vocab.json (the model file needs its text " \
      "tower: tadist import --text)")                                                           \
    X(heads, STR, merges, "", NULL, "heads.source = zeroshot: the CLIP tokenizer's merges.txt") \
    X(heads, STR, templates, "", NULL,                                                          \
      "heads.source = zeroshot: prompt templates, a file or a shipped set name for every task, " \
      "or a folder of <task>.txt files; \"\" = the set " \
      "named after each task (config/templates/<task>.txt)")                                   \
    X(heads, FLOAT, logit_scale, "100", "(0,inf)",                                              \
      "logits = logit_scale * cosine(feature, head row), for every head source")               \
    X(heads, INT, probe_steps, "300", "[1,inf)",                                                \
      "heads.source = probe: full-batch Adam steps of softmax regression on theta0 features")

#define TD_CONFIG_PRETRAIN(X)                                                                   \
    X(pretrain, BOOL, enabled, "false", NULL,                                                   \
      "pretrain stage: when model.path is missing, train a model.arch encoder from random "      \
      "init on pretrain.task (all ranks, data-parallel) and write it there; an existing file "   \
      "is reused")                                                                              \
    X(pretrain, STR, task, "pretrain", NULL, "pre-training task: data.dir/<task>.h5")          \
    X(pretrain, INT, steps, "1000", "[1,inf)", "optimizer steps")                               \
    X(pretrain, FLOAT, lr, "1e-3", "(0,inf)", "peak AdamW learning rate (cosine schedule)")     \
    X(pretrain, INT, batch, "128", "[1,inf)", "images per step, over all ranks")                \
    X(pretrain, INT, warmup, "100", "[0,inf)", "linear warm-up steps")                          \
    X(pretrain, FLOAT, weight_decay, "0.1", "[0,inf)", "AdamW decoupled weight decay (encoder)") \
    X(pretrain, FLOAT, scale, "20", "(0,inf)",                                                  \
      "cosine classifier: logits = scale * cos(feature, class embedding), class embeddings "   \
      "learned with the encoder")                                                              \
    X(pretrain, INT, checkpoint_every, "500", "[0,inf)",                                       \
      "save a checkpoint (parameters, AdamW moments, head, step) in <run dir>/ckpt/pretrain.h5 " \
      "every N steps, so that a killed pre-training resumes (a SIGTERM or SIGUSR1 always saves " \
      "one); it is deleted once the model is written; 0 = off")                                  \
    X(pretrain, INT, stop_after, "0", "[0,inf)",                                                \
      "testing: end pre-training after N steps as if killed (resume test); 0 = off")          \
    X(pretrain, STR, text_arch, "", NULL,                                                       \
      "\"\" = a learned embedding per class; a text tower (text_demo) = CLIP-style: the class "   \
      "names are captions, each embedded by a text tower of this architecture (random trunk, "  \
      "learned projection; tokenizer heads.vocab and heads.merges), contrasted with every "     \
      "caption; the model file then carries the tower, for heads.source = zeroshot")

#define TD_CONFIG_FINETUNE(X)                                                                   \
    X(finetune, CHOICES, modes, "attn", "full|attn|attn_bias|mlp|linear|ntk",                   \
      "fine-tuning modes, each a separate set of task vectors: attn is the paper's, full and "   \
      "ntk its baselines")                                                                       \
    X(finetune, ENUM, optimizer, "adamw", "adamw", "optimizer")                                 \
    X(finetune, FLOAT, lr, "1e-5", "(0,inf)", "peak learning rate")                             \
    X(finetune, FLOAT, weight_decay, "0.1", "[0,inf)", "AdamW decoupled weight decay")          \
    X(finetune, FLOAT, beta1, "0.9", "[0,1)", "AdamW beta1")                                    \
    X(finetune, FLOAT, beta2, "0.999", "[0,1)", "AdamW beta2")                                  \
    X(finetune, FLOAT, eps, "1e-8", "(0,inf)", "AdamW epsilon")                                 \
    X(finetune, INT, batch, "128", "[1,inf)", "images per step, over all ranks of a task")      \
    X(finetune, INT, steps, "2000", "[1,inf)", "optimizer steps per task")                      \
    X(finetune, INT, warmup, "500", "[0,inf)", "linear warm-up steps (at most finetune.steps)") \
    X(finetune, ENUM, schedule, "cosine", "cosine|linear|constant",                             \
      "learning rate after warm-up: cosine or linear decay to 0, or constant")                  \
    X(finetune, FLOAT, grad_clip, "1.0", "[0,inf)", "clip the global gradient norm; 0 = off")   \
    X(finetune, FLOAT, label_smoothing, "0", "[0,1)", "label smoothing of the cross-entropy")   \
    X(finetune, BOOL, train_heads, "false", NULL,                                                 \
      "train each task's head with the encoder (same AdamW lr and weight decay; the paper "     \
      "keeps them frozen); written to heads_<mode>.h5 in the run directory")                    \
    X(finetune, INT, checkpoint_every, "0", "[0,inf)",                                          \
      "save a checkpoint (trained tensors, AdamW moments, step) every N steps and at the last " \
      "step, so that a killed run resumes; 0 = by time only (checkpoint_minutes)")             \
    X(finetune, FLOAT, checkpoint_minutes, "10", "[0,inf)",                                     \
      "also save one whenever this many minutes of training passed since the last (rank 0's "  \
      "clock), and at the last step; a SIGTERM or SIGUSR1 always saves one; 0 = off")          \
    X(finetune, INT, log_every, "50", "[1,inf)", "log loss and throughput every N steps") \
    X(finetune, INT, stop_after, "0", "[0,inf)",                                                \
      "testing: end the run after N steps of each task as if killed (resume test); 0 = off")

#define TD_CONFIG_MERGE(X)                                                                      \
    X(merge, CHOICES, methods, "sum", "sum|mean|ties|dare|dare_ties",                           \
      "merges evaluated by the addition stage: sum = theta0 + alpha*sum(tau) (task arithmetic), " \
      "mean = weight average, ties, dare (then sum), dare_ties (DARE, then TIES)")            \
    X(merge, INT, stop_after, "0", "[0,inf)",                                                   \
      "testing: end the run's searches after N work-pool items (AdaMerging: after N steps; "  \
      "surrogate screening: after N chunks) as " \
      "if killed (resume test); 0 = off")                                                       \
    X(merge, CHOICES, search, "none",                                                         \
      "none|random|coordinate|adamerging|bobyqa|sbplx|crs2|cmaes|surrogate",                   \
      "coefficient searches run after the uniform alpha grid, each for every "                  \
      "merge.coefficients structure: random = merge.budget seeded vectors on the merge.alpha "  \
      "grid; coordinate = one coefficient swept over that grid at a time; adamerging = "        \
      "coefficients learned by gradient (merge.adamerging); bobyqa, sbplx, crs2 = NLopt's "     \
      "optimisers; cmaes = CMA-ES, each population evaluated in parallel; surrogate = a grid "  \
      "screened through the linear surrogate, the best verified exactly (merge.surrogate); "   \
      "none alone = off")                                                                       \
    X(merge, CHOICES, coefficients, "task", "uniform|task|block",                               \
      "coefficient structures of merge.search: theta0 + sum_t sum_g a[t,g] tau[t,g] with one " \
      "a for all (uniform), one per task (task), or one per task and transformer block plus "   \
      "one per task for the other tensors (block)")                                             \
    X(merge, NUM2, bounds, "0,1", NULL,                                                         \
      "box of every coefficient: the black-box searches' bounds, AdaMerging's clamp")          \
    X(merge, ENUM, objective, "norm_acc", "norm_acc|val_ce",                                    \
      "what the black-box searches optimise on val: mean normalised accuracy (frozen heads) "   \
      "or the mean cross-entropy")                                                              \
    X(merge, INT, budget, "20", "[1,inf)",                                                      \
      "coefficient vectors a black-box search may evaluate (each on every task's val split)")   \
    X(merge, INT, seed, "0", "[0,2147483647]", "seed of the random, crs2 and cmaes searches")

#define TD_CONFIG_MERGE_SURROGATE(X)                                                            \
    X(merge.surrogate, NUMS, values, "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1", NULL,           \
      "grid of every coefficient that merge.search = surrogate screens through the linear "    \
      "surrogate f0 + sum_j a_j J tau_j on the val splits")                                    \
    X(merge.surrogate, FLOAT, exhaustive_max, "1e10", "[1,inf)",                                \
      "the largest grid (values^coefficients vectors) screened exhaustively, in Gray-code "    \
      "order; a larger one (block coefficients) is sampled: merge.surrogate.samples vectors")  \
    X(merge.surrogate, ENUM, strategy, "grid", "grid|cmaes|adamerging",                         \
      "how merge.search = surrogate screens: grid = the merge.surrogate.values grid, whole or "  \
      "sampled; cmaes = CMA-ES within merge.bounds from the uniform alpha, restarted with "     \
      "doubled populations (IPOP) until merge.surrogate.samples candidates are scored; "       \
      "adamerging = AdaMerging (merge.adamerging's objective, lr, init, batch, steps) on the " \
      "surrogate's tensors (entropy: of the test split, at most eval.limit images per task), " \
      "its iterates at merge.surrogate.top_k evenly spaced steps the candidates")             \
    X(merge.surrogate, INT, samples, "20000", "[1,inf)",                                        \
      "candidates screened when the grid is too large to enumerate (random grid vectors), "    \
      "or by the cmaes strategy")                                                              \
    X(merge.surrogate, INT, top_k, "100", "[1,inf)",                                            \
      "best screened vectors re-evaluated exactly on val; the choice is the best of them")     \
    X(merge.surrogate, BOOL, ntk, "true", NULL,                                                 \
      "ntk task vectors: the alpha grid and the black-box searches score val through the "     \
      "surrogate, exact for the linearised model (one JVP pass instead of a forward per "      \
      "candidate)")

#define TD_CONFIG_MERGE_ADAMERGING(X)                                                           \
    X(merge.adamerging, ENUM, objective, "entropy", "entropy|val_ce",                           \
      "entropy = sum over tasks of the mean entropy of the merged model's predictions on the "  \
      "task's test inputs, labels never read (test-time adaptation, as the paper); val_ce = "   \
      "the same sum of mean cross-entropies on val")                                            \
    X(merge.adamerging, FLOAT, lr, "1e-3", "(0,inf)", "Adam learning rate of the coefficients")  \
    X(merge.adamerging, FLOAT, init, "0.3", NULL, "initial value of every coefficient")         \
    X(merge.adamerging, INT, batch, "16", "[1,inf)", "images per task per step, over all ranks") \
    X(merge.adamerging, INT, steps, "500", "[1,inf)", "Adam steps")                             \
    X(merge.adamerging, INT, checkpoint_every, "50", "[0,inf)",                                 \
      "save the coefficients and Adam's moments every N steps, so that a killed run resumes; " \
      "0 = none")                                                                               \
    X(merge.adamerging, INT, log_every, "50", "[1,inf)", "progress line every N steps")

#define TD_CONFIG_MERGE_ALPHA(X)                                                                \
    X(merge.alpha, FLOAT, start, "0", NULL, "first scaling coefficient of the search grid")     \
    X(merge.alpha, FLOAT, stop, "1", NULL, "last coefficient (included when on the grid)")      \
    X(merge.alpha, FLOAT, step, "0.05", "(0,inf)",                                              \
      "grid step; the coefficient is chosen on val, by mean normalised accuracy")

#define TD_CONFIG_MERGE_TIES(X)                                                                 \
    X(merge.ties, FLOAT, k, "20", "[0,100]",                                                  \
      "percent of largest-magnitude entries kept per task vector")                              \
    X(merge.ties, NUMS, k_grid, "", "[0,100]",                                                  \
      "values of merge.ties.k searched together with alpha on val; [] = merge.ties.k alone")    \
    X(merge.ties, ENUM, scope, "global", "global|tensor",                                       \
      "top-k over the whole model or per tensor")                                               \
    X(merge.ties, ENUM, combine, "mean", "mean|sum",                                            \
      "how entries that agree with the elected sign are combined")

#define TD_CONFIG_MERGE_DARE(X)                                                                 \
    X(merge.dare, FLOAT, p, "0.5", "[0,1)",                                                     \
      "drop probability of each entry; the rest are scaled by 1/(1-p)")                         \
    X(merge.dare, NUMS, p_grid, "", "[0,1)",                                                    \
      "values of merge.dare.p searched together with alpha on val; [] = merge.dare.p alone")    \
    X(merge.dare, INT, seed, "0", "[0,2147483647]", "seed of the drop masks")

#define TD_CONFIG_EVAL(X)                                                                       \
    X(eval, INT, batch, "256", "[1,inf)", "images per forward pass, over all ranks")            \
    X(eval, CHOICES, heads, "frozen,refit", "frozen|finetuned|refit",                                 \
      "heads that score a merged encoder: theta0's frozen heads, heads trained with the "       \
      "encoder (needs finetune.train_heads), heads refit on the merged features")               \
    X(eval, INT, limit, "0", "[0,inf)",                                                        \
      "at most this many images per split and task, evenly spaced over the split; 0 = all")   \
    X(eval, ENUM, precision, "fp32", "fp32|bf16",                                               \
      "products of evaluation forwards (accuracies, search candidates, disentanglement "        \
      "grids): bf16 = bf16 with fp32 accumulation through oneDNN where the CPU has AVX512_BF16 " \
      "or AMX (fp32 elsewhere, logged); training and gradients stay fp32")

#define TD_CONFIG_NEGATION(X)                                                                   \
    X(negation, NAMES, targets, "", NULL, "tasks to negate; [] = every task of data.tasks")     \
    X(negation, STR, control, "", NULL,                                                         \
      "control task (in data.dir) whose accuracy must be kept; needed by the negation stage")  \
    X(negation, FLOAT, threshold, "0.95", "(0,1]",                                              \
      "keep control accuracy >= threshold * theta0's; alpha from the merge.alpha grid")

#define TD_CONFIG_DISENTANGLE(X)                                                                \
    X(disentangle, FLOAT, min, "-2", NULL, "smallest coefficient of the grid")                  \
    X(disentangle, FLOAT, max, "2", NULL, "largest coefficient of the grid")                    \
    X(disentangle, INT, points, "15", "[2,1001]",                                             \
      "coefficients per axis, linspace(min, max, points)")                                      \
    X(disentangle, NAMES, pairs, "", NULL,                                                      \
      "task pairs \"a:b\" of data.tasks; [] = every pair; both measures are computed: pred "    \
      "(fraction of changed predictions, the paper's xi) and repr (symmetric KL of features)")   \
    X(disentangle, INT, limit, "0", "[0,inf)",                                                  \
      "at most this many test images per task; 0 = eval.limit (0 there too: all)")              \
    X(disentangle, INT, batch, "64", "[1,inf)",                                                 \
      "images per forward pass on one rank (each rank evaluates whole grid points alone)")

#define TD_CONFIG_BLAS(X)                                                                       \
    X(blas, INT, threads, "0", "[0,4096]",                                                      \
      "OpenBLAS threads per rank; 0 = cores per node / ranks per node (or TADIST_BLAS_THREADS)") \
    X(blas, INT, micro_batch, "16", "[1,4096]",                                                 \
      "images per pass of the encoder: every product's shape is fixed by it, ranks share a "    \
      "batch in whole micro-batches and a step's gradient is the exact sum of theirs, so "      \
      "results are the same bits for any rank and thread count (another value changes them "    \
      "in the last bits)")

#define TD_CONFIG_SWEEP(X)                                                                      \
    X(sweep, NAMES, axes, "", NULL,                                                             \
      "a study: each entry \"key = v1 | v2 | ...\" lists values of one fine-tuning or merging "  \
      "setting (finetune.*, merge.*, run.seed, data.augment, data.crop_scale; a value holds no " \
      "comma); every combination is one run of run.stages (the first axis varies slowest), "   \
      "kept in out_dir/name/runs/rNNN; [] = a single run")                                    \
    X(sweep, INT, ranks_per_run, "1", "[1,inf)",                                                \
      "ranks that work on one run together; the groups take runs from a shared queue")         \
    X(sweep, ENUM, heads, "frozen", "frozen|refit|finetuned",                                  \
      "head set whose merged accuracy the study compares (eval.heads must list it)")

/* ---- the typed configuration --------------------------------------------- */

#define TD_CFG_CTYPE_INT int
#define TD_CFG_CTYPE_FLOAT double
#define TD_CFG_CTYPE_BOOL int
#define TD_CFG_CTYPE_STR TdCfgStr
#define TD_CFG_CTYPE_ENUM TdCfgStr
#define TD_CFG_CTYPE_CHOICES TdCfgNames
#define TD_CFG_CTYPE_NAMES TdCfgNames
#define TD_CFG_CTYPE_NUM2 TdCfgNum2
#define TD_CFG_CTYPE_NUM3 TdCfgNum3
#define TD_CFG_CTYPE_NUMS TdCfgNums
#define TD_CFG_FIELD(sec, type, name, def, limits, doc) TD_CFG_CTYPE_##type name;

typedef struct { TD_CONFIG_RUN(TD_CFG_FIELD) } TdRunConfig;
typedef struct { TD_CONFIG_MODEL(TD_CFG_FIELD) } TdModelConfig;
typedef struct { TD_CONFIG_DATA(TD_CFG_FIELD) } TdDataConfig;
typedef struct { TD_CONFIG_HEADS(TD_CFG_FIELD) } TdHeadsConfig;
typedef struct { TD_CONFIG_PRETRAIN(TD_CFG_FIELD) } TdPretrainConfig;
typedef struct { TD_CONFIG_FINETUNE(TD_CFG_FIELD) } TdFinetuneConfig;
typedef struct { TD_CONFIG_MERGE_ALPHA(TD_CFG_FIELD) } TdMergeAlphaConfig;
typedef struct { TD_CONFIG_MERGE_TIES(TD_CFG_FIELD) } TdMergeTiesConfig;
typedef struct { TD_CONFIG_MERGE_DARE(TD_CFG_FIELD) } TdMergeDareConfig;
typedef struct { TD_CONFIG_MERGE_ADAMERGING(TD_CFG_FIELD) } TdMergeAdamergingConfig;
typedef struct { TD_CONFIG_MERGE_SURROGATE(TD_CFG_FIELD) } TdMergeSurrogateConfig;
typedef struct {
    TD_CONFIG_MERGE(TD_CFG_FIELD)
    TdMergeAlphaConfig alpha;
    TdMergeTiesConfig ties;
    TdMergeDareConfig dare;
    TdMergeAdamergingConfig adamerging;
    TdMergeSurrogateConfig surrogate;
} TdMergeConfig;
typedef struct { TD_CONFIG_EVAL(TD_CFG_FIELD) } TdEvalConfig;
typedef struct { TD_CONFIG_NEGATION(TD_CFG_FIELD) } TdNegationConfig;
typedef struct { TD_CONFIG_DISENTANGLE(TD_CFG_FIELD) } TdDisentangleConfig;
typedef struct { TD_CONFIG_BLAS(TD_CFG_FIELD) } TdBlasConfig;
typedef struct { TD_CONFIG_SWEEP(TD_CFG_FIELD) } TdSweepConfig;

typedef struct {
    TdRunConfig run;
    TdModelConfig model;
    TdDataConfig data;
    TdHeadsConfig heads;
    TdPretrainConfig pretrain;
    TdFinetuneConfig finetune;
    TdMergeConfig merge;
    TdEvalConfig eval;
    TdNegationConfig negation;
    TdDisentangleConfig disentangle;
    TdBlasConfig blas;
    TdSweepConfig sweep;
} TdConfig;

/* ---- loading ---------------------------------------------------------------- */

/* Collective over MPI_COMM_WORLD. Rank 0 applies the defaults, then the file
 * at path (NULL = defaults only), then each "key=value" of sets in order, and
 * validates; the status is agreed (runtime_agree) and every rank gets rank 0's
 * TdConfig. Only rank 0 reads path and sets (other ranks may pass NULL).
 * Errors name the file and line (or the --set argument) and the key. */
TdStatus config_load(const char *path, const CliList *sets, TdConfig *out);

/* Single-process: the defaults, then path and sets, validated (config_load's
 * rank-0 half; for tools that run on one rank). */
TdStatus config_load_local(const char *path, const CliList *sets, TdConfig *out);

/* Every effective value, as a libconfig file that loads back to the same
 * TdConfig. */
void config_print(const TdConfig *cfg, FILE *f);

/* The documented reference file (config/reference.cfg): every option at its
 * default with its description and limits beside it. */
void config_print_reference(FILE *f);

/* The effective value of one key in the text form above (strings unquoted,
 * lists as ["a", "b"] or [0.9, 1.0]). TD_ERR_ARG for an unknown key. */
TdStatus config_value_text(const TdConfig *cfg, const char *key, char *buf, size_t n);

/* Checks the schema itself: unique keys, sections contiguous, every default
 * valid. Single-process. */
TdStatus config_schema_check(void);

/* ---- sweeps ------------------------------------------------------------------------ */

enum { TD_SWEEP_MAX_AXES = 8, TD_SWEEP_MAX_RUNS = 100000 };

/* sweep.axes, parsed: axis a sets key[a] to one of val[a][0 .. nvals[a]-1]. */
typedef struct {
    int naxes;
    long runs; /* product of nvals; 1 when there are no axes */
    char key[TD_SWEEP_MAX_AXES][TD_CFG_NAME_MAX];
    int nvals[TD_SWEEP_MAX_AXES];
    char val[TD_SWEEP_MAX_AXES][TD_CFG_LIST_MAX][TD_CFG_NAME_MAX];
} TdSweep;

/* Parses cfg->sweep.axes (validated by config_load already). Single-process. */
TdStatus config_sweep_parse(const TdConfig *cfg, TdSweep *sw);
/* Index of each axis's value in run r (0 <= r < runs): the last axis varies fastest. */
void config_sweep_coords(const TdSweep *sw, long r, int coord[TD_SWEEP_MAX_AXES]);
/* The configuration of run r: base with each axis's value applied, sweep.axes
 * emptied, validated like a loaded file. Single-process. */
TdStatus config_sweep_derive(const TdConfig *base, const TdSweep *sw, long r, TdConfig *out);

/* List helpers for stages. */
int config_names_contains(const TdCfgNames *l, const char *name);

#endif
