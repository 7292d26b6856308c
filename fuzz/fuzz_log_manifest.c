/*
 * The log's MANIFEST on arbitrary bytes: log_manifest_decode (what it
 * accepts must encode back to the same fields), then the bytes written as
 * the MANIFEST of a topic beside valid segments and the topic opened,
 * read-only and as the writer. Open must fail cleanly, or every record it
 * then holds must read back right or RILL_ECORRUPT, never other bytes, and
 * no segment that holds records at or after the first it reports may have
 * been deleted.
 *
 * A 64-byte input gets its crc recomputed unless bit 0 of byte 36 (a
 * reserved byte the decoder ignores) is set: the fuzzer would otherwise
 * almost never get a changed field past the crc, and the checks behind it
 * (segment size, first seq against the segments present) are what a crc
 * does not vouch for.
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

#define SEG    (64u << 10)
#define NREC   800 /* three segments */
#define MAXSEG 8

static char dir[64], tdir[96];
static struct {
  char seg[32], idx[32];
  uint8_t *seg_file, *idx_file;
  size_t seg_len, idx_len;
  uint64_t base;
} segs[MAXSEG];
static size_t nsegs;
static bool ready;

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

/* Leaves only the pristine segment and index (a writer that trusted the
 * input may have dropped them or started others). */
static void reset(void) {
  DIR *d = opendir(tdir);
  if (!d)
    abort();
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t n = strlen(e->d_name);
    if (n > 4 && (!strcmp(e->d_name + n - 4, ".seg") || !strcmp(e->d_name + n - 4, ".idx"))) {
      char p[400];
      snprintf(p, sizeof p, "%s/%s", tdir, e->d_name);
      unlink(p);
    }
  }
  closedir(d);
  for (size_t i = 0; i < nsegs; i++) {
    put(segs[i].seg, segs[i].seg_file, segs[i].seg_len);
    put(segs[i].idx, segs[i].idx_file, segs[i].idx_len);
  }
}

/* Whether segment i's file is still there. */
static bool present(size_t i) {
  char p[160];
  snprintf(p, sizeof p, "%s/%s", tdir, segs[i].seg);
  return access(p, F_OK) == 0;
}

static void cleanup(void) {
  char cmd[96];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
}

static void setup(void) {
  snprintf(dir, sizeof dir, "%s/rill-fuzz-mf-XXXXXX",
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
  DIR *d = opendir(tdir);
  if (!d)
    abort();
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t n = strlen(e->d_name);
    if (n != 24 || strcmp(e->d_name + 20, ".seg"))
      continue;
    if (nsegs == MAXSEG)
      abort();
    uint64_t base = strtoull(e->d_name, NULL, 10);
    segs[nsegs].base = base;
    snprintf(segs[nsegs].seg, sizeof segs[nsegs].seg, "%020llu.seg", (unsigned long long)base);
    snprintf(segs[nsegs].idx, sizeof segs[nsegs].idx, "%020llu.idx", (unsigned long long)base);
    nsegs++;
  }
  closedir(d);
  if (nsegs < 2)
    abort();
  for (size_t i = 1; i < nsegs; i++) /* by base, as the checks below read them */
    for (size_t j = i; j > 0 && segs[j - 1].base > segs[j].base; j--) {
      __typeof__(segs[0]) t = segs[j];
      segs[j] = segs[j - 1];
      segs[j - 1] = t;
    }
  for (size_t i = 0; i < nsegs; i++) {
    segs[i].seg_file = slurp(segs[i].seg, &segs[i].seg_len);
    segs[i].idx_file = slurp(segs[i].idx, &segs[i].idx_len);
  }
  ready = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!ready)
    setup();
  if (size > 4096)
    return 0;
  uint8_t buf[4096];
  memcpy(buf, data, size);
  if (size == LOG_HDR && !(buf[36] & 1)) {
    uint32_t crc = rill_crc32c(0, buf, 32);
    memcpy(buf + 32, &crc, 4);
  }
  uint64_t sb, first;
  if (log_manifest_decode(buf, size, &sb, &first, "fuzz") == 0) {
    uint8_t m[LOG_HDR];
    uint64_t created;
    memcpy(&created, buf + 24, 8);
    log_manifest_encode(m, sb, first, created);
    uint64_t sb2, first2;
    if (log_manifest_decode(m, sizeof m, &sb2, &first2, "fuzz") != 0 || sb2 != sb ||
        first2 != first || memcmp(m, buf, 36) != 0)
      __builtin_trap();
  }
  reset();
  put("MANIFEST", buf, size);
  for (int ro = 1; ro >= 0; ro--) {
    rill_log_t *l;
    rill_log_opts_t o = {.read_only = ro};
    int rc = rill_log_open(&l, dir, "t", &o);
    if (rc == 0) {
      uint64_t f = rill_log_first(l), next = rill_log_next(l);
      if (f > next)
        __builtin_trap(); /* a held range that runs backwards */
      /* Only segments wholly below the first record held may be gone. */
      for (size_t i = 0; i < nsegs; i++) {
        uint64_t end = i + 1 < nsegs ? segs[i + 1].base : NREC;
        if (end > f && segs[i].base < NREC && !present(i))
          __builtin_trap();
      }
      uint8_t b[512];
      for (uint64_t s = f; s < next && s < f + 2 * NREC; s++) {
        rill_log_record_t r;
        int e = rill_log_read(l, s, &r);
        if (e == RILL_ECORRUPT)
          continue;
        if (e != 0 || s >= NREC)
          __builtin_trap();
        rec_fill(b, s);
        if (r.seq != s || r.payload.len != rec_len(s) ||
            (r.payload.len && memcmp(r.payload.data, b, r.payload.len) != 0))
          __builtin_trap();
        rill_buf_release(&r.payload);
      }
      if (!ro) { /* appends go on where the records end */
        uint64_t seq;
        if (rill_log_append(l, "x", 1, &seq) != 0 || seq != next)
          __builtin_trap();
      }
      rill_log_close(l);
    } else if (rc != RILL_ECORRUPT && rc != RILL_EVERSION && rc != RILL_ENOENT) {
      __builtin_trap();
    }
  }
  return 0;
}
