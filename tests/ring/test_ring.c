#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rill/mem.h"
#include "rill/ring.h"

/* Counter offsets, as docs/FORMATS.md gives them. */
#define PROD(mem, i) ((uint64_t *)((uint8_t *)(mem) + RILL_RING_PROD_OFF))[i]
#define CONS(mem, i) ((uint64_t *)((uint8_t *)(mem) + RILL_RING_CONS_OFF))[i]

static void *amem(size_t bytes) {
  void *m = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
  cr_assert_not_null(m);
  memset(m, 0xa5, bytes);
  return m;
}

/* ======================================================================== */
/* SPSC                                                                      */
/* ======================================================================== */

static rill_ring_spsc_t *spsc(void **mem, uint64_t slots, uint32_t size) {
  size_t n = rill_ring_spsc_bytes(slots, size);
  cr_assert_gt(n, 0);
  *mem = amem(n);
  rill_ring_spsc_t *r = NULL;
  int rc = rill_ring_spsc_format(&r, *mem, n, slots, size);
  cr_assert_eq(rc, 0, "init: %s (%s)", rill_strerror(rc), rill_errmsg());
  return r;
}

Test(spsc, rejects_bad_geometry) {
  cr_expect_eq(rill_ring_spsc_bytes(0, 8), 0);
  cr_expect_eq(rill_ring_spsc_bytes(1, 8), 0);
  cr_expect_eq(rill_ring_spsc_bytes(3, 8), 0);
  cr_expect_eq(rill_ring_spsc_bytes(((uint64_t)1 << 33), 8), 0);
  cr_expect_eq(rill_ring_spsc_bytes(4, 0), 0);
  cr_expect_eq(rill_ring_spsc_bytes(4, 4), 0);
  cr_expect_eq(rill_ring_spsc_bytes(4, 12), 0);
  cr_expect_eq(rill_ring_spsc_bytes(4, 65536 + 8), 0);
  cr_expect_eq(rill_ring_spsc_bytes(4, 8), RILL_RING_DATA_OFF + 32);
  uint8_t *m = amem(4096);
  rill_ring_spsc_t *r = (void *)1;
  cr_expect_eq(rill_ring_spsc_format(&r, m, 4096, 3, 8), RILL_EINVAL);
  cr_expect_null(r);
  cr_expect_eq(rill_ring_spsc_format(&r, m + 8, 4000, 4, 8), RILL_EINVAL, "misaligned");
  cr_expect_eq(rill_ring_spsc_format(&r, NULL, 4096, 4, 8), RILL_EINVAL);
  cr_expect_eq(rill_ring_spsc_format(&r, m, RILL_RING_DATA_OFF + 31, 4, 8), RILL_EINVAL, "short");
  cr_expect_eq(rill_ring_spsc_format(NULL, m, 4096, 4, 8), RILL_EINVAL);
  cr_expect_eq(rill_ring_spsc_create(&r, 6, 8), RILL_EINVAL);
  cr_expect_neq(rill_errmsg()[0], '\0');
  free(m);
}

Test(spsc, push_pop_fifo_full_empty) {
  uint32_t sizes[] = {8, 16, 24, 64, 200};
  for (size_t z = 0; z < sizeof sizes / sizeof *sizes; z++) {
    uint32_t sz = sizes[z];
    rill_ring_spsc_t *r = NULL;
    cr_assert_eq(rill_ring_spsc_create(&r, 8, sz), 0);
    cr_expect_eq(rill_ring_spsc_capacity(r), 8);
    cr_expect_eq(rill_ring_spsc_slot_size(r), sz);
    uint8_t item[256], got[256];
    cr_expect_eq(rill_ring_spsc_pop(r, got), RILL_EAGAIN, "empty at start");
    uint64_t next_in = 0, next_out = 0;
    /* Many rounds of fill-to-full then drain-to-empty, shifting the start
     * so every slot is the wrap point once. */
    for (int round = 0; round < 20; round++) {
      int fill = 1 + round % 8;
      for (int i = 0; i < fill; i++) {
        memset(item, (int)(next_in & 0xff), sz);
        memcpy(item, &next_in, 8);
        cr_assert_eq(rill_ring_spsc_push(r, item), 0);
        next_in++;
      }
      if (fill == 8) {
        cr_expect_eq(rill_ring_spsc_push(r, item), RILL_EAGAIN, "full");
        cr_expect_eq(rill_ring_spsc_size(r), 8);
      }
      for (int i = 0; i < fill; i++) {
        cr_assert_eq(rill_ring_spsc_pop(r, got), 0);
        uint64_t v;
        memcpy(&v, got, 8);
        cr_assert_eq(v, next_out, "size %u: got %llu want %llu", sz, (unsigned long long)v,
                     (unsigned long long)next_out);
        for (uint32_t b = 8; b < sz; b++)
          cr_assert_eq(got[b], next_out & 0xff);
        next_out++;
      }
      cr_expect_eq(rill_ring_spsc_pop(r, got), RILL_EAGAIN);
      cr_expect_eq(rill_ring_spsc_size(r), 0);
    }
    rill_ring_spsc_destroy(r);
  }
}

Test(spsc, u64_paths) {
  rill_ring_spsc_t *r = NULL, *r16 = NULL;
  cr_assert_eq(rill_ring_spsc_create(&r, 4, 8), 0);
  cr_assert_eq(rill_ring_spsc_create(&r16, 4, 16), 0);
  uint64_t v;
  cr_expect_eq(rill_ring_spsc_push_u64(r16, 1), RILL_EINVAL);
  cr_expect_eq(rill_ring_spsc_pop_u64(r16, &v), RILL_EINVAL);
  for (uint64_t i = 0; i < 1000; i++) {
    cr_assert_eq(rill_ring_spsc_push_u64(r, i * 3), 0);
    if (i % 4 == 3) {
      cr_expect_eq(rill_ring_spsc_push_u64(r, 0), RILL_EAGAIN);
      for (uint64_t k = i - 3; k <= i; k++) {
        cr_assert_eq(rill_ring_spsc_pop_u64(r, &v), 0);
        cr_assert_eq(v, k * 3);
      }
      cr_expect_eq(rill_ring_spsc_pop_u64(r, &v), RILL_EAGAIN);
    }
  }
  /* push and pop_u64 (and the reverse) agree on the bytes. */
  uint64_t x = 0x1122334455667788ull;
  cr_assert_eq(rill_ring_spsc_push(r, &x), 0);
  cr_assert_eq(rill_ring_spsc_pop_u64(r, &v), 0);
  cr_expect_eq(v, x);
  rill_ring_spsc_destroy(r);
  rill_ring_spsc_destroy(r16);
}

