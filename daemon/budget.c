/* SPDX-License-Identifier: MIT */
/*
 * budget.c - the memory budget and connection slots per uid (budget.h): one account per uid
 * that holds memory or connections, in a small hash table, dropped once it holds neither.
 */
#include "budget.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"

#define BUDGET_BUCKETS 256

struct account {
    uid_t uid;
    size_t bytes;
    unsigned conns;
    struct account *next;
};

struct budget {
    size_t limit, used;
    struct account *buckets[BUDGET_BUCKETS];
    time_t log_second;
    unsigned log_lines, log_dropped;
};

static size_t default_limit(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0)
        return BUDGET_DEFAULT_MAX;
    size_t quarter = (size_t)pages / 4 * (size_t)page;
    if (quarter < BUDGET_MIN)
        quarter = BUDGET_MIN;
    return quarter < BUDGET_DEFAULT_MAX ? quarter : BUDGET_DEFAULT_MAX;
}

struct budget *budget_new(size_t limit)
{
    struct budget *b = calloc(1, sizeof(*b));
    if (b)
        b->limit = limit ? limit : default_limit();
    return b;
}

void budget_free(struct budget *b)
{
    if (!b)
        return;
    if (b->used)
        log_warn("memory budget: %zu bytes were never given back", b->used);
    for (unsigned i = 0; i < BUDGET_BUCKETS; i++)
        while (b->buckets[i]) {
            struct account *a = b->buckets[i];
            b->buckets[i] = a->next;
            free(a);
        }
    free(b);
}

size_t budget_limit(const struct budget *b)
{
    return b->limit;
}

size_t budget_used(const struct budget *b)
{
    return b->used;
}

static struct account **slot(const struct budget *b, uid_t uid)
{
    struct account *const *pp = &b->buckets[uid % BUDGET_BUCKETS];
    while (*pp && (*pp)->uid != uid)
        pp = &(*pp)->next;
    return (struct account **)pp;
}

static struct account *account_get(struct budget *b, uid_t uid)
{
    struct account **pp = slot(b, uid);
    if (!*pp && (*pp = calloc(1, sizeof(**pp))))
        (*pp)->uid = uid;
    return *pp;
}

static void account_drop_if_empty(struct budget *b, struct account *a)
{
    if (a->bytes || a->conns)
        return;
    struct account **pp = slot(b, a->uid);
    *pp = a->next;
    free(a);
}

size_t budget_uid_used(const struct budget *b, uid_t uid)
{
    const struct account *a = *slot(b, uid);
    return a ? a->bytes : 0;
}

/* What a's uid may hold in all: half of what the other uids leave free. */
static size_t share(const struct budget *b, const struct account *a)
{
    size_t others = b->used - a->bytes;
    return others >= b->limit ? 0 : (b->limit - others) / 2;
}

static bool fits(const struct budget *b, const struct account *a, size_t n)
{
    return n <= b->limit - (b->used < b->limit ? b->used : b->limit) && a->bytes + n >= a->bytes &&
        a->bytes + n <= share(b, a);
}

bool budget_log_pass(struct budget *b, unsigned *dropped)
{
    time_t now = time(NULL);
    if (now != b->log_second) {
        b->log_second = now;
        b->log_lines = 0;
    }
    if (b->log_lines >= BUDGET_LOG_PER_SECOND) {
        b->log_dropped++;
        return false;
    }
    b->log_lines++;
    *dropped = b->log_dropped;
    b->log_dropped = 0;
    return true;
}

bool budget_take(struct conn *c, size_t n, const char *what)
{
    struct budget *b = c->d->budget;
    if (n == 0)
        return true;
    struct account *a = account_get(b, c->uid);
    if (a && fits(b, a, n)) {
        a->bytes += n;
        b->used += n;
        return true;
    }
    unsigned dropped;
    char more[48] = "";
    if (budget_log_pass(b, &dropped)) {
        if (dropped)
            snprintf(more, sizeof(more), " (%u more not logged)", dropped);
        log_warn(CONN_FMT ": %s refused (ERROR_NOT_ENOUGH_MEMORY): %zu bytes more would pass the "
                          "uid's share of the memory budget (it holds %zu; all uids %zu of %zu; "
                          "a uid may take half of what the others leave free)%s",
            CONN_ARGS(c), what, n, a ? a->bytes : 0, b->used, b->limit, more);
    }
    if (a)
        account_drop_if_empty(b, a);
    return false;
}

void budget_force(struct conn *c, size_t n)
{
    struct budget *b = c->d->budget;
    struct account *a = account_get(b, c->uid);
    if (!a) {
        log_error(CONN_FMT ": out of memory counting %zu bytes against the memory budget",
            CONN_ARGS(c), n);
        return; /* budget_give will find no account and ignore the bytes */
    }
    a->bytes += n;
    b->used += n;
}

bool budget_over(const struct conn *c)
{
    const struct budget *b = c->d->budget;
    const struct account *a = *slot(b, c->uid);
    return a && a->bytes && !fits(b, a, 0);
}

void budget_give(struct conn *c, size_t n)
{
    struct budget *b = c->d->budget;
    if (n == 0)
        return;
    struct account *a = *slot(b, c->uid);
    if (!a || a->bytes < n) {
        log_error(CONN_FMT ": memory budget: %zu bytes given back, %zu held", CONN_ARGS(c), n,
            a ? a->bytes : 0);
        n = a ? a->bytes : 0;
    }
    if (!a)
        return;
    a->bytes -= n;
    b->used -= n;
    account_drop_if_empty(b, a);
}

unsigned budget_conns(const struct budget *b, uid_t uid)
{
    const struct account *a = *slot(b, uid);
    return a ? a->conns : 0;
}

int budget_conn_add(struct budget *b, uid_t uid)
{
    struct account *a = account_get(b, uid);
    if (!a)
        return -1;
    a->conns++;
    return 0;
}

void budget_conn_del(struct budget *b, uid_t uid)
{
    struct account *a = *slot(b, uid);
    if (!a || a->conns == 0)
        return;
    a->conns--;
    account_drop_if_empty(b, a);
}
