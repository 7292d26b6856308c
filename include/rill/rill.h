/*
 * rill: a zero-copy data-movement engine. The one header to include.
 */
#ifndef RILL_H
#define RILL_H

#include "bus.h"
#include "core.h"
#include "filter.h"
#include "ipc.h"
#include "log.h"
#include "mem.h"
#include "net.h"
#include "ring.h"

#endif /* RILL_H */