Test(spsc, batches_across_the_wrap) {
  rill_ring_spsc_t *r = NULL;
  cr_assert_eq(rill_ring_spsc_create(&r, 16, 8), 0);
  uint64_t in[40], out[40], next_in = 0, next_out = 0;
  for (int round = 0; round < 200; round++) {
    size_t want = (size_t)(round * 7) % 23;
    for (size_t i = 0; i < want; i++)
      in[i] = next_in + i;
    uint64_t before = rill_ring_spsc_size(r);
    size_t k = rill_ring_spsc_push_n(r, in, want);
    size_t room = 16 - before;
    cr_assert_eq(k, want < room ? want : room, "push_n moved %zu of %zu, room %zu", k, want, room);
    next_in += k;
    size_t take = (size_t)(round * 5) % 19;
    size_t got = rill_ring_spsc_pop_n(r, out, take);
    uint64_t have = before + k;
    cr_assert_eq(got, take < have ? take : have);
    for (size_t i = 0; i < got; i++)
      cr_assert_eq(out[i], next_out + i);
    next_out += got;
  }
  cr_expect_eq(rill_ring_spsc_push_n(r, in, 0), 0);
  rill_ring_spsc_destroy(r);
}

Test(spsc, reserve_commit_peek_release_across_the_wrap) {
  rill_ring_spsc_t *r = NULL;
  cr_assert_eq(rill_ring_spsc_create(&r, 8, 16), 0);
  size_t got;
  uint64_t next_in = 0, next_out = 0;
  /* Move the indexes to 5 so that a reservation meets the wrap. */
  for (int i = 0; i < 5; i++) {
    uint64_t item[2] = {next_in++, 0};
    cr_assert_eq(rill_ring_spsc_push(r, item), 0);
    cr_assert_eq(rill_ring_spsc_pop(r, item), 0);
    cr_assert_eq(item[0], next_out++);
  }
  uint64_t(*p)[2] = rill_ring_spsc_reserve(r, 6, &got);
  cr_assert_not_null(p);
  cr_expect_eq(got, 3, "only the 3 slots before the end are contiguous");
  for (size_t i = 0; i < got; i++)
    p[i][0] = next_in++;
  cr_expect_eq(rill_ring_spsc_size(r), 0, "invisible before commit");
  cr_expect_eq(rill_ring_spsc_commit(r, 9), RILL_EINVAL, "more than is free");
  cr_assert_eq(rill_ring_spsc_commit(r, got), 0);
  p = rill_ring_spsc_reserve(r, 6, &got);
  cr_expect_eq(got, 5, "the rest, from slot 0");
  for (size_t i = 0; i < got; i++)
    p[i][0] = next_in++;
  cr_assert_eq(rill_ring_spsc_commit(r, got), 0);
  cr_expect_null(rill_ring_spsc_reserve(r, 1, &got), "full");
  cr_expect_eq(got, 0);
  /* Consumer: peek 8 gets the 3 before the wrap, then the 5 after. */
  const uint64_t(*q)[2] = rill_ring_spsc_peek(r, 8, &got);
  cr_assert_eq(got, 3);
  for (size_t i = 0; i < got; i++)
    cr_assert_eq(q[i][0], next_out++);
  cr_expect_eq(rill_ring_spsc_release(r, 9), RILL_EINVAL, "more than is filled");
  cr_assert_eq(rill_ring_spsc_release(r, 2), 0);
  next_out--; /* one of the three stays */
  q = rill_ring_spsc_peek(r, 8, &got);
  cr_assert_eq(got, 1);
  cr_assert_eq(q[0][0], next_out++);
  cr_assert_eq(rill_ring_spsc_release(r, 1), 0);
  q = rill_ring_spsc_peek(r, 8, &got);
  cr_assert_eq(got, 5);
  for (size_t i = 0; i < got; i++)
    cr_assert_eq(q[i][0], next_out++);
  cr_assert_eq(rill_ring_spsc_release(r, 5), 0);
  cr_expect_null(rill_ring_spsc_peek(r, 1, &got));
  cr_expect_eq(rill_ring_spsc_release(r, 1), RILL_EINVAL, "nothing filled");
  rill_ring_spsc_destroy(r);
}

Test(spsc, second_handle_attaches) {
  void *m;
  rill_ring_spsc_t *a = spsc(&m, 64, 8), *b = NULL;
  for (uint64_t i = 0; i < 10; i++)
    cr_assert_eq(rill_ring_spsc_push_u64(a, i), 0);
  int rc = rill_ring_spsc_attach(&b, m, rill_ring_spsc_bytes(64, 8));
  cr_assert_eq(rc, 0, "%s", rill_errmsg());
  cr_expect_eq(rill_ring_spsc_capacity(b), 64);
  cr_expect_eq(rill_ring_spsc_size(b), 10);
  uint64_t v;
  for (uint64_t i = 0; i < 10; i++) {
    cr_assert_eq(rill_ring_spsc_pop_u64(b, &v), 0);
    cr_assert_eq(v, i);
  }
  cr_expect_eq(rill_ring_spsc_pop_u64(a, &v), RILL_EAGAIN);
  rill_ring_spsc_destroy(b);
  rill_ring_spsc_destroy(a);
  free(m);
}

/* Mutates one header or counter field (a 1..8-byte value at off) and
 * expects attach to fail with want. */
typedef int (*attach_fn)(void **out, void *mem, size_t bytes);

static void expect_attach(attach_fn at, void *m, size_t bytes, size_t off, size_t width,
                          uint64_t val, int want, const char *what) {
  uint8_t save[8];
  memcpy(save, (uint8_t *)m + off, width);
  memcpy((uint8_t *)m + off, &val, width);
  void *h = (void *)1;
  rill_errmsg_clear();
  int rc = at(&h, m, bytes);
  cr_expect_eq(rc, want, "%s: got %d (%s), want %d", what, rc, rill_errmsg(), want);
  cr_expect_null(h, "%s", what);
  memcpy((uint8_t *)m + off, save, width);
}

static int at_spsc(void **o, void *m, size_t n) {
  return rill_ring_spsc_attach((rill_ring_spsc_t **)o, m, n);
}
static int at_mpsc(void **o, void *m, size_t n) {
  return rill_ring_mpsc_attach((rill_ring_mpsc_t **)o, m, n);
}
static int at_bcast(void **o, void *m, size_t n) {
  return rill_ring_bcast_attach((rill_ring_bcast_t **)o, m, n);
}

