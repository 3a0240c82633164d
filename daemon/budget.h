/* SPDX-License-Identifier: MIT */
/*
 * budget.h - what one uid may hold of the daemon: bytes of memory against the daemon-wide
 * memory budget (memory_budget), and connection slots. The module that holds memory for a
 * client charges it here and gives it back itself: content information and held bytes
 * (content-info.c, content-add.c), publish queues and content-information buffers
 * (publish.c), unread replies and large frames still arriving (server.c). No uid may take
 * more than half of what the other uids leave free, so a greedy uid is refused
 * (ERROR_NOT_ENOUGH_MEMORY) while everyone else still finds room. Loop thread only.
 */
#ifndef PEERDIST_BUDGET_H
#define PEERDIST_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

/* The default budget: the smaller of this and a quarter of the machine's memory. */
#define BUDGET_DEFAULT_MAX ((size_t)1 << 30)
/* The smallest budget configurable: a few of the largest frames (FRAME_MAX_PAYLOAD). */
#define BUDGET_MIN ((size_t)16 << 20)
/* Refusal log lines (all kinds together) per second; the next line says how many were left out. */
#define BUDGET_LOG_PER_SECOND 5

struct budget;
struct conn;

/* limit 0: BUDGET_DEFAULT_MAX or a quarter of RAM, whichever is smaller. NULL when out of memory. */
struct budget *budget_new(size_t limit);
/* Everything must have been given back (a log line says what was not). */
void budget_free(struct budget *b);
size_t budget_limit(const struct budget *b);
size_t budget_used(const struct budget *b);
size_t budget_uid_used(const struct budget *b, uid_t uid);

/*
 * Takes n bytes for c's uid. False, nothing taken and a (rate-limited) log line naming `what`,
 * when the daemon would pass its budget or the uid would hold more than half of what the
 * other uids leave free.
 */
bool budget_take(struct conn *c, size_t n, const char *what);
/* Takes n bytes whatever the limits: memory already spent (replies owed). */
void budget_force(struct conn *c, size_t n);
/* Whether c's uid holds more than it could take now (budget_force may have put it there). */
bool budget_over(const struct conn *c);
void budget_give(struct conn *c, size_t n);

/* Connection slots per uid (server.c admits and refuses; this counts). */
unsigned budget_conns(const struct budget *b, uid_t uid);
/* 0, or -1 when out of memory (the connection is then refused). */
int budget_conn_add(struct budget *b, uid_t uid);
void budget_conn_del(struct budget *b, uid_t uid);

/*
 * A refusal is about to be logged: true if this second still has room for its line; *dropped
 * then says how many lines were left out since the last one that went out.
 */
bool budget_log_pass(struct budget *b, unsigned *dropped);

#endif
