/* SPDX-License-Identifier: MIT */
/*
 * ctl-data.h - peerdistctl sub-commands that move content through the daemon with the
 * public API, as an application would: publish, inject, get.
 */
#ifndef PEERDIST_CTL_DATA_H
#define PEERDIST_CTL_DATA_H

#include "ctl-cmd.h"

/* argv[0] is the sub-command's name; each returns an exit status (ctl-util.h). */
int ctl_publish_main(struct ctl_ctx *x, int argc, char **argv);
int ctl_inject_main(struct ctl_ctx *x, int argc, char **argv);
int ctl_get_main(struct ctl_ctx *x, int argc, char **argv);

extern const char ctl_publish_help[], ctl_inject_help[], ctl_get_help[];

#endif