/* What every kind's header rejects. */
static void header_mutations(attach_fn at, void *m, size_t n) {
  expect_attach(at, m, n, 0, 4, 0x12345678, RILL_EVERSION, "magic");
  expect_attach(at, m, n, 0, 4,
                RILL_RING_SPSC_MAGIC ^ RILL_RING_MPSC_MAGIC ^ RILL_RING_BCAST_MAGIC ^
                    *(uint32_t *)m ^ 0,
                RILL_EVERSION, "another kind's magic");
  expect_attach(at, m, n, 4, 2, 2, RILL_EVERSION, "version 2");
  expect_attach(at, m, n, 4, 2, 0, RILL_EVERSION, "version 0");
  expect_attach(at, m, n, 6, 2, 256, RILL_ECORRUPT, "data offset");
  expect_attach(at, m, n, 8, 8, 0, RILL_ECORRUPT, "capacity 0");
  expect_attach(at, m, n, 8, 8, *(uint64_t *)((uint8_t *)m + 8) * 2, RILL_ECORRUPT,
                "capacity doubled");
  expect_attach(at, m, n, 8, 8, *(uint64_t *)((uint8_t *)m + 8) / 2, RILL_ECORRUPT,
                "capacity halved");
  expect_attach(at, m, n, 8, 8, UINT64_MAX, RILL_ECORRUPT, "capacity max");
  expect_attach(at, m, n, 16, 4, 12, RILL_ECORRUPT, "item size");
  expect_attach(at, m, n, 16, 4, UINT32_MAX, RILL_ECORRUPT, "item size max");
  expect_attach(at, m, n, 20, 4, 1, RILL_ECORRUPT, "flags");
  expect_attach(at, m, n, 24, 8, n + 64, RILL_ECORRUPT, "total beyond bytes");
  expect_attach(at, m, n, 24, 8, n - 8, RILL_ECORRUPT, "total short");
  void *h = (void *)1;
  cr_expect_eq(at(&h, m, n - 8), RILL_ECORRUPT, "bytes below the layout");
  cr_expect_eq(at(&h, m, 100), RILL_EINVAL, "bytes below the header");
  cr_expect_eq(at(&h, (uint8_t *)m + 8, n - 8), RILL_EINVAL, "misaligned");
  cr_expect_eq(at(&h, NULL, n), RILL_EINVAL, "NULL");
  /* Every single byte of the header flipped: an error or, for reserved
   * bytes, a handle; never a crash. */
  for (size_t b = 0; b < 64; b++) {
    ((uint8_t *)m)[b] ^= 0xff;
    int rc = at(&h, m, n);
    if (b < 32)
      cr_expect_neq(rc, 0, "byte %zu flipped was accepted", b);
    else
      cr_expect_eq(rc, 0, "reserved byte %zu is ignored", b);
    if (rc == 0 && at == at_spsc)
      rill_ring_spsc_destroy(h);
    else if (rc == 0 && at == at_mpsc)
      rill_ring_mpsc_destroy(h);
    else if (rc == 0)
      rill_ring_bcast_destroy(h);
    ((uint8_t *)m)[b] ^= 0xff;
  }
}

Test(spsc, attach_rejects_corrupt_and_foreign_memory) {
  void *m;
  size_t n = rill_ring_spsc_bytes(64, 16);
  rill_ring_spsc_t *r = spsc(&m, 64, 16);
  header_mutations(at_spsc, m, n);
  /* Indexes: tail behind head, tail more than a ring ahead. */
  PROD(m, 0) = 5;
  CONS(m, 0) = 6;
  expect_attach(at_spsc, m, n, RILL_RING_PROD_OFF, 8, 5, RILL_ECORRUPT, "tail < head");
  CONS(m, 0) = 0;
  expect_attach(at_spsc, m, n, RILL_RING_PROD_OFF, 8, 65, RILL_ECORRUPT, "tail - head > slots");
  PROD(m, 0) = 64;
  void *h = NULL;
  cr_expect_eq(at_spsc(&h, m, n), 0, "a full ring is fine");
  rill_ring_spsc_destroy(h);
  /* Foreign memory: zeros, and random bytes. */
  void *z = amem(n);
  memset(z, 0, n);
  cr_expect_eq(at_spsc(&h, z, n), RILL_EVERSION);
  srand(7);
  for (int k = 0; k < 200; k++) {
    for (size_t i = 0; i < n; i++)
      ((uint8_t *)z)[i] = (uint8_t)rand();
    cr_expect_neq(at_spsc(&h, z, n), 0);
  }
  free(z);
  rill_ring_spsc_destroy(r);
  free(m);
}

Test(spsc, no_allocation_in_steady_state) {
  rill_ring_spsc_t *r = NULL;
  cr_assert_eq(rill_ring_spsc_create(&r, 64, 8), 0);
  uint64_t b[32], v;
  size_t got;
  uint64_t before = rill_mem_allocs_thread();
  for (int i = 0; i < 100000; i++) {
    cr_assert_eq(rill_ring_spsc_push_u64(r, (uint64_t)i), 0);
    cr_assert_eq(rill_ring_spsc_push(r, &v), 0);
    cr_assert_eq(rill_ring_spsc_pop_u64(r, &v), 0);
    cr_assert_eq(rill_ring_spsc_pop(r, &v), 0);
    cr_assert_eq(rill_ring_spsc_push_n(r, b, 32), 32);
    cr_assert_eq(rill_ring_spsc_pop_n(r, b, 32), 32);
    void *p = rill_ring_spsc_reserve(r, 4, &got);
    cr_assert(p && got);
    cr_assert_eq(rill_ring_spsc_commit(r, got), 0);
    cr_assert_not_null(rill_ring_spsc_peek(r, 4, &got));
    cr_assert_eq(rill_ring_spsc_release(r, got), 0);
  }
  cr_expect_eq(rill_mem_allocs_thread(), before);
  rill_ring_spsc_destroy(r);
}

/* ======================================================================== */
/* MPSC                                                                      */
/* ======================================================================== */

typedef struct rec {
  int32_t type;
  size_t len;
  uint8_t data[512];
} rec_t;

typedef struct sink {
  rec_t r[256];
  int n;
} sink_t;

static void collect(void *ctx, int32_t type, const void *data, size_t len) {
  sink_t *s = ctx;
  cr_assert_lt(s->n, 256);
  cr_assert_leq(len, 512);
  s->r[s->n].type = type;
  s->r[s->n].len = len;
  memcpy(s->r[s->n].data, data, len);
  cr_assert_eq((uintptr_t)data % 8, 0, "payload is 8-aligned");
  s->n++;
}

static void fill(uint8_t *p, size_t len, uint32_t seed) {
  for (size_t i = 0; i < len; i++)
    p[i] = (uint8_t)(seed * 31 + i);
}

static bool check(const uint8_t *p, size_t len, uint32_t seed) {
  for (size_t i = 0; i < len; i++)
    if (p[i] != (uint8_t)(seed * 31 + i))
      return false;
  return true;
}

