/* SPDX-License-Identifier: MIT */
/*
 * publish.c - PeerDistServer* in the daemon (see publish.h). A stream feeds
 * its bytes, in order, to content-information generators on the worker pool
 * (V1, plus V2 for a version-2 stream, in one pass). A version-1 stream has
 * one lane (SHA-256 is not what limits it: the bytes' trip is). A version-2
 * stream has two lanes that run at once on the two workers, each computing
 * every other V2 segment's digests (SHA-512) with lane generators
 * (ci_gen_new_lane) over the ends lane 0 finds first (ci_cutter, a job of its
 * own, so lane 1 hashes a part while lane 0 does); lane 1 also hashes V1,
 * about what the cutter costs lane 0. ci_gen_finish_lanes assembles what one
 * generator would give. A completed stream becomes a publication keyed by
 * (uid, content id) that keeps the descriptions (hashes, segment secrets),
 * never the bytes.
 * Content-information handles hand out serialized bytes from a cursor.
 * Limits and choices: docs/publishing.md.
 */
#include "publish.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <openssl/crypto.h>
#include <peerdist.h>

#include "budget.h"
#include "contentinfo.h"
#include "log.h"
#include "secret.h"
#include "worker.h"

/* Limits (docs/publishing.md). */
#define PUB_MAX_ID_BYTES (64u * 1024)              /* content identifier */
#define PUB_MAX_STREAMS_PER_CONN 1024              /* open stream handles */
#define PUB_MAX_CI_HANDLES_PER_CONN 4096           /* open content-information handles */
#define PUB_MAX_PUBLICATIONS_PER_CONN 65536        /* publications a connection owns */
#define PUB_MAX_QUEUED_BYTES_PER_CONN (256u << 20) /* stream bytes waiting to be hashed */
#define PUB_BUCKETS 4096                           /* publication hash table */
/*
 * An AddToStream part is answered as soon as it is queued while the stream has
 * at most this many bytes waiting to be hashed, so the caller's next part
 * travels while this one hashes (Windows allows one AddToStream in flight per
 * stream). Past it, a part waits: it is answered once the bytes waiting up to
 * and with it are back within the bound (the parts before it hashed), or once
 * it is hashed, whichever comes first: that is the backpressure. Waiting only
 * for the backlog to shrink keeps the lanes fed; waiting for the part itself
 * to be hashed let the queue run dry before the caller's next part came.
 */
#define PUB_EARLY_ACK_BYTES (8u << 20)

struct pub_conn;
struct stream;

struct publication {
    uid_t uid;
    uint8_t *id;
    size_t id_len;
    uint32_t version; /* 1 or 2 */
    bool complete;
    struct ci_info *v1, *v2; /* whole content, once complete (v2 only for version 2) */
    struct pub_conn *owner;
    struct stream *stream; /* the stream writing it, until it completes */
    struct publication *hnext;
    LIST_ENTRY(publication) owner_link;
};

enum preq_kind { PREQ_ADD, PREQ_COMPLETE };

/* A queued AddToStream part or CompleteStream, answered after its jobs (one per lane). */
struct preq {
    enum preq_kind kind;
    uint64_t id;
    uint8_t *data;
    size_t len;
    uint32_t status[2]; /* set by each lane's job */
    bool done[2];       /* each lane has hashed it (loop thread) */
    bool scanned;       /* version 2: lane 0 has found its segment ends */
    bool acked;         /* answered when queued (PUB_EARLY_ACK_BYTES) */
    size_t *ends;       /* version 2: segment ends in data, found by lane 0 for both lanes */
    size_t n_ends;
    STAILQ_ENTRY(preq) link;
};

struct stream;

/* A lane's job argument: which stream, which lane, and for lane 0 whether the job finds
 * the part's V2 segment ends (a job of its own, so lane 1 may hash the part meanwhile). */
struct lane {
    struct stream *s;
    int k;
    bool scan;
};

/*
 * A stream. refs: one for the connection's list (dropped at close) and one per
 * job on a worker. Parts wait in queue until lane 0 takes them, then in
 * inflight until every lane has hashed them, and are answered in order. A
 * version-1 stream has lane 0 alone. For version 2, lane 0 first finds a
 * part's segment ends (a job), then hashes it (another); lane 1 hashes it once
 * the ends are found, and runs the CompleteStream after lane 0 is done with it
 * (so with every part). Lane 0's jobs touch only
 * run[0], v1[0], v2[0], cutter and the ends; lane 1's only run[1], v1[1],
 * v2[1], and at CompleteStream all the generators, out1 and out2.
 */
