/*
 * Channels seen from outside, without attaching: removal, info, listing.
 */
#include "ipc/channel_internal.h"

int rill_ipc_chan_unlink(const char *name) { return rill__ipc_shm_unlink(KIND, name); }

int rill_ipc_chan_info(const char *name, rill_ipc_chan_info_t *info) {
  if (!info)
    return rill__err(RILL_EINVAL, "ipc channel info: info is NULL");
  return rill__ipc_info(KIND, name, info);
}

struct lister {
  rill_ipc_chan_list_cb fn;
  void *ctx;
  rill_ipc_chan_info_t info; /* the segment of the call */
};

static int list_one(void *arg) {
  struct lister *l = arg;
  return l->fn(l->ctx, &l->info);
}

int rill_ipc_chan_list(rill_ipc_chan_list_cb fn, void *ctx) {
  if (!fn)
    return rill__err(RILL_EINVAL, "ipc channel list: fn is NULL");
  struct lister l = {.fn = fn, .ctx = ctx};
  return rill__ipc_list(KIND, "ipc channel list", &l.info, list_one, &l);
}