Test(mpsc, rejects_bad_arguments) {
  cr_expect_eq(rill_ring_mpsc_bytes(0), 0);
  cr_expect_eq(rill_ring_mpsc_bytes(128), 0);
  cr_expect_eq(rill_ring_mpsc_bytes(1000), 0);
  cr_expect_eq(rill_ring_mpsc_bytes((uint64_t)1 << 33), 0);
  cr_expect_eq(rill_ring_mpsc_bytes(256), RILL_RING_DATA_OFF + 256);
  rill_ring_mpsc_t *r = NULL;
  cr_expect_eq(rill_ring_mpsc_create(&r, 300), RILL_EINVAL);
  void *m = amem(4096);
  cr_expect_eq(rill_ring_mpsc_format(&r, m, 1000, 1024), RILL_EINVAL);
  cr_expect_eq(rill_ring_mpsc_format(&r, (uint8_t *)m + 32, 2000, 1024), RILL_EINVAL);
  cr_assert_eq(rill_ring_mpsc_format(&r, m, 4096, 1024), 0);
  cr_expect_eq(rill_ring_mpsc_max_payload(r), 1024 / 8 - 8);
  void *p;
  cr_expect_eq(rill_ring_mpsc_reserve(r, 121, 0, &p), RILL_EMSGSIZE);
  cr_expect_null(p);
  cr_expect_eq(rill_ring_mpsc_reserve(r, 8, -1, &p), RILL_EINVAL);
  cr_expect_eq(rill_ring_mpsc_reserve(r, 120, 0, &p), 0);
  cr_expect_eq(rill_ring_mpsc_commit(r, (uint8_t *)p + 8), RILL_EFOREIGN);
  cr_expect_eq(rill_ring_mpsc_commit(r, (uint8_t *)p + 1), RILL_EFOREIGN);
  cr_expect_eq(rill_ring_mpsc_commit(r, NULL), RILL_EFOREIGN);
  cr_expect_eq(rill_ring_mpsc_commit(r, m), RILL_EFOREIGN);
  cr_expect_eq(rill_ring_mpsc_commit(r, p), 0);
  cr_expect_eq(rill_ring_mpsc_commit(r, p), RILL_EFOREIGN, "committed twice");
  cr_expect_eq(rill_ring_mpsc_cancel(r, p), RILL_EFOREIGN, "aborted after commit");
  rill_ring_mpsc_destroy(r);
  free(m);
}

Test(mpsc, wrap_with_every_record_size) {
  rill_ring_mpsc_t *r = NULL;
  cr_assert_eq(rill_ring_mpsc_create(&r, 512), 0);
  size_t max = rill_ring_mpsc_max_payload(r); /* 56 */
  sink_t *s = calloc(1, sizeof *s);
  uint32_t seq_in = 0, seq_out = 0;
  /* Every length 0..max, in several interleavings of writes and reads, so
   * that every length meets the end of the ring at every offset. */
  for (int pattern = 0; pattern < 6; pattern++) {
    for (size_t round = 0; round < 600; round++) {
      size_t len = (round * (size_t)(pattern + 1) + (size_t)pattern) % (max + 1);
      uint8_t buf[512];
      fill(buf, len, seq_in);
      int rc = rill_ring_mpsc_write(r, (int32_t)(seq_in & 0x7fff), buf, len);
      if (rc == RILL_EAGAIN) {
        s->n = 0;
        int n = rill_ring_mpsc_read(r, collect, s, 256);
        cr_assert_gt(n, 0);
        for (int i = 0; i < n; i++, seq_out++) {
          cr_assert_eq(s->r[i].type, (int32_t)(seq_out & 0x7fff));
          cr_assert(check(s->r[i].data, s->r[i].len, seq_out), "record %u corrupt", seq_out);
        }
        cr_assert_eq(rill_ring_mpsc_used(r), 0);
        rc = rill_ring_mpsc_write(r, (int32_t)(seq_in & 0x7fff), buf, len);
      }
      cr_assert_eq(rc, 0, "%s", rill_strerror(rc));
      seq_in++;
      if ((round + (size_t)pattern) % (size_t)(pattern + 2) == 0) {
        s->n = 0;
        int n = rill_ring_mpsc_read(r, collect, s, (size_t)pattern + 1);
        cr_assert_leq(n, pattern + 1);
        for (int i = 0; i < n; i++, seq_out++) {
          cr_assert_eq(s->r[i].type, (int32_t)(seq_out & 0x7fff));
          cr_assert(check(s->r[i].data, s->r[i].len, seq_out));
        }
      }
    }
  }
  s->n = 0;
  int n = rill_ring_mpsc_read(r, collect, s, 1000);
  for (int i = 0; i < n; i++, seq_out++)
    cr_assert(check(s->r[i].data, s->r[i].len, seq_out));
  cr_expect_eq(seq_out, seq_in);
  cr_expect_eq(rill_ring_mpsc_read(r, collect, s, 10), 0, "empty");
  free(s);
  rill_ring_mpsc_destroy(r);
}

Test(mpsc, full_is_eagain_and_read_frees_room) {
  rill_ring_mpsc_t *r = NULL;
  cr_assert_eq(rill_ring_mpsc_create(&r, 256), 0);
  /* max payload 24: records of 32 bytes, 8 fit. */
  uint8_t buf[24] = {0};
  for (int i = 0; i < 8; i++)
    cr_assert_eq(rill_ring_mpsc_write(r, i, buf, 24), 0);
  cr_expect_eq(rill_ring_mpsc_used(r), 256);
  cr_expect_eq(rill_ring_mpsc_write(r, 9, buf, 0), RILL_EAGAIN);
  sink_t *s = calloc(1, sizeof *s);
  cr_expect_eq(rill_ring_mpsc_read(r, collect, s, 3), 3);
  cr_expect_eq(rill_ring_mpsc_used(r), 256 - 96);
  for (int i = 0; i < 3; i++)
    cr_assert_eq(rill_ring_mpsc_write(r, 10 + i, buf, 24), 0);
  cr_expect_eq(rill_ring_mpsc_write(r, 9, buf, 0), RILL_EAGAIN);
  cr_expect_eq(rill_ring_mpsc_read(r, collect, s, 100), 8);
  for (int i = 0; i < 11; i++)
    cr_expect_eq(s->r[i].type, i < 8 ? i : i + 2);
  free(s);
  rill_ring_mpsc_destroy(r);
}