struct stream {
    uint64_t handle;
    struct conn *conn;       /* referenced for the stream's lifetime */
    struct pub_conn *pc;     /* NULL once closed */
    struct publication *pub; /* NULL once completed, unpublished or discarded */
    uint32_t version;
    uint64_t declared;        /* 0 = not known */
    uint64_t accepted;        /* bytes queued or hashed */
    uint64_t unhashed;        /* bytes queued or being hashed */
    uint32_t deferred_status; /* a failure of an early-answered part, for CompleteStream */
    bool complete_queued;
    bool completed;
    bool dead; /* closed: queued work answers ABORTED */
    unsigned refs;
    bool lanes_failed; /* a lane missed a part (its job not queued, no ends): the stream fails */
    /* Version 1: v1[0], a whole V1 generator on lane 0. Version 2: v2[k] is lane k of 2
     * (every other V2 segment), v1[1] a whole V1 generator on lane 1, v1[0] NULL: lane 0's
     * cutter costs about what V1's SHA-256 does, so each lane carries half of SHA-512 and
     * one of the two. */
    struct ci_gen *v1[2], *v2[2];
    struct ci_cutter *cutter; /* version 2: lane 0 finds the V2 segment ends */
    struct ci_info *out1, *out2;
    struct preq *run[2];   /* the part each lane's job is on */
    struct lane lanes[2];  /* job arguments */
    uint64_t cancel_reply; /* a CancelRequest answered once no part from cancel_rid on runs */
    uint64_t cancel_rid;
    STAILQ_HEAD(, preq) queue;
    STAILQ_HEAD(, preq) inflight;
    LIST_ENTRY(stream) link;
};

struct ci_handle {
    uint64_t handle;
    uint8_t *buf;
    size_t size, pos;
    LIST_ENTRY(ci_handle) link;
};

struct pub_conn {
    uint64_t next_handle;
    LIST_HEAD(, stream) streams;
    unsigned nstreams;
    LIST_HEAD(, ci_handle) cis;
    unsigned ncis;
    LIST_HEAD(, publication) pubs;
    unsigned npubs;
    size_t queued_bytes;
};

struct pub_daemon {
    struct ci_secret ks1, ks2;
    struct publication *buckets[PUB_BUCKETS];
};

#define CONN_FMT "connection %llu (uid %u pid %d)"
#define CONN_ARGS(c) (unsigned long long)(c)->serial, (unsigned)(c)->uid, (int)(c)->pid

/* ---- publications ---- */

static unsigned pub_hash(uid_t uid, const uint8_t *id, size_t len)
{
    uint32_t h = 2166136261u ^ (uint32_t)uid;
    for (size_t i = 0; i < len; i++)
        h = (h ^ id[i]) * 16777619u;
    return h % PUB_BUCKETS;
}

static struct publication **pub_slot(struct pub_daemon *pd, uid_t uid, const uint8_t *id,
    size_t len)
{
    struct publication **pp = &pd->buckets[pub_hash(uid, id, len)];
    for (; *pp; pp = &(*pp)->hnext)
        if ((*pp)->uid == uid && (*pp)->id_len == len && memcmp((*pp)->id, id, len) == 0)
            break;
    return pp;
}

static struct publication *pub_find(struct daemon *d, uid_t uid, const uint8_t *id, size_t len)
{
    return *pub_slot(d->pub, uid, id, len);
}

/* Unindexes and frees; a stream still writing it is detached. */
static void pub_remove(struct daemon *d, struct publication *p)
{
    struct publication **pp = pub_slot(d->pub, p->uid, p->id, p->id_len);
    if (*pp == p)
        *pp = p->hnext;
    if (p->owner) {
        LIST_REMOVE(p, owner_link);
        p->owner->npubs--;
    }
    if (p->stream)
        p->stream->pub = NULL;
    ci_info_free(p->v1);
    ci_info_free(p->v2);
    free(p->id);
    free(p);
}

/* ---- streams ---- */

static void preq_free(struct stream *s, struct preq *q)
{
    s->unhashed -= q->len;
    if (s->pc)
        s->pc->queued_bytes -= q->len;
    if (q->len)
        budget_give(s->conn, q->len); /* handle_publish_add took it */
    free(q->data);
    free(q->ends);
    free(q);
}

static void stream_gens_free(struct stream *s)
{
    for (int k = 0; k < 2; k++) {
        ci_gen_free(s->v1[k]);
        ci_gen_free(s->v2[k]);
    }
    ci_cutter_free(s->cutter);
}

static void stream_unref(struct stream *s)
{
    if (--s->refs > 0)
        return;
    stream_gens_free(s);
    ci_info_free(s->out1);
    ci_info_free(s->out2);
    conn_unref(s->conn);
    free(s);
}

static void count_reply(struct conn *c, uint64_t id, uint32_t status, uint64_t bytes)
{
    Peerdist__CountReply cr = PEERDIST__COUNT_REPLY__INIT;
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.status = status;
    if (status == ERROR_SUCCESS) {
        cr.bytes = bytes;
        r.body_case = PEERDIST__REPLY__BODY_COUNT;
        r.count = &cr;
    }
    conn_send(c, &r);
}

/* Feeds a part to lane k's generators (V2 over the ends lane 0 found). */
static bool stream_feed(struct stream *s, int k, const struct preq *q)
{
    if (s->v1[k] && ci_gen_feed(s->v1[k], q->data, q->len) != 0)
        return false;
    return !s->v2[k] || ci_gen_feed_cut(s->v2[k], q->data, q->len, q->ends, q->n_ends) == 0;
}

/* The last lane's CompleteStream: every lane has fed every part; for version 2 the lanes'
 * V2 digests are put together into what one generator gives. */
