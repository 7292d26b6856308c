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

/* Formats mem as a ring of variable-length records with rec_hdr-byte record
 * headers (mpsc, bcast): checks the memory and capacity, writes the header,
 * zeroes the data. */
int rill__ring_init_records(const char *kind, uint32_t magic, uint32_t rec_hdr, void *mem,
                            size_t bytes, uint64_t capacity);

/* The memory a _create makes: need bytes, cache-line aligned: 0 with
 * *mem, or RILL_ENOMEM. */
int rill__ring_alloc(const char *kind, size_t need, void **mem);

/* A records ring's memory for _create (mpsc, bcast): checks the capacity,
 * allocates and formats it: 0 with *mem, or RILL_EINVAL / RILL_ENOMEM. */
int rill__ring_create_records(const char *kind, uint32_t magic, uint32_t rec_hdr, uint64_t capacity,
                              void **mem);

/* Reads the header of a records ring and checks its geometry is one that
 * rill__ring_init_records() writes: RILL_EVERSION or RILL_ECORRUPT. */
int rill__ring_read_records_hdr(const char *kind, uint32_t magic, uint32_t rec_hdr, const void *mem,
                                size_t bytes, struct rill__ring_hdr *h);

#endif