Test(mpsc, claims_commit_out_of_order_and_abort_pads) {
  rill_ring_mpsc_t *r = NULL;
  cr_assert_eq(rill_ring_mpsc_create(&r, 1024), 0);
  void *a, *b, *c;
  cr_assert_eq(rill_ring_mpsc_reserve(r, 10, 1, &a), 0);
  cr_assert_eq(rill_ring_mpsc_reserve(r, 20, 2, &b), 0);
  cr_assert_eq(rill_ring_mpsc_reserve(r, 30, 3, &c), 0);
  memset(a, 1, 10);
  memset(b, 2, 20);
  memset(c, 3, 30);
  sink_t *s = calloc(1, sizeof *s);
  cr_assert_eq(rill_ring_mpsc_commit(r, c), 0);
  cr_expect_eq(rill_ring_mpsc_read(r, collect, s, 10), 0, "a is not committed: nothing yet");
  cr_assert_eq(rill_ring_mpsc_cancel(r, b), 0);
  cr_expect_eq(rill_ring_mpsc_commit(r, b), RILL_ECANCELED, "b is padding now");
  cr_expect_eq(rill_ring_mpsc_read(r, collect, s, 10), 0);
  cr_assert_eq(rill_ring_mpsc_commit(r, a), 0);
  cr_expect_eq(rill_ring_mpsc_read(r, collect, s, 10), 2, "a and c; b was aborted");
  cr_expect_eq(s->r[0].type, 1);
  cr_expect_eq(s->r[0].len, 10);
  cr_expect_eq(s->r[1].type, 3);
  cr_expect_eq(s->r[1].len, 30);
  cr_expect_eq(s->r[1].data[29], 3);
  cr_expect_eq(rill_ring_mpsc_used(r), 0);
  /* Consumed bytes are zero again. */
  uint8_t *d = (uint8_t *)a - 8;
  for (int i = 0; i < 96; i++)
    cr_assert_eq(d[i], 0, "byte %d not zeroed", i);
  free(s);
  rill_ring_mpsc_destroy(r);
}

Test(mpsc, unblock_a_dead_producer) {
  void *m = amem(rill_ring_mpsc_bytes(1024));
  rill_ring_mpsc_t *r = NULL;
  cr_assert_eq(rill_ring_mpsc_format(&r, m, rill_ring_mpsc_bytes(1024), 1024), 0);
  sink_t *s = calloc(1, sizeof *s);
  cr_expect_eq(rill_ring_mpsc_unblock(r), 0, "empty ring: nothing to do");
  /* 1. Died after claiming (the record is marked, never committed). */
  void *dead, *live;
  cr_assert_eq(rill_ring_mpsc_reserve(r, 40, 7, &dead), 0);
  memset(dead, 0xee, 40);
  cr_assert_eq(rill_ring_mpsc_write(r, 8, "after", 5), 0);
  cr_expect_eq(rill_ring_mpsc_read(r, collect, s, 10), 0, "stuck behind the dead claim");
  cr_expect_eq(rill_ring_mpsc_unblock(r), 1);
  cr_expect_eq(rill_ring_mpsc_read(r, collect, s, 10), 1);
  cr_expect_eq(s->r[0].type, 8);
  cr_expect_eq(rill_ring_mpsc_commit(r, dead), RILL_EFOREIGN,
               "the room was consumed and zeroed: not a claim any more");
  /* 2. A committed record at head: unblock leaves it. */
  cr_assert_eq(rill_ring_mpsc_write(r, 9, "x", 1), 0);
  cr_expect_eq(rill_ring_mpsc_unblock(r), 0);
  s->n = 0;
  cr_expect_eq(rill_ring_mpsc_read(r, collect, s, 10), 1);
  /* 3. Slow, not dead: unblock wins, the late commit is told. */
  cr_assert_eq(rill_ring_mpsc_reserve(r, 16, 10, &live), 0);
  cr_expect_eq(rill_ring_mpsc_unblock(r), 1);
  cr_expect_eq(rill_ring_mpsc_commit(r, live), RILL_ECANCELED);
  s->n = 0;
  cr_expect_eq(rill_ring_mpsc_read(r, collect, s, 10), 0);
  cr_expect_eq(rill_ring_mpsc_used(r), 0);
  /* 4. Died between its tail CAS and its mark: the tail moved by 48 bytes
   * and the room is zero. A record after it is committed. */
  PROD(m, 0) += 48;
  cr_assert_eq(rill_ring_mpsc_write(r, 11, "next", 4), 0);
  s->n = 0;
  cr_expect_eq(rill_ring_mpsc_read(r, collect, s, 10), 0, "stuck: header never written");
  cr_expect_eq(rill_ring_mpsc_unblock(r), 1);
  cr_expect_eq(rill_ring_mpsc_read(r, collect, s, 10), 1);
  cr_expect_eq(s->r[0].type, 11);
  cr_expect_eq(s->r[0].len, 4);
  cr_expect_eq(rill_ring_mpsc_used(r), 0);
  /* 5. The same with nothing after it: padding runs to tail. */
  PROD(m, 0) += 24;
  cr_expect_eq(rill_ring_mpsc_used(r), 24);
  cr_expect_eq(rill_ring_mpsc_unblock(r), 1);
  cr_expect_eq(rill_ring_mpsc_read(r, collect, s, 10), 0);
  cr_expect_eq(rill_ring_mpsc_used(r), 0);
  /* And the ring works on, across the wrap. */
  for (int i = 0; i < 200; i++) {
    cr_assert_eq(rill_ring_mpsc_write(r, i, &i, sizeof i), 0);
    s->n = 0;
    cr_assert_eq(rill_ring_mpsc_read(r, collect, s, 10), 1);
    cr_assert_eq(s->r[0].type, i);
  }
  free(s);
  rill_ring_mpsc_destroy(r);
  free(m);
}