static bool stream_finish(struct stream *s)
{
    if (ci_gen_finish(s->v1[0] ? s->v1[0] : s->v1[1], &s->out1) != 0)
        return false;
    return !s->v2[0] || ci_gen_finish_lanes(s->v2, 2, &s->out2) == 0;
}

/* Worker thread: lane 0 finds a part's V2 segment ends (a scan job), or a lane hashes its
 * share of a part (struct stream). The last lane's CompleteStream assembles the content
 * information. */
static void stream_work(void *arg)
{
    struct lane *l = arg;
    struct stream *s = l->s;
    struct preq *q = s->run[l->k];
    bool ok = true;
    if (l->scan) {
        q->ends = malloc(CI_CUTTER_MAX_ENDS(q->len) * sizeof(*q->ends));
        ok = q->ends != NULL;
        if (ok)
            q->n_ends = ci_cutter_scan(s->cutter, q->data, q->len, q->ends);
    } else if (q->kind == PREQ_ADD) {
        ok = stream_feed(s, l->k, q);
    } else if (l->k == (s->version == 2 ? 1 : 0)) {
        ok = stream_finish(s);
    }
    q->status[l->k] = ok ? ERROR_SUCCESS : ERROR_NOT_ENOUGH_MEMORY;
}

static void stream_kick(struct stream *s);

/* Whether the part at the head of inflight can be answered: every lane has run it, or the
 * stream is closed and no lane runs it any more. */
static bool preq_finished(const struct stream *s, const struct preq *q)
{
    if (q == s->run[0] || q == s->run[1])
        return false;
    return s->dead || (q->done[0] && (q->done[1] || s->version == 1 || s->lanes_failed));
}

/* Loop thread: answers a part every lane has run (in order, from the head of inflight). */
static void stream_retire(struct stream *s, struct preq *q)
{
    uint32_t status = q->status[0] ? q->status[0] : q->status[1];
    if (s->lanes_failed && !status)
        status = ERROR_NOT_ENOUGH_MEMORY;
    if (q->kind == PREQ_COMPLETE && status == ERROR_SUCCESS && s->deferred_status)
        status = s->deferred_status;
    if (s->dead)
        status = ERROR_OPERATION_ABORTED;
    else if (!s->pub && !s->completed)
        status = PEERDIST_ERROR_INVALIDATED; /* unpublished while it was written */
    if (q->kind == PREQ_COMPLETE && status == ERROR_SUCCESS) {
        struct publication *p = s->pub;
        p->v1 = s->out1;
        p->v2 = s->out2;
        s->out1 = s->out2 = NULL;
        p->complete = true;
        p->stream = NULL;
        s->pub = NULL;
        s->completed = true;
        log_debug(CONN_FMT ": publication of %llu bytes complete (version %u)", CONN_ARGS(s->conn),
            (unsigned long long)s->accepted, s->version);
    } else if (q->kind == PREQ_COMPLETE && !s->dead) {
        s->complete_queued = false;
    }
    if (q->kind == PREQ_ADD && q->acked) {
        if (status != ERROR_SUCCESS && !s->deferred_status)
            s->deferred_status = status; /* the caller hears it from CompleteStream */
    } else if (q->kind == PREQ_ADD) {
        count_reply(s->conn, q->id, status, q->len);
    } else {
        conn_reply_status(s->conn, q->id, status);
    }
    preq_free(s, q);
}

/* Whether a part of the call whose first request id is rid is still in a lane. */
static bool stream_runs_call(struct stream *s, uint64_t rid)
{
    struct preq *q;
    STAILQ_FOREACH (q, &s->inflight, link)
        if (q->kind == PREQ_ADD && q->id >= rid)
            return true;
    return false;
}

/* Loop thread: an AddToStream part is answered before it is hashed (PUB_EARLY_ACK_BYTES). */
static void ack_early(struct stream *s, struct preq *q)
{
    q->acked = true;
    count_reply(s->conn, q->id, ERROR_SUCCESS, q->len);
}

/* Loop thread: answers, in order, the parts that wait for the backlog before them to shrink
 * (PUB_EARLY_ACK_BYTES) and now fit: inflight first, then queue, which follows it. */
static void stream_ack_early(struct stream *s)
{
    size_t waiting = 0;
    if (s->dead || s->lanes_failed || !s->pub)
        return; /* their failure (or INVALIDATED) is answered with them */
    struct preq *heads[2] = {STAILQ_FIRST(&s->inflight), STAILQ_FIRST(&s->queue)};
    for (size_t i = 0; i < 2; i++)
        for (struct preq *q = heads[i]; q; q = STAILQ_NEXT(q, link)) {
            waiting += q->len;
            if (waiting > PUB_EARLY_ACK_BYTES)
                return;
            if (q->kind == PREQ_ADD && !q->acked)
                ack_early(s, q);
        }
}

/* Loop thread: a lane's job has run. */
static void stream_done(void *arg)
{
    struct lane *l = arg;
    struct stream *s = l->s;
    struct preq *q = s->run[l->k];
    s->run[l->k] = NULL;
    if (l->scan && !q->status[0])
        q->scanned = true; /* lane 0 hashes it next */
    else
        q->done[l->k] = true; /* hashed, or lane 0 failed to find its ends */
    l->scan = false;
    while ((q = STAILQ_FIRST(&s->inflight)) && preq_finished(s, q)) {
        STAILQ_REMOVE_HEAD(&s->inflight, link);
        stream_retire(s, q);
    }
    stream_ack_early(s);
    if (s->cancel_reply && !stream_runs_call(s, s->cancel_rid)) {
        conn_reply_status(s->conn, s->cancel_reply, ERROR_SUCCESS);
        s->cancel_reply = 0;
    }
    stream_kick(s);
    stream_unref(s);
}

