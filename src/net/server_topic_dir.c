/*
 * Topics on disk: TOPICS lists data_dir a page at a time, TOPIC_INFO
 * describes one topic, TOPIC_DELETE removes one; at start, the disk budget
 * is charged with what the topics hold and half-deleted directories go.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "net/server_internal.h"

/* Whether a file of a topic's directory is one max_disk counts: a
 * segment or an index (the MANIFEST and LOCK are a few bytes). */
static bool counted_file(const char *name) {
  size_t n = strlen(name);
  return n > 4 && (!strcmp(name + n - 4, ".seg") || !strcmp(name + n - 4, ".idx"));
}

/* Removes a topic's directory: its files (a topic has no subdirectory),
 * then itself. *freed (may be NULL) gets the bytes of the counted files
 * removed. */
static int topic_dir_remove(const char *path, uint64_t *freed) {
  DIR *d = opendir(path);
  if (!d)
    return rill__err_errno("server: cannot open %s", path);
  int rc = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    struct stat st;
    uint64_t len = freed && counted_file(e->d_name) && fstatat(dirfd(d), e->d_name, &st, 0) == 0
                       ? (uint64_t)st.st_size
                       : 0;
    if (unlinkat(dirfd(d), e->d_name, 0) != 0) {
      if (!rc)
        rc = rill__err_errno("server: cannot remove %s/%s", path, e->d_name);
    } else if (freed) {
      *freed += len;
    }
  }
  closedir(d);
  if (!rc && rmdir(path) != 0)
    rc = rill__err_errno("server: cannot remove %s", path);
  return rc;
}

/* Directories left by deletions a crash interrupted: names that start
 * with '.' are never topics, so nothing else would ever remove them. */
void rill__srv_deleted_dirs_remove(const char *data_dir) {
  DIR *d = opendir(data_dir);
  if (!d)
    return;
  char path[PATH_MAX];
  for (struct dirent *e; (e = readdir(d));)
    if (!strncmp(e->d_name, ".deleted-", 9) &&
        snprintf(path, sizeof path, "%s/%s", data_dir, e->d_name) < (int)sizeof path)
      topic_dir_remove(path, NULL);
  closedir(d);
}

/* Charges max_disk's budget with what the topics in data_dir hold at
 * start (their segment and index files' lengths, as the logs count
 * them), and says so when that is already past the limit or the
 * filesystem cannot hold the limit. */
void rill__srv_disk_scan(rill_server_t *s) {
  DIR *d = opendir(s->o.data_dir);
  if (!d)
    return;
  uint64_t sum = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (!rill_net_name_ok(e->d_name, strlen(e->d_name)))
      continue;
    int tfd = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *td = tfd >= 0 ? fdopendir(tfd) : NULL;
    if (!td) {
      if (tfd >= 0)
        close(tfd);
      continue;
    }
    struct stat st;
    for (struct dirent *f; (f = readdir(td));)
      if (counted_file(f->d_name) && fstatat(dirfd(td), f->d_name, &st, 0) == 0)
        sum += (uint64_t)st.st_size;
    closedir(td);
  }
  closedir(d);
  rill_log_budget_charge(&s->disk, sum);
  uint64_t max = s->disk.limit;
  struct statvfs vfs;
  if (max && sum >= max)
    rill__srv_log(
        s, L_NOSPC, RILL_SERVER_LOG_WARN,
        "the topics in %s hold %llu bytes, max_disk is %llu: publishes that need room are "
        "refused until retention or deleted topics free some",
        s->o.data_dir, (unsigned long long)sum, (unsigned long long)max);
  else if (max && statvfs(s->o.data_dir, &vfs) == 0 &&
           (uint64_t)vfs.f_bavail * vfs.f_frsize < max - sum)
    rill__srv_log(
        s, L_NOSPC, RILL_SERVER_LOG_WARN,
        "max_disk is %llu bytes, but %s has %llu bytes free for the %llu more it allows: the "
        "disk fills first",
        (unsigned long long)max, s->o.data_dir,
        (unsigned long long)((uint64_t)vfs.f_bavail * vfs.f_frsize),
        (unsigned long long)(max - sum));
}

