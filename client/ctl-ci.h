/* SPDX-License-Identifier: MIT */
/* ctl-ci.h - peerdistctl sub-commands for content information: `hash` (generate V1 or V2
 * from a file) and `ci-dump` (parse and print). argv[0] is the sub-command's name; each
 * returns the exit code: 0 success, 1 failure, 2 bad usage. */
#ifndef PEERDIST_CTL_CI_H
#define PEERDIST_CTL_CI_H

struct ctl_ctx;
int ctl_hash_main(struct ctl_ctx *x, int argc, char **argv);
int ctl_ci_dump_main(struct ctl_ctx *x, int argc, char **argv);

#endif