static int stream_submit(struct stream *s, int k, struct preq *q)
{
    s->run[k] = q;
    s->refs++;
    if (worker_submit(s->conn->d->workers, stream_work, stream_done, &s->lanes[k]) == 0)
        return 0;
    s->refs--;
    s->run[k] = NULL;
    return -1;
}

/* Lane 0: the hash of a part whose ends it found, else the next queued part (for version 2
 * its ends first). A queued part no job could be queued for is taken back and answered,
 * failed; if the hash of a part whose ends lane 0 found cannot be queued (lane 1 may have
 * hashed it), the stream fails. */
static void stream_kick_lane0(struct stream *s)
{
    struct preq *q;
    if (s->run[0])
        return;
    STAILQ_FOREACH (q, &s->inflight, link)
        if (!q->done[0])
            break;
    if (q && stream_submit(s, 0, q) == 0) /* scanned, not hashed */
        return;
    if (q) {
        log_error(CONN_FMT ": out of memory queueing a hashing job", CONN_ARGS(s->conn));
        q->status[0] = ERROR_NOT_ENOUGH_MEMORY;
        q->done[0] = true;
        s->lanes_failed = true; /* lane 0 misses these bytes; the next part goes on failed */
    }
    while (!STAILQ_EMPTY(&s->queue)) {
        q = STAILQ_FIRST(&s->queue);
        STAILQ_REMOVE_HEAD(&s->queue, link);
        STAILQ_INSERT_TAIL(&s->inflight, q, link);
        s->lanes[0].scan = s->cutter && q->kind == PREQ_ADD;
        if (stream_submit(s, 0, q) == 0)
            break;
        s->lanes[0].scan = false;
        STAILQ_REMOVE(&s->inflight, q, preq, link);
        if (q->kind == PREQ_ADD)
            s->accepted -= q->len;
        else
            s->complete_queued = false;
        log_error(CONN_FMT ": out of memory queueing a hashing job", CONN_ARGS(s->conn));
        if (!q->acked)
            conn_reply_status(s->conn, q->id, ERROR_NOT_ENOUGH_MEMORY);
        else if (!s->deferred_status)
            s->deferred_status = ERROR_NOT_ENOUGH_MEMORY;
        preq_free(s, q);
    }
}

static void stream_kick(struct stream *s)
{
    if (s->dead)
        return;
    stream_kick_lane0(s);
    /* Version 2: lane 1 takes the first part it has not hashed once lane 0 has found its
     * ends, a CompleteStream once lane 0 is done with it. */
    if (s->version == 2 && !s->run[1] && !s->lanes_failed) {
        struct preq *q;
        STAILQ_FOREACH (q, &s->inflight, link)
            if (!q->done[1])
                break;
        bool ready = q && (q->done[0] || (q->kind == PREQ_ADD && q->scanned));
        if (q && q->done[0] && q->status[0]) {
            s->lanes_failed = true; /* lane 0 failed on it (no ends, its share lost) */
        } else if (ready && stream_submit(s, 1, q) != 0) {
            log_error(CONN_FMT ": out of memory queueing a hashing job", CONN_ARGS(s->conn));
            s->lanes_failed = true; /* lane 1 misses these bytes: every part from here fails */
        }
    }
    /* Parts lane 1 will never run are answered now, failed. */
    struct preq *q;
    while (s->lanes_failed && (q = STAILQ_FIRST(&s->inflight)) && preq_finished(s, q)) {
        STAILQ_REMOVE_HEAD(&s->inflight, link);
        stream_retire(s, q);
    }
}

/* Closes the stream: queued work answers ABORTED, an unfinished publication is discarded. */
static void stream_close(struct daemon *d, struct stream *s)
{
    struct preq *q;
    s->dead = true;
    while ((q = STAILQ_FIRST(&s->queue))) {
        STAILQ_REMOVE_HEAD(&s->queue, link);
        if (!q->acked)
            conn_reply_status(s->conn, q->id, ERROR_OPERATION_ABORTED);
        preq_free(s, q);
    }
    /* Parts in no lane are answered now (aborted); those behind a running one after it. */
    while ((q = STAILQ_FIRST(&s->inflight)) && preq_finished(s, q)) {
        STAILQ_REMOVE_HEAD(&s->inflight, link);
        stream_retire(s, q);
    }
    STAILQ_FOREACH (q, &s->inflight, link)
        s->pc->queued_bytes -= q->len; /* counted off now: the pc may go first */
    if (s->pub && !s->completed)
        pub_remove(d, s->pub); /* OUR CHOICE: an unfinished publication is discarded */
    LIST_REMOVE(s, link);
    s->pc->nstreams--;
    s->pc = NULL;
    stream_unref(s);
}

/* ---- per-connection state ---- */

