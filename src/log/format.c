/*
 * The log's on-disk bytes, written and checked field by field in little-
 * endian order (docs/FORMATS.md). File headers carry a CRC32C; a record
 * carries the low 32 bits of an XXH3-64 of its header fields and payload,
 * which runs at memory speed on large records where the crc32 instruction,
 * one dependent 8-byte step every 3 cycles, would not.
 */
#include <string.h>

/* XXH3 compiled in here rather than called in libxxhash: the same
 * function and bytes, but a record's check is on every append, and the
 * call and the library's dispatch by length cost a fifth of the hash of a
 * small record. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/internal.h"
#include "log/format.h"

/* magic, version, header size: the first 8 bytes of every file header. */
static void put_head(uint8_t *h, uint32_t magic) {
  memset(h, 0, LOG_HDR);
  rill__put32(h, magic);
  rill__put16(h + 4, LOG_VERSION);
  rill__put16(h + 6, LOG_HDR);
}

static int check_head(const uint8_t *h, uint32_t magic, const char *what, const char *path) {
  if (rill__get32(h) != magic)
    return rill__err(RILL_EVERSION, "log %s: %s has no %s magic", path, what,
                     magic == LOG_SEG_MAGIC   ? "RLSG"
                     : magic == LOG_IDX_MAGIC ? "RLIX"
                                              : "RLMF");
  if (rill__get16(h + 4) != LOG_VERSION || rill__get16(h + 6) != LOG_HDR)
    return rill__err(RILL_EVERSION,
                     "log %s: %s is version %u (header %u bytes); this build reads 1", path, what,
                     rill__get16(h + 4), rill__get16(h + 6));
  return 0;
}

/* ---- segment header ------------------------------------------------------ */

void log_seg_hdr_write(uint8_t *h, uint64_t base, uint64_t seg_bytes, uint64_t created) {
  put_head(h, LOG_SEG_MAGIC);
  rill__put64(h + 8, base);
  rill__put64(h + 16, seg_bytes);
  rill__put64(h + 24, created);
  rill__put32(h + 32, rill_crc32c(0, h, 32));
}

int log_seg_hdr_check(const uint8_t *h, uint64_t base, uint64_t seg_bytes, const char *path) {
  int rc = check_head(h, LOG_SEG_MAGIC, "a segment", path);
  if (rc)
    return rc;
  if (rill__get32(h + 32) != rill_crc32c(0, h, 32))
    return rill__err(RILL_ECORRUPT, "log %s: segment %llu: header checksum mismatch", path,
                     (unsigned long long)base);
  if (rill__get64(h + 8) != base || rill__get64(h + 16) != seg_bytes)
    return rill__err(RILL_ECORRUPT, "log %s: segment %llu says base %llu, size %llu", path,
                     (unsigned long long)base, (unsigned long long)rill__get64(h + 8),
                     (unsigned long long)rill__get64(h + 16));
  return 0;
}

/* ---- index header and checkpoint ------------------------------------------- */

void log_idx_hdr_write(uint8_t *h, uint64_t base) {
  put_head(h, LOG_IDX_MAGIC);
  rill__put64(h + 8, base);
  rill__put32(h + 16, rill_crc32c(0, h, 16));
}

int log_idx_hdr_check(const uint8_t *h, uint64_t base, const char *path) {
  int rc = check_head(h, LOG_IDX_MAGIC, "an index", path);
  if (rc)
    return rc;
  if (rill__get32(h + 16) != rill_crc32c(0, h, 16) || rill__get64(h + 8) != base)
    return rill__err(RILL_ECORRUPT, "log %s: index of segment %llu: header damaged", path,
                     (unsigned long long)base);
  return 0;
}

static uint32_t ckpt_crc(const uint8_t *h) {
  return rill_crc32c(rill_crc32c(0, h + 8, 8), h + 24, 16);
}

void log_idx_checkpoint(uint8_t *h, uint64_t base, uint64_t count, uint64_t end) {
  (void)base; /* covered by the crc through bytes 8..16 */
  /* The crc goes last and covers both: a checkpoint torn by a crash
   * between these stores fails its crc and is ignored. */
  rill__put64(h + 24, count);
  rill__put64(h + 32, end);
  rill__put32(h + 40, ckpt_crc(h));
}

int log_idx_checkpoint_read(const uint8_t *h, uint64_t base, uint64_t *count, uint64_t *end) {
  if (rill__get64(h + 8) != base || rill__get32(h + 40) != ckpt_crc(h))
    return -1;
  *count = rill__get64(h + 24);
  *end = rill__get64(h + 32);
  return 0;
}

/* ---- manifest ---------------------------------------------------------------- */

void log_manifest_encode(uint8_t *m, uint64_t seg_bytes, uint64_t first, uint64_t created) {
  put_head(m, LOG_MF_MAGIC);
  rill__put64(m + 8, seg_bytes);
  rill__put64(m + 16, first);
  rill__put64(m + 24, created);
  rill__put32(m + 32, rill_crc32c(0, m, 32));
}

int log_manifest_decode(const uint8_t *m, size_t n, uint64_t *seg_bytes, uint64_t *first,
                        const char *path) {
  if (n < 8)
    return rill__err(RILL_EVERSION, "log %s: MANIFEST is %zu bytes", path, n);
  int rc = check_head(m, LOG_MF_MAGIC, "MANIFEST", path);
  if (rc)
    return rc;
  if (n != LOG_HDR || rill__get32(m + 32) != rill_crc32c(0, m, 32))
    return rill__err(RILL_ECORRUPT, "log %s: MANIFEST damaged (%zu bytes, checksum)", path, n);
  uint64_t sb = rill__get64(m + 8);
  if (sb % 4096 || sb < (64u << 10) || sb > ((uint64_t)2 << 30))
    return rill__err(RILL_ECORRUPT, "log %s: MANIFEST names segments of %llu bytes", path,
                     (unsigned long long)sb);
  *seg_bytes = sb;
  *first = rill__get64(m + 16);
  return 0;
}

/* ---- records ------------------------------------------------------------------- */

static uint32_t rec_check(const uint8_t *rec, uint32_t len) {
  return (uint32_t)XXH3_64bits_withSeed(rec + 8, LOG_REC_HDR - 8 + (size_t)len, len);
}

void log_rec_seal(uint8_t *rec, uint32_t len, uint64_t seq, uint64_t ts) {
  uint32_t pad = (uint32_t)(RILL__ALIGN_UP((uint64_t)len, 8u) - len);
  if (pad)
    memset(rec + LOG_REC_HDR + len, 0, pad);
  rill__put32(rec, len);
  rill__put64(rec + 8, seq);
  rill__put64(rec + 16, ts);
  rill__put32(rec + 24, 0);
  rill__put32(rec + 28, LOG_REC_MARK);
  rill__put32(rec + 4, rec_check(rec, len));
}

int log_rec_check(const uint8_t *seg, uint64_t seg_bytes, uint64_t off, uint64_t seq, bool verify,
                  uint32_t *len) {
  if (off < LOG_HDR || off % 8 || off > seg_bytes || seg_bytes - off < LOG_REC_HDR)
    return -1;
  const uint8_t *rec = seg + off;
  if (rill__get32(rec + 28) != LOG_REC_MARK || rill__get64(rec + 8) != seq ||
      rill__get32(rec + 24) != 0)
    return -1;
  uint32_t l = rill__get32(rec);
  if ((uint64_t)l > seg_bytes - off - LOG_REC_HDR)
    return -1;
  if (verify && rill__get32(rec + 4) != rec_check(rec, l))
    return -1;
  *len = l;
  return 0;
}
