#include <string.h>

#include "internal.h"

void rill_hist_init(rill_hist_t *h) {
  memset(h, 0, sizeof *h);
  h->min = UINT64_MAX;
}

void rill_hist_merge(rill_hist_t *dst, const rill_hist_t *src) {
  if (src->count == 0)
    return;
  for (uint32_t i = 0; i < RILL_HIST_BUCKETS; i++)
    dst->bucket[i] += src->bucket[i];
  dst->count += src->count;
  if (src->min < dst->min)
    dst->min = src->min;
  if (src->max > dst->max)
    dst->max = src->max;
  uint64_t s = dst->sum + src->sum;
  dst->sum = s < dst->sum ? UINT64_MAX : s;
}

uint64_t rill_hist_bucket_low(uint32_t i) {
  if (i < RILL_HIST_SUB)
    return i;
  uint32_t shift = (i >> RILL_HIST_SUB_BITS) - 1;
  return (uint64_t)(RILL_HIST_SUB + (i & (RILL_HIST_SUB - 1))) << shift;
}

uint64_t rill_hist_bucket_high(uint32_t i) {
  if (i < RILL_HIST_SUB)
    return i;
  uint32_t shift = (i >> RILL_HIST_SUB_BITS) - 1;
  return rill_hist_bucket_low(i) + (((uint64_t)1 << shift) - 1);
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