static struct pub_conn *pc_get(struct conn *c)
{
    if (!c->pub) {
        struct pub_conn *pc = calloc(1, sizeof(*pc));
        if (!pc)
            return NULL;
        LIST_INIT(&pc->streams);
        LIST_INIT(&pc->cis);
        LIST_INIT(&pc->pubs);
        c->pub = pc;
    }
    return c->pub;
}

static struct stream *stream_find(struct conn *c, uint64_t handle)
{
    struct pub_conn *pc = c->pub;
    struct stream *s;
    if (!pc)
        return NULL;
    LIST_FOREACH (s, &pc->streams, link)
        if (s->handle == handle)
            return s;
    return NULL;
}

static struct ci_handle *ci_find(struct conn *c, uint64_t handle)
{
    struct pub_conn *pc = c->pub;
    struct ci_handle *h;
    if (!pc)
        return NULL;
    LIST_FOREACH (h, &pc->cis, link)
        if (h->handle == handle)
            return h;
    return NULL;
}

static bool disabled(struct conn *c, uint64_t id)
{
    if (c->d->cfg.mode != MODE_DISABLED)
        return false;
    conn_reply_status(c, id, ERROR_ACCESS_DISABLED_BY_POLICY);
    return true;
}

static void refuse(struct conn *c, uint64_t id, uint32_t status, const char *what, const char *why)
{
    log_info(CONN_FMT ": %s refused (%u): %s", CONN_ARGS(c), what, status, why);
    conn_reply_status(c, id, status);
}

/* ---- handlers ---- */

/* The generators of a new stream (see struct stream). 0 or -1 (the caller frees them). */
static int stream_gens_new(struct stream *s, const struct pub_daemon *pd, uint32_t version)
{
    if (version == 1)
        return (s->v1[0] = ci_gen_new(CI_VERSION_1, &pd->ks1)) ? 0 : -1;
    if (!(s->v1[1] = ci_gen_new(CI_VERSION_1, &pd->ks1)) || !(s->cutter = ci_cutter_new()))
        return -1;
    for (unsigned k = 0; k < 2; k++)
        if (!(s->v2[k] = ci_gen_new_lane(CI_VERSION_2, &pd->ks2, k, 2)))
            return -1;
    return 0;
}

static void handle_publish_stream(struct conn *c, uint64_t id,
    const Peerdist__PublishStreamRequest *m)
{
    static const char what[] = "PublishStream";
    struct daemon *d = c->d;
    if (disabled(c, id))
        return;
    if (m->content_id.len == 0 || m->content_id.len > PUB_MAX_ID_BYTES) {
        refuse(c, id, ERROR_INVALID_PARAMETER, what, "content id length");
        return;
    }
    if (m->version != 1 && m->version != 2) {
        refuse(c, id, ERROR_INVALID_PARAMETER, what, "version not 1 or 2");
        return;
    }
    if (pub_find(d, c->uid, m->content_id.data, m->content_id.len)) {
        refuse(c, id, PEERDIST_ERROR_ALREADY_EXISTS, what, "already published");
        return;
    }
    struct pub_conn *pc = pc_get(c);
    if (!pc) {
        refuse(c, id, ERROR_NOT_ENOUGH_MEMORY, what, "out of memory");
        return;
    }
    if (pc->nstreams >= PUB_MAX_STREAMS_PER_CONN || pc->npubs >= PUB_MAX_PUBLICATIONS_PER_CONN) {
        refuse(c, id, ERROR_NOT_ENOUGH_MEMORY, what, "too many streams or publications");
        return;
    }
    struct publication *p = calloc(1, sizeof(*p));
    struct stream *s = calloc(1, sizeof(*s));
    if (!p || !s || !(p->id = malloc(m->content_id.len)))
        goto nomem;
    if (stream_gens_new(s, d->pub, m->version) != 0)
        goto nomem;
    memcpy(p->id, m->content_id.data, m->content_id.len);
    p->id_len = m->content_id.len;
    p->uid = c->uid;
    p->version = m->version;
    p->owner = pc;
    p->stream = s;
    struct publication **slot =
        &((struct pub_daemon *)d->pub)->buckets[pub_hash(p->uid, p->id, p->id_len)];
    p->hnext = *slot;
    *slot = p;
    LIST_INSERT_HEAD(&pc->pubs, p, owner_link);
    pc->npubs++;
    s->handle = ++pc->next_handle;
    s->conn = c;
    c->refs++;
    s->pc = pc;
    s->pub = p;
    s->version = m->version;
    s->declared = m->content_length;
    s->refs = 1;
    STAILQ_INIT(&s->queue);
    STAILQ_INIT(&s->inflight);
    for (int k = 0; k < 2; k++)
        s->lanes[k] = (struct lane){s, k, false};
    LIST_INSERT_HEAD(&pc->streams, s, link);
    pc->nstreams++;
    Peerdist__PublishStreamReply pr = PEERDIST__PUBLISH_STREAM_REPLY__INIT;
    pr.stream = s->handle;
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.body_case = PEERDIST__REPLY__BODY_PUBLISH_STREAM;
    r.publish_stream = &pr;
    conn_send(c, &r);
    return;
nomem:
    if (s) {
        stream_gens_free(s);
        free(s);
    }
    if (p)
        free(p->id);
    free(p);
    refuse(c, id, ERROR_NOT_ENOUGH_MEMORY, what, "out of memory");
}

