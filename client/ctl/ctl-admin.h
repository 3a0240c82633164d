/* SPDX-License-Identifier: MIT */
/*
 * ctl-admin.h - peerdistctl sub-commands that speak to peerdistd in its own messages
 * (proto/peerdist.proto) rather than through <peerdist.h>: status, tags, flush, cache, peers,
 * key.
 * The administration verbs (tags --all, flush --all / --uid, cache set, peers, key) are for root
 * and group peerdist; anyone else gets ERROR_ACCESS_DENIED and says so.
 */
#ifndef PEERDIST_CTL_ADMIN_H
#define PEERDIST_CTL_ADMIN_H

#include "ctl-cmd.h"

/* argv[0] is the sub-command's name; each returns an exit status (ctl-util.h). */
int ctl_status_main(struct ctl_ctx *x, int argc, char **argv);
int ctl_tags_main(struct ctl_ctx *x, int argc, char **argv);
int ctl_flush_main(struct ctl_ctx *x, int argc, char **argv);
int ctl_cache_main(struct ctl_ctx *x, int argc, char **argv);
int ctl_peers_main(struct ctl_ctx *x, int argc, char **argv);
int ctl_key_main(struct ctl_ctx *x, int argc, char **argv);

#endif