Test(mpsc, second_handle_and_corrupt_memory) {
  size_t n = rill_ring_mpsc_bytes(1024);
  void *m = amem(n);
  rill_ring_mpsc_t *a = NULL, *b = NULL;
  cr_assert_eq(rill_ring_mpsc_format(&a, m, n, 1024), 0);
  cr_assert_eq(rill_ring_mpsc_write(a, 5, "hello", 5), 0);
  cr_assert_eq(rill_ring_mpsc_attach(&b, m, n), 0, "%s", rill_errmsg());
  cr_assert_eq(rill_ring_mpsc_write(b, 6, "world", 5), 0);
  sink_t *s = calloc(1, sizeof *s);
  cr_expect_eq(rill_ring_mpsc_read(b, collect, s, 10), 2);
  cr_expect_eq(memcmp(s->r[1].data, "world", 5), 0);
  rill_ring_mpsc_destroy(b);
  header_mutations(at_mpsc, m, n);
  uint64_t t = PROD(m, 0);
  expect_attach(at_mpsc, m, n, RILL_RING_PROD_OFF, 8, t + 4, RILL_ECORRUPT, "tail unaligned");
  expect_attach(at_mpsc, m, n, RILL_RING_PROD_OFF, 8, t + 2048, RILL_ECORRUPT, "tail > ring");
  expect_attach(at_mpsc, m, n, RILL_RING_CONS_OFF, 8, t + 8, RILL_ECORRUPT, "head > tail");
  expect_attach(at_mpsc, m, n, RILL_RING_PROD_OFF + 8, 8, t + 8, RILL_ECORRUPT, "cache > tail");
  /* Corrupt records: read says so and never crashes. */
  cr_assert_eq(rill_ring_mpsc_write(a, 1, "abc", 3), 0);
  int32_t *hdr = (int32_t *)((uint8_t *)m + RILL_RING_DATA_OFF + (t & 1023));
  int32_t bad[] = {1, 7, 2000, 1 << 30, INT32_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int32_t save = hdr[0];
    hdr[0] = bad[i];
    cr_expect_eq(rill_ring_mpsc_read(a, collect, s, 10), RILL_ECORRUPT, "length %d", bad[i]);
    hdr[0] = save;
  }
  hdr[1] = -5;
  cr_expect_eq(rill_ring_mpsc_read(a, collect, s, 10), RILL_ECORRUPT, "reserved type");
  hdr[1] = 1;
  /* Counters a peer scribbled on after attach: an error, not a misaligned
   * access. */
  CONS(m, 0) += 4;
  cr_expect_eq(rill_ring_mpsc_read(a, collect, s, 10), RILL_ECORRUPT, "head unaligned");
  CONS(m, 0) -= 4;
  PROD(m, 0) += 4;
  void *p;
  cr_expect_eq(rill_ring_mpsc_reserve(a, 8, 1, &p), RILL_ECORRUPT, "tail unaligned");
  cr_expect_eq(rill_ring_mpsc_unblock(a), RILL_ECORRUPT, "tail unaligned");
  PROD(m, 0) -= 4;
  s->n = 0;
  cr_expect_eq(rill_ring_mpsc_read(a, collect, s, 10), 1);
  free(s);
  rill_ring_mpsc_destroy(a);
  free(m);
}

static void count_only(void *ctx, int32_t type, const void *data, size_t len) {
  (void)type, (void)data, (void)len;
  ++*(int *)ctx;
}

Test(mpsc, no_allocation_in_steady_state) {
  rill_ring_mpsc_t *r = NULL;
  cr_assert_eq(rill_ring_mpsc_create(&r, 4096), 0);
  int seen = 0;
  uint64_t before = rill_mem_allocs_thread();
  for (int i = 0; i < 100000; i++) {
    void *p;
    cr_assert_eq(rill_ring_mpsc_reserve(r, (size_t)i % 64, 1, &p), 0);
    cr_assert_eq(rill_ring_mpsc_commit(r, p), 0);
    cr_assert_eq(rill_ring_mpsc_write(r, 2, &i, sizeof i), 0);
    cr_assert_eq(rill_ring_mpsc_read(r, count_only, &seen, 8), 2);
  }
  cr_expect_eq(rill_mem_allocs_thread(), before);
  cr_expect_eq(seen, 200000);
  rill_ring_mpsc_destroy(r);
}

/* ======================================================================== */
/* bcast                                                                     */
/* ======================================================================== */

Test(bcast, write_and_read) {
  rill_ring_bcast_t *r = NULL;
  cr_expect_eq(rill_ring_bcast_create(&r, 100), RILL_EINVAL);
  cr_assert_eq(rill_ring_bcast_create(&r, 1024), 0);
  cr_expect_eq(rill_ring_bcast_max_payload(r), 1024 / 8 - 16);
  rill_ring_bcast_reader_t a, b;
  rill_ring_bcast_join(r, &a);
  uint8_t buf[256];
  size_t len;
  int32_t type;
  cr_expect_eq(rill_ring_bcast_read(r, &a, buf, sizeof buf, &len, &type), RILL_EAGAIN);
  cr_expect_eq(rill_ring_bcast_write(r, -1, "x", 1), RILL_EINVAL);
  cr_expect_eq(rill_ring_bcast_write(r, 1, buf, 113), RILL_EMSGSIZE);
  cr_assert_eq(rill_ring_bcast_write(r, 1, "one", 3), 0);
  rill_ring_bcast_join(r, &b); /* joins after "one" */
  cr_assert_eq(rill_ring_bcast_write(r, 2, "two!two!", 8), 0);
  cr_assert_eq(rill_ring_bcast_write(r, 3, "", 0), 0);
  cr_assert_eq(rill_ring_bcast_read(r, &a, buf, sizeof buf, &len, &type), 0);
  cr_expect_eq(type, 1);
  cr_expect_eq(len, 3);
  cr_expect_eq(memcmp(buf, "one", 3), 0);
  cr_expect_eq(rill_ring_bcast_read(r, &a, buf, 4, &len, &type), RILL_EMSGSIZE);
  cr_expect_eq(len, 8, "the size needed");
  cr_assert_eq(rill_ring_bcast_read(r, &a, buf, 8, &len, &type), 0);
  cr_expect_eq(memcmp(buf, "two!two!", 8), 0);
  cr_assert_eq(rill_ring_bcast_read(r, &a, buf, 0, &len, &type), 0);
  cr_expect_eq(len, 0);
  cr_expect_eq(type, 3);
  cr_expect_eq(rill_ring_bcast_read(r, &a, buf, sizeof buf, &len, &type), RILL_EAGAIN);
  cr_assert_eq(rill_ring_bcast_read(r, &b, buf, sizeof buf, &len, &type), 0);
  cr_expect_eq(type, 2, "b joined after the first record");
  cr_expect_eq(rill_ring_bcast_written(r), 3);
  rill_ring_bcast_reader_t o;
  rill_ring_bcast_join_oldest(r, &o);
  cr_assert_eq(rill_ring_bcast_read(r, &o, buf, sizeof buf, &len, &type), 0);
  cr_expect_eq(type, 1);
  rill_ring_bcast_destroy(r);
}

/* A gathered record reads back as the parts' bytes in order, whatever
 * their lengths and however they straddle 8-byte words. */
