/*
 * The log's on-disk bytes (docs/FORMATS.md, "Log"): encoders and the
 * checks that decide whether bytes read back can be trusted. Kept apart
 * from the rest of src/log so the fuzz targets drive exactly what open
 * and read use.
 */
#ifndef RILL_LOG_FORMAT_H
#define RILL_LOG_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOG_HDR     64u /* segment, index and manifest headers */
#define LOG_REC_HDR 32u /* record header */

#define LOG_SEG_MAGIC 0x47534c52u /* "RLSG" */
#define LOG_IDX_MAGIC 0x58494c52u /* "RLIX" */
#define LOG_MF_MAGIC  0x464d4c52u /* "RLMF" */
#define LOG_REC_MARK  0x31524c52u /* "RLR1" */
#define LOG_VERSION   1u

void log_seg_hdr_write(uint8_t *h, uint64_t base, uint64_t seg_bytes, uint64_t created);
/* 0, RILL_EVERSION (magic, version) or RILL_ECORRUPT (crc, base, size). */
int log_seg_hdr_check(const uint8_t *h, uint64_t base, uint64_t seg_bytes, const char *path);

void log_idx_hdr_write(uint8_t *h, uint64_t base);
int log_idx_hdr_check(const uint8_t *h, uint64_t base, const char *path);
void log_idx_checkpoint(uint8_t *h, uint64_t base, uint64_t count, uint64_t end);
/* 0 with *count and *end when the checkpoint's crc holds, else -1. */
int log_idx_checkpoint_read(const uint8_t *h, uint64_t base, uint64_t *count, uint64_t *end);

void log_manifest_encode(uint8_t *m, uint64_t seg_bytes, uint64_t first, uint64_t created);
/* 0, RILL_EVERSION or RILL_ECORRUPT for the n bytes of a MANIFEST. */
int log_manifest_decode(const uint8_t *m, size_t n, uint64_t *seg_bytes, uint64_t *first,
                        const char *path);

/* Writes the header of the record at rec, whose payload of len bytes is
 * in place after it, with its check, and zeroes the padding. */
void log_rec_seal(uint8_t *rec, uint32_t len, uint64_t seq, uint64_t ts);

/* Whether a whole record of sequence seq starts at offset off of a
 * segment of seg_bytes: marker, seq, flags, length within the segment,
 * and (with verify) its check. 0 with *len, or -1. Reads nothing outside
 * [seg, seg + seg_bytes). */
int log_rec_check(const uint8_t *seg, uint64_t seg_bytes, uint64_t off, uint64_t seq, bool verify,
                  uint32_t *len);

#endif
