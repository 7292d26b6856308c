#include <string.h>

#include "internal.h"

void rill_hist_init(rill_hist_t *h) {
  memset(h, 0, sizeof *h);
  h->min = UINT64_MAX;
}

#define LD(p) __atomic_load_n(p, __ATOMIC_RELAXED)

void rill_hist_merge(rill_hist_t *dst, const rill_hist_t *src) {
  if (LD(&src->count) == 0)
    return;
  /* With the writer running, the copy's count and buckets may disagree
   * by the values recorded meanwhile: a renderer that needs them to agree
   * sums the buckets. */
  for (uint32_t i = 0; i < RILL_HIST_BUCKETS; i++)
    dst->bucket[i] += LD(&src->bucket[i]);
  dst->count += LD(&src->count);
  uint64_t mn = LD(&src->min), mx = LD(&src->max);
  if (mn < dst->min)
    dst->min = mn;
  if (mx > dst->max)
    dst->max = mx;
  uint64_t s = dst->sum + LD(&src->sum);
  dst->sum = s < dst->sum ? UINT64_MAX : s;
}

/* The lowest value of bucket i as if it held [low, high): what
 * rill_hist_index classifies v - 1 by. */
static uint64_t low_of(uint32_t i) {
  if (i < RILL_HIST_SUB)
    return i;
  uint32_t shift = (i >> RILL_HIST_SUB_BITS) - 1;
  return (uint64_t)(RILL_HIST_SUB + (i & (RILL_HIST_SUB - 1))) << shift;
}

uint64_t rill_hist_bucket_low(uint32_t i) { return i == 0 ? 0 : low_of(i) + 1; }

uint64_t rill_hist_bucket_high(uint32_t i) {
  return i + 1 >= RILL_HIST_BUCKETS ? UINT64_MAX : low_of(i + 1);
}

uint64_t rill_hist_quantile(const rill_hist_t *h, double q) {
  if (h->count == 0)
    return 0;
  if (!(q > 0.0)) /* also catches NaN */
    return h->min;
  if (q >= 1.0)
    return h->max;
  /* The rank of the value asked for, 1-based: the smallest value with at
   * least q of the samples at or below it. */
  uint64_t rank = (uint64_t)(q * (double)h->count);
  if ((double)rank < q * (double)h->count)
    rank++;
  if (rank == 0)
    rank = 1;
  uint64_t seen = 0;
  for (uint32_t i = 0; i < RILL_HIST_BUCKETS; i++) {
    seen += h->bucket[i];
    if (seen >= rank) {
      uint64_t v = rill_hist_bucket_high(i);
      if (v > h->max)
        v = h->max;
      if (v < h->min)
        v = h->min;
      return v;
    }
  }
  return h->max;
}

double rill_hist_mean(const rill_hist_t *h) {
  return h->count ? (double)h->sum / (double)h->count : 0.0;
}
