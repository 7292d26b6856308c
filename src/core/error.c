#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* One buffer a thread: the detail of the last failure, as in Aeron's C
 * client. Fixed size so that reporting an error never allocates. */
static __thread char errmsg[256];

int rill__err(int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errmsg, sizeof errmsg, fmt, ap);
  va_end(ap);
  return err;
}

int rill__err_errno(const char *fmt, ...) {
  int e = errno;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(errmsg, sizeof errmsg, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < sizeof errmsg)
    snprintf(errmsg + n, sizeof errmsg - (size_t)n, ": %s", strerror(e));
  return e > 0 ? -e : RILL_EIO;
}

const char *rill_errmsg(void) { return errmsg; }

void rill_errmsg_clear(void) { errmsg[0] = '\0'; }

const char *rill_strerror(int err) {
  switch (err) {
  case 0: return "OK: success";
  case RILL_ECORRUPT: return "ECORRUPT: data failed an integrity check";
  case RILL_EVERSION: return "EVERSION: wrong magic or unsupported version";
  case RILL_ECLOSED: return "ECLOSED: closed";
  case RILL_ELAGGED: return "ELAGGED: reader fell behind and lost records";
  case RILL_EDOUBLE: return "EDOUBLE: released twice";
  case RILL_EFOREIGN: return "EFOREIGN: pointer does not belong to this object";
  case RILL_EFULL: return "EFULL: full";
  case RILL_EPERM: return "EPERM: operation not permitted";
  case RILL_ENOENT: return "ENOENT: no such file or object";
  case RILL_EINTR: return "EINTR: interrupted";
  case RILL_EIO: return "EIO: input/output error";
  case RILL_EBADF: return "EBADF: bad file descriptor";
  case RILL_EAGAIN: return "EAGAIN: try again";
  case RILL_ENOMEM: return "ENOMEM: out of memory";
  case RILL_EACCES: return "EACCES: permission denied";
  case RILL_EBUSY: return "EBUSY: busy";
  case RILL_EEXIST: return "EEXIST: already exists";
  case RILL_EINVAL: return "EINVAL: invalid argument";
  case RILL_ENOSPC: return "ENOSPC: no space left";
  case RILL_ERANGE: return "ERANGE: out of range";
  case RILL_ENOSYS: return "ENOSYS: not implemented";
  case RILL_EMSGSIZE: return "EMSGSIZE: message too long";
  case RILL_EPROTO: return "EPROTO: protocol error";
  case RILL_ENOTSUP: return "ENOTSUP: not supported";
  case RILL_ETIMEDOUT: return "ETIMEDOUT: timed out";
  case RILL_ECONNRESET: return "ECONNRESET: connection reset";
  case RILL_ECANCELED: return "ECANCELED: canceled";
  case RILL_ENOBUFS: return "ENOBUFS: buffer too small";
  case RILL_EPIPE: return "EPIPE: nobody to receive it";
  default:
    if (err < 0 && err > -4000) { /* -errno, as rill__err_errno returns */
      const char *d = strerrordesc_np(-err);
      if (d)
        return d;
    }
    return err < 0 ? "EUNKNOWN: unknown error" : "not an error code";
  }
}
