#include "trainable.h"

#include <fnmatch.h>
#include <string.h>

typedef struct {
    const char *name;
    unsigned fields; /* bit BLK_* set: that block tensor is in the set; ~0u: every tensor */
} NamedSet;

#define BIT(f) (1u << (f))
static const NamedSet k_sets[] = {
    {"full", ~0u},
    {"attn", BIT(BLK_QKV_W) | BIT(BLK_OUT_W)},
    {"attn_bias", BIT(BLK_QKV_W) | BIT(BLK_OUT_W) | BIT(BLK_QKV_B) | BIT(BLK_OUT_B)},
    {"mlp", BIT(BLK_FC_W) | BIT(BLK_PROJ_W)},
    {"linear", BIT(BLK_QKV_W) | BIT(BLK_OUT_W) | BIT(BLK_FC_W) | BIT(BLK_PROJ_W)},
};

const char *trainable_sets(void) { return "full, attn, attn_bias, mlp, linear"; }

static int add_named(const ParamTable *t, const NamedSet *set, unsigned char *mask)
{
    int hits = 0;
    for (int i = 0; i < t->count; i++) {
        int in = set->fields == ~0u;
        if (!in && t->info[i].block >= 0)
            in = (set->fields >> ((i - PARAM_BLOCKS_BEGIN) % PARAM_PER_BLOCK)) & 1u;
        if (in) {
            mask[i] = 1;
            hits++;
        }
    }
    return hits;
}

static int add_glob(const ParamTable *t, const char *pattern, unsigned char *mask)
{
    int hits = 0;
    for (int i = 0; i < t->count; i++)
        if (fnmatch(pattern, t->info[i].name, 0) == 0) {
            mask[i] = 1;
            hits++;
        }
    return hits;
}

TdStatus trainable_mask(const ParamTable *t, const char *spec, unsigned char *mask)
{
    memset(mask, 0, (size_t)t->count);
    const char *p = spec ? spec : "";
    int items = 0;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ",");
        while (len && p[len - 1] == ' ')
            len--;
        if (!len)
            break;
        char item[256];
        if (len >= sizeof item)
            return td_fail(TD_ERR_CONFIG, "trainable: item '%.40s...' is too long", p);
        memcpy(item, p, len);
        item[len] = '\0';
        p += len;
        items++;
        const NamedSet *set = NULL;
        for (size_t k = 0; k < sizeof k_sets / sizeof k_sets[0]; k++)
            if (strcmp(item, k_sets[k].name) == 0)
                set = &k_sets[k];
        int hits = set ? add_named(t, set, mask) : add_glob(t, item, mask);
        if (hits == 0)
            return td_fail(TD_ERR_CONFIG,
                           "trainable: '%s' is neither a known set (%s) nor a pattern matching "
                           "any tensor name (e.g. transformer.resblocks.*.attn.in_proj_weight)",
                           item, trainable_sets());
    }
    if (!items)
        return td_fail(TD_ERR_CONFIG, "trainable: empty specification (use one of %s, or "
                                      "tensor-name patterns)", trainable_sets());
    return TD_OK;
}

size_t trainable_count(const ParamTable *t, const unsigned char *mask)
{
    size_t n = 0;
    for (int i = 0; i < t->count; i++)
        if (mask[i])
            n += t->info[i].numel;
    return n;
}