/* Is path (relative to dfd) a directory, as a topic's is? */
static bool topic_dir(int dfd, const char *path) {
  struct stat st;
  return fstatat(dfd, path, &st, 0) == 0 && S_ISDIR(st.st_mode);
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of a TOPICS page as a max-heap by name: the smallest names
 * seen so far that fit in the page, so a directory of any size costs the
 * memory of one page, not of every name in it. */
struct page {
  char **names;
  size_t n, cap;
  size_t bytes, room; /* the answer's bytes (a length byte and the name each); max_body */
  char *bound;        /* the smallest name left out for want of room, or NULL: it
                       * and every name after it belong to later pages */
};

static void heap_up(char **h, size_t i) {
  for (; i && strcmp(h[(i - 1) / 2], h[i]) < 0; i = (i - 1) / 2) {
    char *x = h[i];
    h[i] = h[(i - 1) / 2];
    h[(i - 1) / 2] = x;
  }
}

static void heap_down(char **h, size_t n, size_t i) {
  for (;;) {
    size_t m = i, l = 2 * i + 1, r = l + 1;
    if (l < n && strcmp(h[l], h[m]) > 0)
      m = l;
    if (r < n && strcmp(h[r], h[m]) > 0)
      m = r;
    if (m == i)
      return;
    char *x = h[i];
    h[i] = h[m];
    h[m] = x;
    i = m;
  }
}

/* Leaves name out of the page: the bound moves down to it if smaller. */
static void page_leave(struct page *p, char *name) {
  if (!p->bound || strcmp(name, p->bound) < 0) {
    rill__free(p->bound);
    p->bound = name;
  } else {
    rill__free(name);
  }
}

/* Offers name (taken: kept or freed) to the page: kept when it comes
 * before the bound, the largest names then leaving until what is kept
 * fits. What is kept is always every name seen below the bound, and that
 * fits: the page is the longest run of names from the start that fits. */
static int page_offer(struct page *p, const char *name) {
  if (p->bound && strcmp(name, p->bound) >= 0)
    return 0;
  size_t len = strlen(name);
  char *d = rill__srv_str_dup(name);
  if (!d)
    return RILL_ENOMEM;
  if (p->n == p->cap) {
    size_t cap = p->cap ? 2 * p->cap : 64;
    char **nn = rill__realloc(p->names, cap * sizeof *nn);
    if (!nn) {
      rill__free(d);
      return RILL_ENOMEM;
    }
    p->names = nn;
    p->cap = cap;
  }
  p->names[p->n] = d;
  heap_up(p->names, p->n++);
  p->bytes += 1 + len;
  while (p->bytes > p->room) {
    char *top = p->names[0];
    p->names[0] = p->names[--p->n];
    heap_down(p->names, p->n, 0);
    p->bytes -= 1 + strlen(top);
    page_leave(p, top);
  }
  return 0;
}

/* TOPICS: the names of the topics in data_dir (open or not), sorted, after
 * the body's name (empty: from the first), as many as fit in max_body;
 * MORE when some are left for a next TOPICS after the last one sent. The
 * directory is read without reg (it holds no lock the loops take), and
 * only the page's names are kept. */
void rill__srv_on_topics(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  rill_server_t *s = lp->s;
  char after[RILL_NET_MAX_NAME + 1] = {0};
  if (f->len && !rill_net_name_ok(f->body, f->len)) {
    rill__srv_send_error(lp, c, 0, f->id, RILL_EINVAL, "TOPICS: the body is empty or a topic name");
    return;
  }
  memcpy(after, f->body, f->len);
  DIR *d = opendir(s->o.data_dir);
  if (!d) {
    rill__srv_send_error(lp, c, 0, f->id, rill__err_errno("TOPICS: cannot read the data directory"),
                         rill_errmsg());
    return;
  }
  struct page pg = {.room = s->o.max_body};
  int rc = 0;
  for (struct dirent *e; !rc && (e = readdir(d));) {
    if ((f->len && strcmp(e->d_name, after) <= 0) ||
        !rill_net_name_ok(e->d_name, strlen(e->d_name)) ||
        (pg.bound && strcmp(e->d_name, pg.bound) >= 0) || !topic_dir(dirfd(d), e->d_name))
      continue;
    rc = page_offer(&pg, e->d_name);
  }
  closedir(d);
  uint8_t *body = NULL;
  size_t len = 0;
  if (!rc) {
    if (pg.n)
      qsort(pg.names, pg.n, sizeof *pg.names, name_cmp);
    if (pg.bytes && !(body = rill__malloc(pg.bytes)))
      rc = RILL_ENOMEM;
    for (size_t i = 0; !rc && i < pg.n; i++) {
      size_t nl = strlen(pg.names[i]);
      body[len] = (uint8_t)nl;
      memcpy(body + len + 1, pg.names[i], nl);
      len += 1 + nl;
    }
  }
  if (rc)
    rill__srv_send_error(lp, c, 0, f->id, rc, "TOPICS: no memory");
  else
    rill__srv_send_frame(lp, c, RILL_F_TOPICS, pg.bound ? RILL_FF_MORE : 0, 0, f->id, pg.n, body,
                         (uint32_t)len);
  rill__free(body);
  for (size_t i = 0; i < pg.n; i++)
    rill__free(pg.names[i]);
  rill__free(pg.names);
  rill__free(pg.bound);
}

/* Bytes the files of a topic's directory take on disk (blocks, so a
 * segment's room reserved by fallocate counts, a sparse hole does not). */
static uint64_t topic_disk_bytes(const char *path) {
  DIR *d = opendir(path);
  uint64_t sum = 0;
  if (!d)
    return 0;
  struct stat st;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &st, 0) == 0)
      sum += (uint64_t)st.st_blocks * 512u;
  closedir(d);
  return sum;
}

