/*
 * What the three ring kinds share: the 64-byte header, its checks, and the
 * 8-byte-word access the record rings use. Private to src/ring/.
 */
#ifndef RILL_RING_LAYOUT_H
#define RILL_RING_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill/ring.h"

#define RILL__RING_ALIGN8(x) (((x) + 7u) & ~(uint64_t)7u)

/* NULL or misaligned memory, or too few bytes for the header: RILL_EINVAL. */
int rill__ring_check_mem(const char *kind, const void *mem, size_t bytes);

/* Writes a header for the given geometry; zeroes the counter lines. */
void rill__ring_format(void *mem, uint32_t magic, uint64_t capacity, uint32_t item_size,
                       uint64_t total);

/* Copies the header out of mem (which another process may share) and
 * checks what every kind checks: magic and version (RILL_EVERSION), the
 * data offset, the flags and that total fits in bytes (RILL_ECORRUPT).
 * The caller checks the geometry itself against its copy in *h. */
int rill__ring_read_hdr(const char *kind, const void *mem, size_t bytes, uint32_t magic,
                        struct rill__ring_hdr *h);

/* Bytes of a record ring (MPSC, bcast) of capacity data bytes, or 0. */
size_t rill__ring_record_bytes(uint64_t capacity);

#endif
