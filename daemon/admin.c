/* SPDX-License-Identifier: MIT */
/*
 * admin.c - administration requests (see admin.h): AdminFlush handed to flush.c's slices, and
 * the server secret. Each is for admins only; a refusal is ERROR_ACCESS_DENIED and a log line
 * naming the uid, pid and request. Secrets never reach a log line, only their fingerprint.
 */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <peerdist.h>

#include "budget.h"
#include "flush.h"
#include "log.h"
#include "publish.h"
#include "secret.h"
#include "winerr.h"

struct admin_state {
    struct secret secret; /* the passphrase publications made from now on derive from */
};

int admin_init(struct daemon *d)
{
    struct admin_state *as = calloc(1, sizeof(*as));
    if (!as)
        return -1;
    d->admin = as;
    return secret_load_raw(d->cfg.state_dir, &as->secret);
}

void admin_free(struct daemon *d)
{
    if (!d->admin)
        return;
    OPENSSL_cleanse(d->admin, sizeof(struct admin_state));
    free(d->admin);
    d->admin = NULL;
}

/* True if c may run `what`; otherwise it is answered ERROR_ACCESS_DENIED and logged. */
static bool admin_allowed(struct conn *c, uint64_t id, const char *what)
{
    if (c->admin)
        return true;
    unsigned dropped;
    if (budget_log_pass(c->d->budget, &dropped)) {
        char more[48] = "";
        if (dropped)
            snprintf(more, sizeof(more), " (%u more not logged)", dropped);
        log_warn(CONN_FMT ": %s refused: only root and group " SERVER_ADMIN_GROUP
                          " may administer peerdistd%s",
            CONN_ARGS(c), what, more);
    }
    conn_reply_status(c, id, ERROR_ACCESS_DENIED);
    return false;
}

static void handle_admin_flush(struct conn *c, uint64_t id, const Peerdist__AdminFlushRequest *f)
{
    if (!admin_allowed(c, id, "admin flush"))
        return;
    if (!f->all && f->tag.len != 0 && f->tag.len != STORE_TAG_SIZE) {
        log_warn(CONN_FMT ": admin flush with a tag of %zu bytes (16, or none for every tag)",
            CONN_ARGS(c), f->tag.len);
        conn_reply_status(c, id, ERROR_INVALID_PARAMETER);
        return;
    }
    if (f->all && (f->uid != 0 || f->tag.len != 0)) {
        log_warn(CONN_FMT ": admin flush of everything names a uid or a tag too", CONN_ARGS(c));
        conn_reply_status(c, id, ERROR_INVALID_PARAMETER);
        return;
    }
    enum store_admin_scope scope = f->all ? STORE_ADMIN_ALL
        : f->tag.len == STORE_TAG_SIZE    ? STORE_ADMIN_UID_TAG
                                          : STORE_ADMIN_UID;
    if (scope == STORE_ADMIN_ALL)
        log_info(CONN_FMT ": admin flush of the whole cache", CONN_ARGS(c));
    else
        log_info(CONN_FMT ": admin flush of uid %u's labels (%s)", CONN_ARGS(c), (unsigned)f->uid,
            scope == STORE_ADMIN_UID_TAG ? "one tag" : "every tag");
    flush_admin_queue(c, id, scope, f->uid, scope == STORE_ADMIN_UID_TAG ? f->tag.data : NULL);
}

static void key_reply(struct conn *c, uint64_t id, const struct secret *s, bool with_secret)
{
    char fp[SECRET_FINGERPRINT_LEN + 1];
    secret_fingerprint(s, fp);
    Peerdist__KeyReply kr = PEERDIST__KEY_REPLY__INIT;
    kr.fingerprint = fp;
    kr.secret_bytes = (uint32_t)s->len;
    if (with_secret) {
        kr.secret.data = (uint8_t *)s->bytes;
        kr.secret.len = s->len;
    }
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.body_case = PEERDIST__REPLY__BODY_KEY;
    r.key = &kr;
    conn_send(c, &r);
}

