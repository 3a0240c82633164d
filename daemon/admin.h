/* SPDX-License-Identifier: MIT */
/*
 * admin.h - the administration requests (AdminFlush, Key): who may call them (root and the
 * members of group peerdist, supplementary groups included: server.c sets conn.admin), the
 * refusal of everyone else, and the server secret's show, set and export.
 */
#ifndef PEERDIST_ADMIN_H
#define PEERDIST_ADMIN_H

#include <stdbool.h>

#include "daemon.h"

/* Largest secret KEY_OP_SET stores (proto/README.md). */
#define ADMIN_KEY_MAX_BYTES 1024

/* Reads the server secret in use (after publish_init made it). 0, or -1 (logged). */
int admin_init(struct daemon *d);
void admin_free(struct daemon *d);
/* Handles the request if it is an administration one (then true: it replies, now or later). */
bool admin_dispatch(struct conn *c, const Peerdist__Request *req);

#endif