Test(bcast, writev_gathers_parts) {
  rill_ring_bcast_t *r = NULL;
  cr_assert_eq(rill_ring_bcast_create(&r, 4096), 0);
  rill_ring_bcast_reader_t rd;
  rill_ring_bcast_join(r, &rd);
  uint8_t src[300], out[300];
  for (size_t i = 0; i < sizeof src; i++)
    src[i] = (uint8_t)(i * 7 + 1);
  srand(11);
  for (int round = 0; round < 2000; round++) {
    rill_iov_t parts[4];
    size_t np = 1 + (size_t)(rand() % 4), total = 0;
    for (size_t k = 0; k < np; k++) {
      size_t l = (size_t)(rand() % 40);
      parts[k] = (rill_iov_t){src + total, l};
      total += l;
    }
    cr_assert_eq(rill_ring_bcast_writev(r, 3, parts, np), 0);
    size_t len;
    int32_t type;
    memset(out, 0xee, sizeof out);
    cr_assert_eq(rill_ring_bcast_read(r, &rd, out, sizeof out, &len, &type), 0);
    cr_assert_eq(len, total);
    cr_assert_eq(type, 3);
    cr_assert_eq(memcmp(out, src, total), 0, "round %d", round);
  }
  rill_iov_t big[2] = {{src, 300}, {src, 197}};
  cr_expect_eq(rill_ring_bcast_writev(r, 0, big, 2), RILL_EMSGSIZE); /* max 496 */
  rill_iov_t wrap[2] = {{src, 1}, {NULL, UINT32_MAX}};
  cr_expect_eq(rill_ring_bcast_writev(r, 0, wrap, 2), RILL_EMSGSIZE);
  rill_ring_bcast_destroy(r);
}

Test(bcast, peek_leaves_the_record_next) {
  rill_ring_bcast_t *r = NULL;
  cr_assert_eq(rill_ring_bcast_create(&r, 512), 0);
  rill_ring_bcast_reader_t rd;
  rill_ring_bcast_join(r, &rd);
  uint8_t b[64];
  size_t len;
  int32_t type;
  cr_expect_eq(rill_ring_bcast_peek(r, &rd, b, 4, &len, &type), RILL_EAGAIN);
  cr_assert_eq(rill_ring_bcast_write(r, 5, "abcdefghij", 10), 0);
  memset(b, 0, sizeof b);
  cr_assert_eq(rill_ring_bcast_peek(r, &rd, b, 4, &len, &type), 0);
  cr_expect_eq(len, 10, "the full length, though only 4 bytes were asked for");
  cr_expect_eq(type, 5);
  cr_expect_eq(memcmp(b, "abcd\0", 5), 0);
  cr_assert_eq(rill_ring_bcast_peek(r, &rd, b, 0, &len, &type), 0);
  cr_assert_eq(rill_ring_bcast_read(r, &rd, b, sizeof b, &len, &type), 0);
  cr_expect_eq(memcmp(b, "abcdefghij", 10), 0);
  cr_expect_eq(rill_ring_bcast_peek(r, &rd, b, 4, &len, &type), RILL_EAGAIN);
  /* Lapped: peek moves to the oldest record and says so, like read. */
  for (int i = 0; i < 40; i++)
    cr_assert_eq(rill_ring_bcast_write(r, 1, &i, sizeof i), 0);
  cr_expect_eq(rill_ring_bcast_peek(r, &rd, b, 4, &len, &type), RILL_ELAGGED);
  cr_assert_eq(rill_ring_bcast_peek(r, &rd, b, 4, &len, &type), 0);
  int first;
  memcpy(&first, b, 4);
  cr_expect_eq((uint64_t)first + 1, rd.next_seq); /* "abcdefghij" was seq 0 */
  cr_assert_eq(rill_ring_bcast_read(r, &rd, b, sizeof b, &len, &type), 0);
  int again;
  memcpy(&again, b, 4);
  cr_expect_eq(again, first);
  rill_ring_bcast_destroy(r);
}

Test(bcast, lapped_reader_knows_exactly_what_it_lost) {
  rill_ring_bcast_t *r = NULL;
  cr_assert_eq(rill_ring_bcast_create(&r, 512), 0);
  rill_ring_bcast_reader_t rd;
  rill_ring_bcast_join(r, &rd);
  /* 24-byte payloads: 40-byte records taking 48 (16-aligned). Ten fit
   * before the end (0..479), padding fills 480..511, records 10.. start at
   * 512. After 20 records tail is 992 and the oldest whole record starts at
   * 480 (the padding, which carries seq 10): seqs 0..9 are lost, 480 bytes. */
  uint64_t w[3] = {0};
  for (uint64_t i = 0; i < 20; i++) {
    w[0] = i;
    cr_assert_eq(rill_ring_bcast_write(r, 0, w, 24), 0);
  }
  uint64_t v[3];
  size_t len;
  int32_t type;
  cr_assert_eq(rill_ring_bcast_read(r, &rd, v, 24, &len, &type), RILL_ELAGGED);
  cr_expect_eq(rd.lost_records, 10);
  cr_expect_eq(rd.lost_bytes, 480);
  cr_expect_eq(rd.laps, 1);
  for (uint64_t i = 10; i < 20; i++) {
    cr_assert_eq(rill_ring_bcast_read(r, &rd, v, 24, &len, &type), 0);
    cr_assert_eq(v[0], i);
  }
  /* Two more: record 20 pads 992..1023 and starts at 1024, record 21 at
   * 1072; the oldest whole record is then record 12 at 608. */
  for (uint64_t i = 20; i < 22; i++) {
    w[0] = i;
    cr_assert_eq(rill_ring_bcast_write(r, 0, w, 24), 0);
  }
  rill_ring_bcast_reader_t late;
  rill_ring_bcast_join_oldest(r, &late);
  cr_expect_eq(late.cursor, 608);
  cr_expect_eq(late.next_seq, 12);
  cr_assert_eq(rill_ring_bcast_read(r, &rd, v, 24, &len, &type), 0);
  cr_assert_eq(v[0], 20);
  cr_assert_eq(rill_ring_bcast_read(r, &rd, v, 24, &len, &type), 0);
  cr_assert_eq(v[0], 21);
  cr_expect_eq(rill_ring_bcast_read(r, &rd, v, 24, &len, &type), RILL_EAGAIN);
  /* Variable sizes, random lapping: read + lost == written, always in
   * order. */
  srand(3);
  uint64_t next = 22, expect = 22, lost = rd.total_lost, x;
  for (int round = 0; round < 5000; round++) {
    int burst = rand() % 30;
    for (int k = 0; k < burst; k++, next++) {
      uint8_t b[24] = {0};
      memcpy(b, &next, 8);
      cr_assert_eq(rill_ring_bcast_write(r, 1, b, 8 + (size_t)(rand() % 9)), 0);
    }
    int reads = rand() % 20;
    for (int k = 0; k < reads; k++) {
      uint8_t b[32];
      int rc = rill_ring_bcast_read(r, &rd, b, sizeof b, &len, &type);
      if (rc == RILL_EAGAIN)
        break;
      if (rc == RILL_ELAGGED) {
        expect += rd.lost_records;
        continue;
      }
      cr_assert_eq(rc, 0);
      memcpy(&x, b, 8);
      cr_assert_eq(x, expect, "got %llu want %llu", (unsigned long long)x,
                   (unsigned long long)expect);
      expect++;
    }
  }
  while (1) {
    uint8_t b[32];
    int rc = rill_ring_bcast_read(r, &rd, b, sizeof b, &len, &type);
    if (rc == RILL_EAGAIN)
      break;
    if (rc == RILL_ELAGGED) {
      expect += rd.lost_records;
      continue;
    }
    memcpy(&x, b, 8);
    cr_assert_eq(x, expect++);
  }
  cr_expect_eq(expect, next);
  cr_expect_gt(rd.total_lost, lost);
  rill_ring_bcast_destroy(r);
}