/*
 * KEY_OP_SET: the file first (atomically), then the keys publications derive from. Streams
 * already open and publications already made keep the secret they were made with.
 */
static void key_set(struct conn *c, uint64_t id, const Peerdist__KeyRequest *k)
{
    struct daemon *d = c->d;
    struct admin_state *as = d->admin;
    if (k->secret.len == 0 || k->secret.len > ADMIN_KEY_MAX_BYTES) {
        log_warn(CONN_FMT ": key set with %zu bytes refused (1..%u)", CONN_ARGS(c), k->secret.len,
            ADMIN_KEY_MAX_BYTES);
        conn_reply_status(c, id, ERROR_INVALID_PARAMETER);
        return;
    }
    struct secret s;
    struct ci_secret ks1, ks2;
    memcpy(s.bytes, k->secret.data, k->secret.len);
    s.len = k->secret.len;
    if (secret_derive(&s, &ks1, &ks2) != 0) {
        conn_reply_status(c, id, ERROR_INTERNAL_ERROR);
        goto out;
    }
    errno = 0;
    if (secret_store(d->cfg.state_dir, &s) != 0) {
        uint32_t status = errno ? winerr_from_write_errno(errno) : ERROR_INVALID_PARAMETER;
        log_error(CONN_FMT ": key set failed: the server secret is unchanged", CONN_ARGS(c));
        conn_reply_status(c, id, status);
        goto out;
    }
    publish_set_keys(d, &ks1, &ks2);
    as->secret = s;
    char fp[SECRET_FINGERPRINT_LEN + 1];
    secret_fingerprint(&s, fp);
    log_info(CONN_FMT ": server secret set (%zu bytes, fingerprint %s); publications made from "
                      "now on use it",
        CONN_ARGS(c), s.len, fp);
    key_reply(c, id, &s, false);
out:
    OPENSSL_cleanse(&s, sizeof(s));
    OPENSSL_cleanse(&ks1, sizeof(ks1));
    OPENSSL_cleanse(&ks2, sizeof(ks2));
}

static void handle_key(struct conn *c, uint64_t id, const Peerdist__KeyRequest *k)
{
    static const char *const names[] = {"key show", "key set", "key export"};
    const char *what = (unsigned)k->op < 3 ? names[k->op] : "key (unknown operation)";
    if (!admin_allowed(c, id, what))
        return;
    struct admin_state *as = c->d->admin;
    switch (k->op) {
    case PEERDIST__KEY_OP__KEY_OP_SHOW:
        if (k->secret.len) {
            conn_reply_status(c, id, ERROR_INVALID_PARAMETER);
            return;
        }
        key_reply(c, id, &as->secret, false);
        return;
    case PEERDIST__KEY_OP__KEY_OP_SET: key_set(c, id, k); return;
    case PEERDIST__KEY_OP__KEY_OP_EXPORT:
        if (k->secret.len) {
            conn_reply_status(c, id, ERROR_INVALID_PARAMETER);
            return;
        }
        log_info(CONN_FMT ": server secret exported", CONN_ARGS(c));
        key_reply(c, id, &as->secret, true);
        return;
    default:
        log_warn(CONN_FMT ": key request with unknown operation %d", CONN_ARGS(c), (int)k->op);
        conn_reply_status(c, id, ERROR_INVALID_PARAMETER);
        return;
    }
}

bool admin_dispatch(struct conn *c, const Peerdist__Request *req)
{
    switch (req->body_case) {
    case PEERDIST__REQUEST__BODY_ADMIN_FLUSH:
        handle_admin_flush(c, req->id, req->admin_flush);
        return true;
    case PEERDIST__REQUEST__BODY_KEY: handle_key(c, req->id, req->key); return true;
    default: return false;
    }
}