/* The checks AddToStream and CompleteStream share: the stream, or NULL with id answered. */
static struct stream *stream_writable(struct conn *c, uint64_t id, uint64_t stream,
    const char *what)
{
    if (disabled(c, id))
        return NULL;
    struct stream *s = stream_find(c, stream);
    if (!s)
        refuse(c, id, ERROR_INVALID_HANDLE, what, "unknown stream");
    else if (s->complete_queued || s->completed)
        refuse(c, id, PEERDIST_ERROR_ALREADY_COMPLETED, what, "stream completed");
    else if (!s->pub)
        refuse(c, id, PEERDIST_ERROR_INVALIDATED, what, "unpublished");
    else
        return s;
    return NULL;
}

static void handle_publish_add(struct conn *c, uint64_t id, const Peerdist__PublishAddRequest *m)
{
    static const char what[] = "PublishAddToStream";
    struct stream *s = stream_writable(c, id, m->stream, what);
    if (!s)
        return;
    if (m->data.len == 0 || m->data.len > PD_MAX_CHUNK) {
        refuse(c, id, ERROR_INVALID_PARAMETER, what, "part size");
        return;
    }
    if (s->declared &&
        (s->accepted + m->data.len > s->declared || s->accepted + m->data.len < s->accepted)) {
        refuse(c, id, PEERDIST_ERROR_OUT_OF_BOUNDS, what, "past the declared length");
        return;
    }
    if (s->pc->queued_bytes + m->data.len > PUB_MAX_QUEUED_BYTES_PER_CONN) {
        refuse(c, id, ERROR_NOT_ENOUGH_MEMORY, what, "too many bytes queued");
        return;
    }
    if (!budget_take(c, m->data.len, what)) {
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        return;
    }
    struct preq *q = calloc(1, sizeof(*q));
    if (!q) {
        budget_give(c, m->data.len);
        refuse(c, id, ERROR_NOT_ENOUGH_MEMORY, what, "out of memory");
        return;
    }
    /* The part's bytes are taken from the decoded request rather than copied: protobuf-c
     * decoded them into a buffer of their own from frame.c's allocator (malloc), and a NULL
     * field is not freed with the request. One copy of every published byte fewer. */
    Peerdist__PublishAddRequest *own = (Peerdist__PublishAddRequest *)m;
    q->data = own->data.data;
    q->len = own->data.len;
    own->data.data = NULL;
    own->data.len = 0;
    q->kind = PREQ_ADD;
    q->id = id;
    s->accepted += q->len;
    s->unhashed += q->len;
    s->pc->queued_bytes += q->len;
    STAILQ_INSERT_TAIL(&s->queue, q, link);
    if (s->unhashed <= PUB_EARLY_ACK_BYTES)
        ack_early(s, q);
    stream_kick(s);
}

static void handle_publish_complete(struct conn *c, uint64_t id,
    const Peerdist__PublishCompleteRequest *m)
{
    static const char what[] = "PublishCompleteStream";
    struct stream *s = stream_writable(c, id, m->stream, what);
    if (!s)
        return;
    if (s->declared && s->accepted != s->declared) {
        refuse(c, id, ERROR_INVALID_PARAMETER, what, "total differs from the declared length");
        return;
    }
    struct preq *q = calloc(1, sizeof(*q));
    if (!q) {
        refuse(c, id, ERROR_NOT_ENOUGH_MEMORY, what, "out of memory");
        return;
    }
    q->kind = PREQ_COMPLETE;
    q->id = id;
    s->complete_queued = true;
    STAILQ_INSERT_TAIL(&s->queue, q, link);
    stream_kick(s);
}

static void handle_close_stream(struct conn *c, uint64_t id, const Peerdist__CloseStreamRequest *m)
{
    struct stream *s = stream_find(c, m->stream);
    if (!s) {
        refuse(c, id, ERROR_INVALID_HANDLE, "CloseStreamHandle", "unknown stream");
        return;
    }
    stream_close(c->d, s);
    conn_reply_status(c, id, ERROR_SUCCESS);
}

static void handle_unpublish(struct conn *c, uint64_t id, const Peerdist__UnpublishRequest *m)
{
    if (disabled(c, id))
        return;
    if (m->content_id.len == 0 || m->content_id.len > PUB_MAX_ID_BYTES) {
        refuse(c, id, ERROR_INVALID_PARAMETER, "Unpublish", "content id length");
        return;
    }
    struct publication *p = pub_find(c->d, c->uid, m->content_id.data, m->content_id.len);
    if (!p) {
        refuse(c, id, ERROR_NOT_FOUND, "Unpublish", "not published by this uid");
        return;
    }
    pub_remove(c->d, p);
    conn_reply_status(c, id, ERROR_SUCCESS);
}

