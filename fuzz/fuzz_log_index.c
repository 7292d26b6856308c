/*
 * The log's index on arbitrary bytes: the header and checkpoint checks on
 * the input's first 64 bytes, then the input written as the .idx file of
 * segment 0 of a valid topic and the topic opened, read-only and as the
 * writer (which recovers, rebuilding the index). Segment 0 is the last
 * segment, or (bit 0 of byte 21 set) a sealed one with a successor.
 * Whatever the index says, open must fail cleanly or every read must give
 * a record's exact bytes or RILL_ECORRUPT (an index entry can only ever
 * point a read at bytes the record's own marker, sequence number and check
 * vouch for), the writer must hold every record, and its next append must
 * get the next sequence number and read back.
 *
 * The input's header and checkpoint crcs are recomputed over its bytes
 * unless bit 0 (header) or bit 1 (checkpoint) of byte 20, a reserved byte
 * the decoder ignores, is set: a crc that holds is no reason to trust a
 * count or an offset, and without forging them the fuzzer would almost
 * never get a changed count past the crc to the checks behind it.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/format.h"
#include "rill/log.h"

#define SEG  (64u << 10)
#define NREC 500 /* two segments */

static char dir[64], tdir[96];
static uint8_t *seg_file, *mf_file, *seg1_file, *idx1_file;
static size_t seg_len, mf_len, seg1_len, idx1_len;
static uint64_t base1; /* segment 1's first record */
static char seg1_name[32], idx1_name[32];

static uint32_t rec_len(uint64_t i) { return i % 9 == 0 ? 0 : (uint32_t)((i * 53) % 300); }

static void rec_fill(uint8_t *b, uint64_t i) {
  for (uint32_t k = 0; k < rec_len(i); k++)
    b[k] = (uint8_t)(i * 29 + k + 3);
}

static uint8_t *slurp(const char *name, size_t *n) {
  char p[160];
  snprintf(p, sizeof p, "%s/%s", tdir, name);
  FILE *f = fopen(p, "rb");
  if (!f)
    abort();
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  rewind(f);
  uint8_t *b = malloc(*n);
  if (!b || fread(b, 1, *n, f) != *n)
    abort();
  fclose(f);
  return b;
}

static void put(const char *name, const uint8_t *b, size_t n) {
  char p[160];
  snprintf(p, sizeof p, "%s/%s", tdir, name);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write(fd, b, n) != (ssize_t)n)
    abort();
  close(fd);
}

static void cleanup(void) {
  char cmd[96];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
}

static void setup(void) {
  snprintf(dir, sizeof dir, "%s/rill-fuzz-idx-XXXXXX",
           access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
  if (!mkdtemp(dir))
    abort();
  atexit(cleanup);
  snprintf(tdir, sizeof tdir, "%s/t", dir);
  rill_log_t *l;
  rill_log_opts_t o = {.segment_bytes = SEG};
  if (rill_log_open(&l, dir, "t", &o) != 0)
    abort();
  uint8_t b[512];
  for (uint64_t i = 0; i < NREC; i++) {
    rec_fill(b, i);
    if (rill_log_append(l, b, rec_len(i), NULL) != 0)
      abort();
  }
  rill_log_close(l);
  seg_file = slurp("00000000000000000000.seg", &seg_len);
  mf_file = slurp("MANIFEST", &mf_len);
  /* Segment 0 is full: its records end where segment 1 begins. */
  uint8_t ih[LOG_HDR];
  uint64_t end;
  uint8_t *idx0;
  size_t idx0_len;
  idx0 = slurp("00000000000000000000.idx", &idx0_len);
  memcpy(ih, idx0, LOG_HDR);
  free(idx0);
  if (log_idx_checkpoint_read(ih, 0, &base1, &end) != 0 || base1 == 0 || base1 >= NREC)
    abort();
  snprintf(seg1_name, sizeof seg1_name, "%020llu.seg", (unsigned long long)base1);
  snprintf(idx1_name, sizeof idx1_name, "%020llu.idx", (unsigned long long)base1);
  seg1_file = slurp(seg1_name, &seg1_len);
  idx1_file = slurp(idx1_name, &idx1_len);
}

static void unlink_in(const char *name) {
  char p[160];
  snprintf(p, sizeof p, "%s/%s", tdir, name);
  unlink(p);
}

static void check_reads(rill_log_t *l, uint64_t nrec) {
  uint64_t first = rill_log_first(l), next = rill_log_next(l);
  if (first > next || next > nrec)
    __builtin_trap(); /* records that were never written */
  uint8_t b[512];
  for (uint64_t s = first; s < next; s++) {
    rill_log_record_t r;
    int rc = rill_log_read(l, s, &r);
    if (rc == RILL_ECORRUPT)
      continue;
    if (rc != 0)
      __builtin_trap();
    rec_fill(b, s);
    if (r.seq != s || r.payload.len != rec_len(s) ||
        (r.payload.len && memcmp(r.payload.data, b, r.payload.len) != 0))
      __builtin_trap(); /* wrong bytes */
    rill_buf_release(&r.payload);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!seg_file)
    setup();
  if (size > 16384)
    return 0;
  static uint8_t in[16384];
  memcpy(in, data, size);
  if (size >= LOG_HDR) {
    if (!(in[20] & 1)) {
      uint32_t crc = rill_crc32c(0, in, 16);
      memcpy(in + 16, &crc, 4);
    }
    if (!(in[20] & 2)) {
      uint64_t c, e;
      memcpy(&c, in + 24, 8);
      memcpy(&e, in + 32, 8);
      log_idx_checkpoint(in, 0, c, e);
    }
  }
  bool sealed = size > 21 && (in[21] & 1);
  uint64_t nrec = sealed ? NREC : base1;
  uint8_t h[LOG_HDR] = {0};
  memcpy(h, in, size < LOG_HDR ? size : LOG_HDR);
  uint64_t c, e;
  (void)log_idx_hdr_check(h, 0, "fuzz");
  (void)log_idx_checkpoint_read(h, 0, &c, &e);

  put("MANIFEST", mf_file, mf_len);
  put("00000000000000000000.seg", seg_file, seg_len);
  put("00000000000000000000.idx", in, size);
  if (sealed) {
    put(seg1_name, seg1_file, seg1_len);
    put(idx1_name, idx1_file, idx1_len);
  } else {
    unlink_in(seg1_name);
    unlink_in(idx1_name);
  }
  for (int ro = 1; ro >= 0; ro--) {
    rill_log_t *l;
    rill_log_opts_t o = {.read_only = ro};
    int rc = rill_log_open(&l, dir, "t", &o);
    if (rc == 0) {
      check_reads(l, nrec);
      /* The writer recovered every record: the index did not matter. */
      if (!ro && rill_log_next(l) != nrec)
        __builtin_trap();
      if (!ro) {
        uint64_t seq;
        rill_log_record_t r;
        if (rill_log_append(l, "fuzz", 4, &seq) != 0 || seq != nrec ||
            rill_log_read(l, seq, &r) != 0 || r.payload.len != 4 ||
            memcmp(r.payload.data, "fuzz", 4) != 0)
          __builtin_trap();
        rill_buf_release(&r.payload);
      }
      rill_log_close(l);
    } else if (rc != RILL_ECORRUPT && rc != RILL_EVERSION) {
      __builtin_trap();
    }
  }
  return 0;
}