Test(bcast, second_handle_and_corrupt_memory) {
  size_t n = rill_ring_bcast_bytes(1024);
  void *m = amem(n);
  rill_ring_bcast_t *a = NULL, *b = NULL;
  cr_assert_eq(rill_ring_bcast_format(&a, m, n, 1024), 0);
  rill_ring_bcast_reader_t rd;
  rill_ring_bcast_join(a, &rd);
  cr_assert_eq(rill_ring_bcast_write(a, 4, "abc", 3), 0);
  cr_assert_eq(rill_ring_bcast_attach(&b, m, n), 0, "%s", rill_errmsg());
  char buf[64];
  size_t len;
  int32_t type;
  cr_assert_eq(rill_ring_bcast_read(b, &rd, buf, sizeof buf, &len, &type), 0);
  cr_expect_eq(type, 4);
  rill_ring_bcast_destroy(b);
  header_mutations(at_bcast, m, n);
  /* Counters: oldest, tail, intent at 128 + 16, 8, 0. */
  expect_attach(at_bcast, m, n, RILL_RING_PROD_OFF + 16, 8, 64, RILL_ECORRUPT, "oldest > tail");
  expect_attach(at_bcast, m, n, RILL_RING_PROD_OFF + 8, 8, 4000, RILL_ECORRUPT, "tail > intent");
  expect_attach(at_bcast, m, n, RILL_RING_PROD_OFF + 8, 8, 3, RILL_ECORRUPT, "tail unaligned");
  /* A corrupt record header is ECORRUPT for a reader it does not lap. */
  cr_assert_eq(rill_ring_bcast_write(a, 5, "defg", 4), 0);
  int32_t *hdr = (int32_t *)((uint8_t *)m + RILL_RING_DATA_OFF + 32);
  int32_t save = hdr[0];
  int32_t bad[] = {0, 15, 2000, INT32_MIN};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    hdr[0] = bad[i];
    cr_expect_eq(rill_ring_bcast_read(a, &rd, buf, sizeof buf, &len, &type), RILL_ECORRUPT);
  }
  hdr[0] = save;
  cr_assert_eq(rill_ring_bcast_read(a, &rd, buf, sizeof buf, &len, &type), 0);
  cr_expect_eq(memcmp(buf, "defg", 4), 0);
  rill_ring_bcast_destroy(a);
  free(m);
}

Test(bcast, no_allocation_in_steady_state) {
  rill_ring_bcast_t *r = NULL;
  cr_assert_eq(rill_ring_bcast_create(&r, 4096), 0);
  rill_ring_bcast_reader_t rd;
  rill_ring_bcast_join(r, &rd);
  uint8_t buf[64] = {0};
  size_t len;
  int32_t type;
  uint64_t before = rill_mem_allocs_thread();
  for (int i = 0; i < 100000; i++) {
    cr_assert_eq(rill_ring_bcast_write(r, 1, buf, (size_t)i % 64), 0);
    cr_assert_eq(rill_ring_bcast_read(r, &rd, buf, sizeof buf, &len, &type), 0);
  }
  cr_expect_eq(rill_mem_allocs_thread(), before);
  rill_ring_bcast_destroy(r);
}

/* ======================================================================== */
/* two processes                                                             */
/* ======================================================================== */

#define XP_N 200000u

static void xp_collect(void *ctx, int32_t type, const void *data, size_t len) {
  uint32_t *next = ctx;
  uint32_t v;
  cr_assert_eq(len, (size_t)(*next % 17) + 4, "record %u: length %zu", *next, len);
  memcpy(&v, data, 4);
  cr_assert_eq(v, *next, "record %u arrived as %u", *next, v);
  cr_assert_eq(type, (int32_t)(*next % 5));
  for (size_t i = 4; i < len; i++)
    cr_assert_eq(((const uint8_t *)data)[i], (uint8_t)(v + i));
  ++*next;
}

Test(ring, fork_producer_in_shared_memory, .timeout = 60) {
  size_t ns = rill_ring_spsc_bytes(1024, 8), nm = rill_ring_mpsc_bytes(4096);
  size_t total = ns + nm;
  uint8_t *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  cr_assert_neq(m, MAP_FAILED);
  rill_ring_spsc_t *s = NULL;
  rill_ring_mpsc_t *q = NULL;
  cr_assert_eq(rill_ring_spsc_format(&s, m, ns, 1024, 8), 0);
  cr_assert_eq(rill_ring_mpsc_format(&q, m + ns, nm, 4096), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    /* The child attaches its own handles, as another process would. */
    rill_ring_spsc_t *cs = NULL;
    rill_ring_mpsc_t *cq = NULL;
    if (rill_ring_spsc_attach(&cs, m, ns) || rill_ring_mpsc_attach(&cq, m + ns, nm))
      _exit(2);
    uint32_t i = 0, j = 0;
    while (i < XP_N || j < XP_N) {
      if (i < XP_N && rill_ring_spsc_push_u64(cs, (uint64_t)i * 2654435761u) == 0)
        i++;
      if (j < XP_N) {
        uint8_t b[24];
        size_t len = j % 17 + 4;
        memcpy(b, &j, 4);
        for (size_t k = 4; k < len; k++)
          b[k] = (uint8_t)(j + k);
        int rc = rill_ring_mpsc_write(cq, (int32_t)(j % 5), b, len);
        if (rc == 0)
          j++;
        else if (rc != RILL_EAGAIN)
          _exit(3);
      }
    }
    _exit(0);
  }
  uint32_t i = 0, j = 0;
  while (i < XP_N || j < XP_N) {
    uint64_t v;
    if (i < XP_N && rill_ring_spsc_pop_u64(s, &v) == 0) {
      cr_assert_eq(v, (uint64_t)i * 2654435761u, "spsc item %u", i);
      i++;
    }
    int n = rill_ring_mpsc_read(q, xp_collect, &j, 64);
    cr_assert_geq(n, 0);
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
  rill_ring_spsc_destroy(s);
  rill_ring_mpsc_destroy(q);
  munmap(m, total);
}