static void handle_open_ci(struct conn *c, uint64_t id, const Peerdist__OpenContentInfoRequest *m)
{
    static const char what[] = "OpenContentInformation";
    if (disabled(c, id))
        return;
    if (m->content_id.len == 0 || m->content_id.len > PUB_MAX_ID_BYTES) {
        refuse(c, id, ERROR_INVALID_PARAMETER, what, "content id length");
        return;
    }
    struct publication *p = pub_find(c->d, c->uid, m->content_id.data, m->content_id.len);
    if (!p || !p->complete) {
        refuse(c, id, ERROR_NOT_FOUND, what, "no complete publication by this uid");
        return;
    }
    uint32_t version = p->version;
    if (m->min_version || m->max_version) {
        if (m->min_version < 1 || m->min_version > m->max_version || m->max_version > 2) {
            refuse(c, id, ERROR_INVALID_PARAMETER, what, "version range");
            return;
        }
        /* The highest version the publication has within [min, max] (DESIGN.md, Versions). */
        version = m->max_version >= 2 && p->version == 2 ? 2 : m->min_version <= 1 ? 1 : 0;
        if (!version) {
            refuse(c, id, PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED, what,
                "publication lacks the version asked for");
            return;
        }
    }
    const struct ci_info *full = version == 2 ? p->v2 : p->v1;
    struct ci_info *ranged = NULL;
    if ((m->offset || m->length) && ci_range(full, m->offset, m->length, &ranged) != 0) {
        refuse(c, id, errno == EINVAL ? ERROR_INVALID_PARAMETER : ERROR_NOT_ENOUGH_MEMORY, what,
            "range outside the content");
        return;
    }
    struct pub_conn *pc = pc_get(c);
    struct ci_handle *h = NULL;
    uint8_t *buf = NULL;
    size_t size = 0;
    int rc = pc && pc->ncis < PUB_MAX_CI_HANDLES_PER_CONN
        ? ci_serialize(ranged ? ranged : full, &buf, &size)
        : -1;
    ci_info_free(ranged);
    if (rc == 0 && !budget_take(c, size, what)) {
        free(buf);
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        return;
    }
    if (rc != 0 || !(h = calloc(1, sizeof(*h)))) {
        if (rc == 0)
            budget_give(c, size);
        free(buf);
        refuse(c, id, ERROR_NOT_ENOUGH_MEMORY, what, "out of memory or too many handles");
        return;
    }
    h->handle = ++pc->next_handle;
    h->buf = buf;
    h->size = size;
    LIST_INSERT_HEAD(&pc->cis, h, link);
    pc->ncis++;
    Peerdist__OpenContentInfoReply oc = PEERDIST__OPEN_CONTENT_INFO_REPLY__INIT;
    oc.handle = h->handle;
    oc.size = size;
    oc.version = version;
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.body_case = PEERDIST__REPLY__BODY_OPEN_CONTENT_INFO;
    r.open_content_info = &oc;
    conn_send(c, &r);
}

static void handle_retrieve_ci(struct conn *c, uint64_t id,
    const Peerdist__RetrieveContentInfoRequest *m)
{
    static const char what[] = "RetrieveContentInformation";
    if (disabled(c, id))
        return;
    struct ci_handle *h = ci_find(c, m->handle);
    if (!h) {
        refuse(c, id, ERROR_INVALID_HANDLE, what, "unknown handle");
        return;
    }
    if (m->max_bytes == 0) {
        refuse(c, id, ERROR_INVALID_PARAMETER, what, "max_bytes 0");
        return;
    }
    Peerdist__RetrieveContentInfoReply rr = PEERDIST__RETRIEVE_CONTENT_INFO_REPLY__INIT;
    Peerdist__Reply r = PEERDIST__REPLY__INIT;
    r.id = id;
    r.body_case = PEERDIST__REPLY__BODY_RETRIEVE_CONTENT_INFO;
    r.retrieve_content_info = &rr;
    rr.offset = h->pos;
    if (h->pos >= h->size) {
        r.status = PEERDIST_ERROR_NO_MORE;
    } else {
        size_t n = h->size - h->pos;
        if (n > m->max_bytes)
            n = m->max_bytes;
        if (n > PD_MAX_CHUNK)
            n = PD_MAX_CHUNK;
        rr.data.data = h->buf + h->pos;
        rr.data.len = n;
        h->pos += n;
    }
    conn_send(c, &r);
}

static void ci_handle_free(struct conn *c, struct ci_handle *h)
{
    struct pub_conn *pc = c->pub;
    LIST_REMOVE(h, link);
    pc->ncis--;
    budget_give(c, h->size); /* handle_open_ci took it */
    free(h->buf);
    free(h);
}

static void handle_close_ci(struct conn *c, uint64_t id, const Peerdist__CloseContentInfoRequest *m)
{
    struct ci_handle *h = ci_find(c, m->handle);
    if (!h) {
        refuse(c, id, ERROR_INVALID_HANDLE, "CloseContentInformation", "unknown handle");
        return;
    }
    ci_handle_free(c, h);
    conn_reply_status(c, id, ERROR_SUCCESS);
}

/*
 * Cancels the call whose (first) request id is request_id on a stream. Only
 * one AddToStream is outstanding per stream, so every queued part with an id
 * from request_id on belongs to it (a buffer the library split): those are
 * aborted. If a part of it is being hashed, the cancel is answered after that
 * part, so the call's completion always precedes the cancel's reply.
 * Retrieves are answered at once, so they are never found.
 */
