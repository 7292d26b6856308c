/*
 * A topic's MANIFEST (segment size and first record, replaced whole by a
 * rename) and its LOCK (one writer per topic, an OFD lock).
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "log/log_internal.h"

int rill__log_manifest_write(rill_log_t *l, uint64_t first) {
  uint8_t m[LOG_HDR];
  log_manifest_encode(m, l->seg_bytes, first, rill_time_wall_ns());
  int fd = openat(l->dir_fd, "MANIFEST.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return rill__err_errno("log %s: create MANIFEST.tmp", l->path);
  int rc = 0;
  if (write(fd, m, sizeof m) != (ssize_t)sizeof m || fdatasync(fd))
    rc = rill__err_errno("log %s: write MANIFEST.tmp", l->path);
  close(fd);
  if (!rc && (renameat(l->dir_fd, "MANIFEST.tmp", l->dir_fd, "MANIFEST") || fsync(l->dir_fd)))
    rc = rill__err_errno("log %s: replace MANIFEST", l->path);
  return rc;
}

/* Reads MANIFEST into *seg_bytes and *first: 0, RILL_ENOENT when there is
 * none, or why it cannot be trusted. */
int rill__log_manifest_read(rill_log_t *l, uint64_t *seg_bytes, uint64_t *first) {
  int fd = openat(l->dir_fd, "MANIFEST", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? RILL_ENOENT : rill__err_errno("log %s: open MANIFEST", l->path);
  uint8_t m[LOG_HDR + 1];
  ssize_t n = read(fd, m, sizeof m);
  close(fd);
  if (n < 0)
    return rill__err_errno("log %s: read MANIFEST", l->path);
  return log_manifest_decode(m, (size_t)n, seg_bytes, first, l->path);
}

int rill__log_take_lock(rill_log_t *l) {
  l->lock_fd = openat(l->dir_fd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (l->lock_fd < 0)
    return rill__err_errno("log %s: open LOCK", l->path);
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
  if (fcntl(l->lock_fd, F_OFD_SETLK, &fl) != 0) {
    if (errno == EAGAIN || errno == EACCES)
      return rill__err(RILL_EBUSY, "log %s: another writer holds the topic", l->path);
    return rill__err_errno("log %s: lock LOCK", l->path);
  }
  return 0;
}
