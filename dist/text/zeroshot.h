/* zeroshot: CLIP zero-shot classification heads from class names and prompt
 * templates, through the text tower (kernels/text.h) and the CLIP tokenizer.
 *
 *   head[c] = normalise( mean over templates t of normalise( text(t % class_c) ) )
 *
 * as in Ilharco et al.'s task-vectors code. Templates are text files, one
 * template per line with `{}` where the class name goes (blank lines and lines
 * starting with '#' are skipped); config/templates/<task>.txt ships those of
 * Cars, DTD, EuroSAT, GTSRB, MNIST, RESISC45, SUN397 and SVHN.
 *
 * Heads file written by `tadist zeroshot` (the layout heads.h reads for
 * heads.source = "file"): /<task> float32 [C, E] per task, rows unit-norm in
 * class order; root attributes format = "tadist-heads-1", source = "zeroshot",
 * logit_scale (double, 100), base_checksum (the model file's vision checksum).
 * Single-process; `tadist zeroshot` (commands/cmd_zeroshot.c) writes such files. */
#ifndef TD_ZEROSHOT_H
#define TD_ZEROSHOT_H

#include <stddef.h>

#include "clip_tokenizer.h"
#include "status.h"
#include "text_io.h"

typedef struct {
    int count;
    char **items; /* each with one "{}" */
} ZsTemplates;

/* name_or_path: an existing file, or a shipped set's name (cars, dtd, ...)
 * looked up in $TADIST_TEMPLATES, <program>/../config/templates,
 * <program>/../share/tadist/templates and ./config/templates. */
TdStatus zeroshot_templates_load(const char *name_or_path, ZsTemplates *t);
void zeroshot_templates_free(ZsTemplates *t);

/* "{}" of tmpl replaced by cls; malloc'ed. */
char *zeroshot_format(const char *tmpl, const char *cls);

/* heads (C, E) for classes[C] with templates, through text model m. */
TdStatus zeroshot_heads(const TextModel *m, const ClipTokenizer *tok, const char *const *classes,
                        int C, const ZsTemplates *templates, float *heads);

#endif
