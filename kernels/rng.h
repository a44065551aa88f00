/* rng: small, fast, reproducible random numbers (xoshiro256** seeded through
 * splitmix64). A stream is a pure function of its seed, so results do not
 * depend on rank counts when each work item derives its own seed. */
#ifndef TD_RNG_H
#define TD_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} TdRng;

void rng_seed(TdRng *r, uint64_t seed);
/* Derives an independent seed from a base seed and up to two indices. */
uint64_t rng_derive(uint64_t seed, uint64_t a, uint64_t b);
uint64_t rng_next(TdRng *r);
/* Uniform in [0, 1). */
double rng_uniform(TdRng *r);
/* Uniform integer in [0, n). */
uint64_t rng_below(TdRng *r, uint64_t n);
/* Standard normal. */
double rng_normal(TdRng *r);
/* Shuffles a (n) in place: Fisher-Yates from the last element down, element
 * i swapped with rng_below(r, i + 1). */
void rng_shuffle(TdRng *r, int64_t *a, int64_t n);

#endif