/* TOPIC_INFO: a topic's sequences, sizes, retention and users (FORMATS.md
 * has the body). A topic that is not open is opened read-only for it and
 * closed again, so asking costs no descriptors afterwards. reg is held
 * only to find an open topic (and take a reference) and read its users:
 * the disk is read without it, so a slow directory or a big recovery scan
 * holds up no BIND, SUBSCRIBE or ASK on any loop. */
void rill__srv_on_topic_info(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  rill_server_t *s = lp->s;
  if (!rill_net_name_ok(f->body, f->len)) {
    rill__srv_send_error(lp, c, 0, f->id, RILL_EINVAL, "TOPIC_INFO: not a topic name");
    return;
  }
  char name[RILL_NET_MAX_NAME + 1] = {0}, path[PATH_MAX];
  memcpy(name, f->body, f->len);
  snprintf(path, sizeof path, "%s/%s", s->o.data_dir, name);
  int rc = 0;
  uint32_t subs = 0, binders = 0;
  rill_log_stats_t st;
  uint64_t seg_bytes = 0;
  pthread_mutex_lock(&s->reg);
  struct topic *t = rill__srv_topic_find_open(s, name, strlen(name));
  if (t) {
    topic_ref(t); /* under reg: a delete meanwhile cannot free it */
    binders = t->binders;
    for (uint32_t i = 0; i < s->nloops; i++) /* a snapshot: relaxed, as for the metrics */
      subs += __atomic_load_n(&t->per[i].nsubs, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&s->reg);
  rill_log_t *log = t ? t->log : NULL;
  /* Not open: opened read-only here, outside reg. A BIND that opens it
   * meanwhile is a writer beside this reader, which the log allows. */
  if (!t && !topic_dir(AT_FDCWD, path))
    rc = rill__err(RILL_ENOENT, "TOPIC_INFO: no topic '%s'", name);
  else if (!t)
    rc = rill_log_open(&log, s->o.data_dir, name,
                       &(rill_log_opts_t){.read_only = true, .no_create = true});
  if (!rc) {
    rill_log_stats(log, &st);
    seg_bytes = (uint64_t)rill_log_max_payload(log) + 96; /* a segment's and a record's header */
    if (!t)
      rill_log_close(log);
  }
  if (t)
    topic_put(s, t);
  if (rc) {
    rill__srv_send_error(lp, c, 0, f->id, rc, rill_errmsg());
    return;
  }
  uint8_t b[RILL_NET_TOPIC_INFO_SIZE];
  rill__put64(b, st.first);
  rill__put64(b + 8, st.next);
  rill__put64(b + 16, st.bytes);
  rill__put64(b + 24, topic_disk_bytes(path));
  rill__put64(b + 32, seg_bytes);
  rill__put64(b + 40, st.segments);
  rill_log_opts_t lo = {0};
  rill__srv_topic_log_opts(s, name, strlen(name), &lo);
  rill__put64(b + 48, lo.retain_bytes);
  rill__put64(b + 56, lo.retain_count);
  rill__put64(b + 64, lo.retain_age_ns);
  rill__put32(b + 72, subs);
  rill__put32(b + 76, binders);
  rill__srv_send_frame(lp, c, RILL_F_TOPIC_INFO, 0, 0, f->id, 0, b, sizeof b);
}

/* TOPIC_DELETE: refused (EBUSY) while any connection subscribes to the
 * topic or has a channel bound to it; otherwise it leaves the registry at
 * once (a BIND or SUBSCRIBE of the name after this makes a new topic),
 * its directory is renamed out of the way under reg, so nothing opens it
 * half removed, and then removed. An open topic's log stays open, out of
 * the registry, until its last user lets go (topic_put): requests running
 * on other loops may hold it, and they find a log whose files are gone. */
void rill__srv_on_topic_delete(struct loop *lp, struct conn *c, const rill_frame_t *f) {
  rill_server_t *s = lp->s;
  if (!rill_net_name_ok(f->body, f->len)) {
    rill__srv_send_error(lp, c, 0, f->id, RILL_EINVAL, "TOPIC_DELETE: not a topic name");
    return;
  }
  char name[RILL_NET_MAX_NAME + 1] = {0}, path[PATH_MAX], gone[PATH_MAX];
  memcpy(name, f->body, f->len);
  snprintf(path, sizeof path, "%s/%s", s->o.data_dir, name);
  int rc = 0;
  struct topic *dead = NULL;
  pthread_mutex_lock(&s->reg);
  struct topic *t = rill__srv_topic_find_open(s, name, strlen(name));
  /* Relaxed: a SUBSCRIBE counts itself under reg, which we hold, so none
   * is missed; a count going down meanwhile only makes us refuse. */
  uint32_t subs = 0;
  for (uint32_t i = 0; t && i < s->nloops; i++)
    subs += __atomic_load_n(&t->per[i].nsubs, __ATOMIC_RELAXED);
  if (t && (subs || t->binders)) {
    rc = rill__err(RILL_EBUSY,
                   "TOPIC_DELETE: topic '%s' has %u subscribers and %u bound publishers; they "
                   "must go first",
                   name, subs, t->binders);
    goto unlock_reg;
  }
  if (!t && !topic_dir(AT_FDCWD, path)) {
    rc = rill__err(RILL_ENOENT, "TOPIC_DELETE: no topic '%s'", name);
    goto unlock_reg;
  }
  snprintf(gone, sizeof gone, "%s/.deleted-%016llx-%llu", s->o.data_dir,
           (unsigned long long)s->server_id, (unsigned long long)++s->deletions);
  if (rename(path, gone) != 0) {
    rc = rill__err_errno("TOPIC_DELETE: cannot move %s away", path);
    goto unlock_reg;
  }
  if (t) {
    /* On the dead list until its last user lets go (topic_put), still
     * counted in ntopics meanwhile: a FETCH on another loop, a stream, an
     * ack waiting, a wakeup or the syncer may still use it. */
    rill__srv_topic_unlink(s, t);
    t->deleted = true;
    t->next = s->dead_topics;
    s->dead_topics = t;
    dead = t;
  }
unlock_reg:
  pthread_mutex_unlock(&s->reg);
  uint64_t freed = 0;
  if (!rc) {
    /* Credited now, as the files go; an open topic's log keeps their
     * blocks until its last user lets go, just after (see DESIGN, "Topics"). */
    rc = topic_dir_remove(gone, &freed);
    rill_log_budget_credit(&s->disk, freed);
  }
  if (dead)
    topic_put(s, dead); /* the registry's: its log closes now, or with its last user */
  if (rc) {
    rill__srv_send_error(lp, c, 0, f->id, rc, rill_errmsg());
  } else {
    char peer[64];
    rill__srv_log(s, L_TOPIC, RILL_SERVER_LOG_INFO, "topic '%s' deleted (asked by %s)", name,
                  rill__srv_peer_of(c->fd, peer, sizeof peer));
    rill__srv_send_frame(lp, c, RILL_F_ACK, 0, 0, f->id, 0, NULL, 0);
  }
}