static void handle_cancel(struct conn *c, uint64_t id, const Peerdist__CancelRequest *m)
{
    struct stream *s = m->kind == PEERDIST__HANDLE_KIND__HANDLE_KIND_STREAM
        ? stream_find(c, m->handle)
        : NULL;
    uint64_t rid = m->request_id;
    unsigned aborted = 0;
    if (s && rid) {
        struct preq *q = STAILQ_FIRST(&s->queue), *next;
        for (; q; q = next) {
            next = STAILQ_NEXT(q, link);
            if (q->acked || (q->kind == PREQ_ADD ? q->id < rid : q->id != rid))
                continue; /* an answered part has completed: nothing to cancel */
            STAILQ_REMOVE(&s->queue, q, preq, link);
            if (q->kind == PREQ_ADD)
                s->accepted -= q->len;
            else
                s->complete_queued = false;
            conn_reply_status(c, q->id, ERROR_OPERATION_ABORTED);
            preq_free(s, q);
            aborted++;
        }
    }
    if (!aborted) {
        conn_reply_status(c, id, PEERDIST_ERROR_OPERATION_NOTFOUND);
        return;
    }
    if (stream_runs_call(s, rid) && !s->cancel_reply) {
        s->cancel_reply = id; /* answered in stream_done, after the call's parts in lanes */
        s->cancel_rid = rid;
        return;
    }
    conn_reply_status(c, id, ERROR_SUCCESS);
}

/* ---- publish.h ---- */

static void publish_conn_closed(struct conn *c);

int publish_init(struct daemon *d)
{
    struct pub_daemon *pd = calloc(1, sizeof(*pd));
    if (!pd)
        return -1;
    if (secret_load(d->cfg.state_dir, &pd->ks1, &pd->ks2) != 0) {
        free(pd);
        return -1;
    }
    d->pub = pd;
    return server_on_close(d, publish_conn_closed);
}

void publish_set_keys(struct daemon *d, const struct ci_secret *ks_v1,
    const struct ci_secret *ks_v2)
{
    struct pub_daemon *pd = d->pub;
    OPENSSL_cleanse(&pd->ks1, sizeof(pd->ks1));
    OPENSSL_cleanse(&pd->ks2, sizeof(pd->ks2));
    pd->ks1 = *ks_v1; /* a stream's generators copied the old one when it opened */
    pd->ks2 = *ks_v2;
}

void publish_free(struct daemon *d)
{
    struct pub_daemon *pd = d->pub;
    if (!pd)
        return;
    for (unsigned i = 0; i < PUB_BUCKETS; i++)
        while (pd->buckets[i])
            pub_remove(d, pd->buckets[i]);
    OPENSSL_cleanse(pd, sizeof(*pd));
    free(pd);
    d->pub = NULL;
}

bool publish_dispatch(struct conn *c, const Peerdist__Request *req)
{
    uint64_t id = req->id;
    switch (req->body_case) {
    case PEERDIST__REQUEST__BODY_PUBLISH_STREAM:
        handle_publish_stream(c, id, req->publish_stream);
        return true;
    case PEERDIST__REQUEST__BODY_PUBLISH_ADD:
        handle_publish_add(c, id, req->publish_add);
        return true;
    case PEERDIST__REQUEST__BODY_PUBLISH_COMPLETE:
        handle_publish_complete(c, id, req->publish_complete);
        return true;
    case PEERDIST__REQUEST__BODY_CLOSE_STREAM:
        handle_close_stream(c, id, req->close_stream);
        return true;
    case PEERDIST__REQUEST__BODY_UNPUBLISH: handle_unpublish(c, id, req->unpublish); return true;
    case PEERDIST__REQUEST__BODY_OPEN_CONTENT_INFO:
        handle_open_ci(c, id, req->open_content_info);
        return true;
    case PEERDIST__REQUEST__BODY_RETRIEVE_CONTENT_INFO:
        handle_retrieve_ci(c, id, req->retrieve_content_info);
        return true;
    case PEERDIST__REQUEST__BODY_CLOSE_CONTENT_INFO:
        handle_close_ci(c, id, req->close_content_info);
        return true;
    case PEERDIST__REQUEST__BODY_CANCEL:
        if (req->cancel->kind != PEERDIST__HANDLE_KIND__HANDLE_KIND_STREAM &&
            req->cancel->kind != PEERDIST__HANDLE_KIND__HANDLE_KIND_CONTENT_INFO)
            return false; /* content handles: content.c */
        handle_cancel(c, id, req->cancel);
        return true;
    default: return false;
    }
}

/* Close hook: streams, handles and publications go with the connection. */
static void publish_conn_closed(struct conn *c)
{
    struct pub_conn *pc = c->pub;
    if (!pc)
        return;
    while (!LIST_EMPTY(&pc->streams))
        stream_close(c->d, LIST_FIRST(&pc->streams));
    while (!LIST_EMPTY(&pc->cis))
        ci_handle_free(c, LIST_FIRST(&pc->cis));
    /* DESIGN/issue: publications go with the connection that made them. */
    while (!LIST_EMPTY(&pc->pubs))
        pub_remove(c->d, LIST_FIRST(&pc->pubs));
    free(pc);
    c->pub = NULL;
}
