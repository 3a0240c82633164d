/* SPDX-License-Identifier: MIT */
/*
 * peer-serve.c - the MS-PCCRR server of distributed mode (peer.h; branchcache-protocols.md §3):
 * HTTP/1.1 POST on peer_port (libevent evhttp, keep-alive), which segments can be served
 * (bound to their ID, secret stored: schema 005), and MSG_BLK built on a worker from verified
 * bytes only, AES-CBC encrypted with the segment's key. Limits: active requests in all and
 * per peer (a busy answer, §3.7), serve_rate_limit (a token bucket on the loop), request size.
 * Threads: everything on the loop but a job's work half (read, hash, encrypt).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "blockstore.h"
#include "daemon.h"
#include "flush.h"
#include "log.h"
#include "pccrr.h"
#include "peer.h"
#include "worker.h"

/*
 * Requests being answered at once (read, encrypted, or waiting for the rate limit): over this
 * a peer gets the busy answer, an empty BLKLIST or a BLK with SizeOfBlock 0 (§3.7; Windows'
 * default on a peer is 64). Per peer address no more than PEER_SERVE_PER_PEER_MAX (iPXE runs
 * 32 block downloads at once; no peer may take every slot).
 */
#define PEER_SERVE_ACTIVE_MAX 64
#define PEER_SERVE_PER_PEER_MAX 32
/* Peers remembered for their counters (the least recently seen idle one is forgotten). */
#define PEER_SERVE_PEERS_MAX 1024
/* Seconds a connection may take to send a request or to take its response (§3.7: Windows'
 * upload timer is 15 s); idle keep-alive connections close after it too. */
#define PEER_SERVE_TIMEOUT_S 15
#define PEER_SERVE_HEADERS_MAX 8192
#define PEER_SERVE_BACKLOG 128
/* Segments whose held blocks are remembered (Probes, BLKLIST, NextBlockIndex); each entry
 * stays valid while the block index is unchanged (d->blocks_gen). */
#define PEER_SERVE_HELD_CACHE 64
/* Log lines about malformed requests, at most, each second. */
#define PEER_SERVE_LOG_PER_S 5
/* Peer connections that have sent a request, open at once: at the limit accepting pauses
 * until one closes, so LAN peers cannot take the descriptors local clients need. Connections
 * that send nothing close after PEER_SERVE_TIMEOUT_S. */
#define PEER_SERVE_CONNS_MAX 512

/* A remote address and what it was served. */
struct serve_peer {
    struct sockaddr_in6 addr; /* IPv4 as v4-mapped; port 0 */
    unsigned active;
    uint64_t bytes;
    uint64_t requests;
    time_t last_seen;
    LIST_ENTRY(serve_peer) link;
};

/* What the block index says of one segment (held: shared rows of a segment whose secret is
 * stored, not found bad, short enough to fit one MSG_BLK). */
struct held {
    uint8_t id[PEER_ID_MAX];
    size_t id_len;
    uint64_t gen;          /* d->blocks_gen it was loaded at; 0 = empty entry */
    struct blockstore *bs; /* while loading, when some slot was found bad */
    bool found;
    struct peer_segment_info info;
};

struct serve_job;
TAILQ_HEAD(job_list, serve_job);

struct serve {
    struct peer_serve_counts counts; /* first: PEER_SERVE_BYTES reads it (peer.h) */
    struct daemon *d;
    struct evhttp *http;
    unsigned active;
    LIST_HEAD(, serve_peer) peers;
    unsigned npeers;
    struct held held[PEER_SERVE_HELD_CACHE];
    unsigned held_next;
    /* serve_rate_limit: tokens are bytes; a job goes when the bucket is not in debt. */
    double tokens;
    struct timespec refilled;
    struct event *rate_ev;
    struct job_list rate_wait;
    struct job_list running; /* on a worker */
    /* Out of descriptors: accepting pauses (as the local socket's, SERVER_ACCEPT_RETRY_SECONDS). */
    struct evconnlistener *listeners[2];
    unsigned nlisteners;
    struct event *accept_ev;
    struct serve *next; /* serves */
    /* Connections seen (a request came), told to conn_closed when evhttp frees them. */
    struct evhttp_connection *conns[PEER_SERVE_CONNS_MAX];
    unsigned nconns;
};

/* One GETBLKS being answered. */
struct serve_job {
    struct serve *sv;
    struct evhttp_request *req;
    struct serve_peer *peer;
    uint8_t id[PEER_ID_MAX];
    size_t id_len;
    uint32_t block, next;
    enum pccrr_crypto crypto;
    struct store_segment_secret secret; /* Kp: cleansed when the job ends */
    struct store_block_row row;
    int version;
    bool check; /* slot not known good this run: the verdict is recorded */
    struct bs_check ck;
    bool held; /* the segment is held against eviction (bs_hold) */
    /* Worker results. */
    enum { JOB_OK, JOB_BAD, JOB_IO, JOB_NOMEM } result;
    uint8_t *out;
    size_t out_len;
    TAILQ_ENTRY(serve_job) link;
};

/* ---- peers ---- */

static void peer_key(const struct sockaddr *sa, struct sockaddr_in6 *out)
{
    memset(out, 0, sizeof(*out));
    out->sin6_family = AF_INET6;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        out->sin6_addr.s6_addr[10] = 0xff;
        out->sin6_addr.s6_addr[11] = 0xff;
        memcpy(&out->sin6_addr.s6_addr[12], &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        out->sin6_addr = ((const struct sockaddr_in6 *)sa)->sin6_addr;
        out->sin6_scope_id = ((const struct sockaddr_in6 *)sa)->sin6_scope_id;
    }
}

/* The request's peer, created if new; NULL when every slot is taken by a busy peer. */
static struct serve_peer *peer_of(struct serve *sv, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    const struct sockaddr *sa = evcon ? evhttp_connection_get_addr(evcon) : NULL;
    struct sockaddr_in6 key;
    struct sockaddr_storage none = {0};
    peer_key(sa ? sa : (const struct sockaddr *)&none, &key);
    struct serve_peer *p, *idle = NULL;
    LIST_FOREACH (p, &sv->peers, link) {
        if (memcmp(&p->addr.sin6_addr, &key.sin6_addr, sizeof(key.sin6_addr)) == 0) {
            p->last_seen = time(NULL);
            return p;
        }
        if (!p->active && (!idle || p->last_seen < idle->last_seen))
            idle = p;
    }
    if (sv->npeers >= PEER_SERVE_PEERS_MAX) {
        if (!idle)
            return NULL;
        p = idle; /* forgotten: its bytes stay in the total */
        LIST_REMOVE(p, link);
    } else if ((p = calloc(1, sizeof(*p)))) {
        sv->npeers++;
    } else {
        return NULL;
    }
    memset(p, 0, sizeof(*p));
    p->addr = key;
    p->last_seen = time(NULL);
    LIST_INSERT_HEAD(&sv->peers, p, link);
    return p;
}

/* ---- what can be served ---- */

/* A block row can be served: within its segment, and short enough for one MSG_BLK. */
static bool servable(int version, uint32_t blocks, uint32_t block, uint32_t block_length,
    size_t id_len)
{
    if (blocks == 0 || blocks > PEER_SEGMENT_BLOCKS_MAX || block >= blocks || block_length == 0)
        return false;
    if (version == 1)
        return block_length <= BS_SLOT_SIZE;
    /* A V2 segment is one MSG_BLK: one too long for it counts as missing (§3.8). */
    return version == 2 && block == 0 && block_length <= PCCRR_BLK_PLAINTEXT_MAX &&
        block_length <= pccrr_blk_plaintext_max(id_len);
}

static int held_row(void *arg, const struct store_servable *r)
{
    struct held *h = arg;
    if (!servable(r->version, r->blocks, r->block, r->block_length, h->id_len))
        return 0;
    if (h->bs && bs_slot_state(h->bs, h->id, h->id_len, r->file_owner, r->block) == BS_SLOT_BAD)
        return 0;
    h->info.version = r->version;
    h->info.total_blocks = r->blocks;
    if (!(h->info.bitmap[r->block / 8] & (1u << (r->block % 8)))) {
        h->info.bitmap[r->block / 8] |= (uint8_t)(1u << (r->block % 8));
        h->info.blocks_held++;
    }
    return 0;
}

/* The cached entry of a segment if it is still valid, else NULL. */
static const struct held *held_peek(struct serve *sv, const uint8_t *id, size_t id_len)
{
    for (unsigned i = 0; i < PEER_SERVE_HELD_CACHE; i++) {
        struct held *h = &sv->held[i];
        if (h->gen && h->gen == sv->d->blocks_gen + 1 && h->id_len == id_len &&
            memcmp(h->id, id, id_len) == 0)
            return h;
    }
    return NULL;
}

/*
 * The held blocks of a segment: cached while the block index is unchanged, else loaded (two
 * indexed queries; about 75 us for a segment of 512 blocks, 3 us for one not held). NULL on
 * error.
 */
static const struct held *held_get(struct serve *sv, const uint8_t *id, size_t id_len)
{
    struct daemon *d = sv->d;
    if (id_len == 0 || id_len > PEER_ID_MAX)
        return NULL;
    const struct held *c = held_peek(sv, id, id_len);
    if (c)
        return c;
    struct held *h = &sv->held[sv->held_next];
    sv->held_next = (sv->held_next + 1) % PEER_SERVE_HELD_CACHE;
    memset(h, 0, sizeof(*h));
    memcpy(h->id, id, id_len);
    h->id_len = id_len;
    h->bs = bs_bad_slots(d->bs) ? d->bs : NULL; /* slots found bad: held_row skips them */
    if (store_servable_blocks(d->store, id, id_len, held_row, h) != 0)
        return NULL;
    h->found = h->info.blocks_held > 0;
    h->gen = d->blocks_gen + 1; /* never 0 */
    return h;
}

static bool serving(const struct serve *sv)
{
    return sv && sv->d->cfg.serve && !sv->d->stopping;
}

bool peer_serve_segment(struct daemon *d, const uint8_t *id, size_t id_len,
    struct peer_segment_info *out)
{
    struct serve *sv = d->serve;
    if (!serving(sv))
        return false;
    const struct held *h = held_get(sv, id, id_len);
    if (!h || !h->found)
        return false;
    if (out)
        *out = h->info;
    return true;
}

static bool held_has(const struct held *h, uint32_t b)
{
    return h && h->found && b < PEER_SEGMENT_BLOCKS_MAX && b < h->info.total_blocks &&
        (h->info.bitmap[b / 8] & (1u << (b % 8)));
}

/* The first held block at or after from, or 0 if none (NextBlockIndex, §3.5). */
static uint32_t held_next(const struct held *h, uint32_t from)
{
    for (uint32_t b = from; h && b < h->info.total_blocks && b < PEER_SEGMENT_BLOCKS_MAX; b++)
        if (held_has(h, b))
            return b;
    return 0;
}

/* ---- replies ---- */

static void reply_bytes(struct evhttp_request *req, const uint8_t *buf, size_t len)
{
    struct evbuffer *body = evbuffer_new();
    if (!body || evbuffer_add(body, buf, len) != 0) {
        if (body)
            evbuffer_free(body);
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
        "application/octet-stream");
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
}

/* At most PEER_SERVE_LOG_PER_S lines a second about what peers cause: a peer may send
 * nothing but garbage. */
static bool log_allowed(void)
{
    static time_t second;
    static unsigned lines;
    time_t now = time(NULL);
    if (now != second) {
        second = now;
        lines = 0;
    }
    return lines++ < PEER_SERVE_LOG_PER_S;
}

static void free_reply(const void *data, size_t len, void *arg)
{
    (void)len, (void)arg;
    free((void *)data);
}

/* The same with a malloc'd buffer the reply takes (no copy of a 64 KiB block). */
static void reply_owned(struct evhttp_request *req, uint8_t *buf, size_t len)
{
    struct evbuffer *body = evbuffer_new();
    if (!body || evbuffer_add_reference(body, buf, len, free_reply, NULL) != 0) {
        if (body)
            evbuffer_free(body);
        free(buf);
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
        "application/octet-stream");
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
}

static void reply_bad(struct evhttp_request *req, const char *why, int err)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    char *host = NULL;
    ev_uint16_t port = 0;
    if (evcon)
        evhttp_connection_get_peer(evcon, &host, &port);
    if (log_allowed())
        log_warn("peer %s port %u: malformed MS-PCCRR request (%s%s%s): 400, connection closed",
            host ? host : "?", (unsigned)port, why, err ? ": " : "",
            err ? pccrr_strerror(err) : "");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    evhttp_send_error(req, HTTP_BADREQUEST, NULL);
}

static void reply_nego(struct evhttp_request *req)
{
    uint8_t out[PCCRR_TRANSPORT_SIZE + PCCRR_NEGO_SIZE];
    long n = pccrr_encode_nego_resp(out, sizeof(out), PCCRR_OUR_MIN_VERSION, PCCRR_OUR_MAX_VERSION);
    if (n < 0) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    reply_bytes(req, out, (size_t)n);
}

static void reply_blk_empty(struct evhttp_request *req, const uint8_t *id, size_t id_len,
    uint32_t block)
{
    uint8_t out[256];
    long n = pccrr_encode_blk_empty(out, sizeof(out), id, id_len, block);
    if (n < 0) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    reply_bytes(req, out, (size_t)n);
}

/* BLKLIST: the requested ranges intersected with what is held (busy or !h: none). */
static void reply_blklist(struct evhttp_request *req, const struct pccrr_request *rq,
    const struct held *h)
{
    static uint8_t want[PEER_SEGMENT_BLOCKS_MAX];
    struct pccrr_range ranges[PCCRR_RANGES_MAX];
    size_t n = 0;
    uint32_t last = 0;
    memset(want, 0, sizeof(want));
    for (uint32_t i = 0; i < rq->range_count && i < PCCRR_RANGES_MAX; i++) {
        const struct pccrr_range *r = &rq->ranges[i];
        for (uint64_t b = r->index;
             b < (uint64_t)r->index + r->count && b < PEER_SEGMENT_BLOCKS_MAX; b++) {
            want[b] = 1;
            if (b + 1 > last)
                last = (uint32_t)b + 1;
        }
    }
    for (uint32_t b = 0; h && b < last; b++) {
        if (!want[b] || !held_has(h, b))
            continue;
        if (n && ranges[n - 1].index + ranges[n - 1].count == b) {
            ranges[n - 1].count++;
        } else if (n < PCCRR_RANGES_MAX) {
            ranges[n].index = b;
            ranges[n].count = 1;
            n++;
        }
    }
    uint8_t
        out[PCCRR_TRANSPORT_SIZE + PCCRR_HEADER_SIZE + 8 + PCCRR_ID_MAX + 8 + 8 * PCCRR_RANGES_MAX];
    long len = pccrr_encode_blklist(out, sizeof(out), rq->segment_id, rq->segment_id_len, ranges, n,
        h ? held_next(h, last) : 0);
    if (len < 0) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    reply_bytes(req, out, (size_t)len);
}

/* ---- GETBLKS: read, check, encrypt on a worker ---- */

static void job_end(struct serve_job *j)
{
    struct serve *sv = j->sv;
    sv->active--;
    if (j->peer)
        j->peer->active--;
    if (j->held)
        bs_release(sv->d->bs, j->id, j->id_len);
    OPENSSL_cleanse(&j->secret, sizeof(j->secret));
    if (j->out) {
        OPENSSL_cleanse(j->out, j->out_len);
        free(j->out);
    }
    free(j);
}

static const EVP_MD *block_md(int version, size_t hash_len)
{
    if (version == 2)
        return EVP_sha512(); /* truncated to 32 bytes: HoD of the segment's bytes */
    return hash_len == 32 ? EVP_sha256() : hash_len == 48 ? EVP_sha384() : EVP_sha512();
}

/* Worker: the block's bytes, hashed against their row's hash, then the MSG_BLK. */
static void job_work(void *arg)
{
    struct serve_job *j = arg;
    struct blockstore *bs = j->sv->d->bs;
    uint32_t len = j->row.length;
    uint8_t *plain = malloc(len ? len : 1);
    size_t cap = pccrr_blk_size(j->id_len, len);
    j->out = cap ? malloc(cap) : NULL;
    if (!plain || !j->out) {
        j->result = JOB_NOMEM;
        goto out;
    }
    uint64_t at = j->version == 2 ? 0 : (uint64_t)j->block * BS_SLOT_SIZE;
    if (bs_read(bs, j->id, j->id_len, j->row.file_owner, at, plain, len) != 0) {
        j->result = JOB_IO;
        goto out;
    }
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (!EVP_Digest(plain, len, md, &mdlen, block_md(j->version, j->row.hash_len), NULL) ||
        mdlen < j->row.hash_len || memcmp(md, j->row.hash, j->row.hash_len) != 0) {
        j->result = JOB_BAD; /* never served: the bytes are not the ones verified */
        goto out;
    }
    long n = pccrr_encode_blk(j->out, cap, j->crypto, j->id, j->id_len, j->block, j->next,
        j->secret.secret, j->secret.secret_len, plain, len);
    if (n < 0) {
        j->result = JOB_NOMEM;
        goto out;
    }
    j->out_len = (size_t)n;
    j->result = JOB_OK;
out:
    if (plain) {
        OPENSSL_cleanse(plain, len);
        free(plain);
    }
}

/* Loop: rows of slots found bad leave the index when no flush batch holds the lock (else
 * readers and this server skip them until a later pass). */
static void drop_bad(struct daemon *d)
{
    if (!flush_gate_open(d))
        return;
    struct store_slot batch[64];
    size_t n;
    while ((n = bs_bad_take(d->bs, batch, sizeof(batch) / sizeof(batch[0]))) > 0) {
        bool ok = store_begin(d->store) == 0;
        for (size_t i = 0; ok && i < n; i++)
            ok = store_block_drop(d->store, batch[i].segment_id, batch[i].segment_id_len,
                     batch[i].file_owner, batch[i].block) >= 0;
        if (!ok || store_commit(d->store) != 0) {
            store_rollback(d->store);
            return;
        }
        d->blocks_gen++;
    }
}

static void job_done(void *arg)
{
    struct serve_job *j = arg;
    struct serve *sv = j->sv;
    struct daemon *d = sv->d;
    TAILQ_REMOVE(&sv->running, j, link);
    if (j->check) {
        enum bs_verdict v = BS_VERDICT_NONE;
        if (j->result == JOB_OK)
            v = BS_VERDICT_GOOD;
        else if (j->result == JOB_BAD &&
            store_slot_in_use(d->store, j->id, j->id_len, j->row.file_owner, j->block) == 1)
            v = BS_VERDICT_BAD;
        if (bs_check_end(d->bs, &j->ck, v) && v == BS_VERDICT_BAD) {
            char path[4096];
            bs_file_path(d->bs, j->id, j->id_len, j->row.file_owner, path, sizeof(path));
            log_warn("%s: block %u does not match its hash: not served, it leaves the index", path,
                (unsigned)j->block);
            d->blocks_gen++;
            drop_bad(d);
        }
    }
    if (j->result == JOB_OK) {
        reply_owned(j->req, j->out, j->out_len);
        j->out = NULL; /* the reply's now */
        sv->counts.served_bytes += j->row.length;
        if (j->peer)
            j->peer->bytes += j->row.length;
    } else {
        if (j->result == JOB_IO && log_allowed())
            log_error("reading block %u of a segment for a peer failed; answered as missing",
                (unsigned)j->block);
        else if (j->result == JOB_BAD && !j->check && log_allowed())
            log_warn("block %u of a segment no longer matches its hash (changed on disk since "
                     "it was checked); answered as missing",
                (unsigned)j->block);
        reply_blk_empty(j->req, j->id, j->id_len, j->block);
    }
    job_end(j);
}

static void job_start(struct serve_job *j)
{
    struct serve *sv = j->sv;
    struct daemon *d = sv->d;
    if (bs_hold(d->bs, j->id, j->id_len) == 0)
        j->held = true;
    j->check = bs_slot_state(d->bs, j->id, j->id_len, j->row.file_owner, j->block) != BS_SLOT_GOOD;
    if (j->check)
        bs_check_begin(d->bs, j->id, j->id_len, j->row.file_owner, j->block, &j->ck);
    TAILQ_INSERT_TAIL(&sv->running, j, link);
    if (!d->stopping && worker_submit(d->workers, job_work, job_done, j) == 0)
        return;
    TAILQ_REMOVE(&sv->running, j, link);
    if (j->check)
        bs_check_end(d->bs, &j->ck, BS_VERDICT_NONE);
    reply_blk_empty(j->req, j->id, j->id_len, j->block);
    job_end(j);
}

/* ---- serve_rate_limit: a token bucket in bytes ---- */

static double rate_refill(struct serve *sv)
{
    double rate = (double)sv->d->cfg.serve_rate_limit;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double dt = (double)(now.tv_sec - sv->refilled.tv_sec) +
        (double)(now.tv_nsec - sv->refilled.tv_nsec) / 1e9;
    sv->refilled = now;
    /* A burst of a tenth of a second, and never less than one whole block message. */
    double burst = rate / 10 > 65644.0 ? rate / 10 : 65644.0;
    sv->tokens += rate * dt;
    /* Unlimited, the bucket stays full: what went out then is no debt for a limit set later
     * (SIGHUP), which would otherwise start with the daemon silent for as long. */
    if (sv->tokens > burst || rate <= 0)
        sv->tokens = burst;
    return rate;
}

static void rate_arm(struct serve *sv, double rate)
{
    double wait = rate > 0 && sv->tokens < 0 ? -sv->tokens / rate : 0;
    struct timeval tv = {(time_t)wait, (suseconds_t)((wait - (double)(time_t)wait) * 1e6) + 1};
    event_add(sv->rate_ev, &tv);
}

static void rate_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct serve *sv = arg;
    double rate = rate_refill(sv);
    while (!TAILQ_EMPTY(&sv->rate_wait) && (rate <= 0 || sv->tokens > 0)) {
        struct serve_job *j = TAILQ_FIRST(&sv->rate_wait);
        TAILQ_REMOVE(&sv->rate_wait, j, link);
        sv->tokens -= (double)pccrr_blk_size(j->id_len, j->row.length);
        job_start(j);
    }
    if (!TAILQ_EMPTY(&sv->rate_wait))
        rate_arm(sv, rate);
}

/* The job goes now, or once the bucket allows (in order). */
static void rate_submit(struct serve *sv, struct serve_job *j)
{
    double rate = rate_refill(sv);
    if (TAILQ_EMPTY(&sv->rate_wait) && (rate <= 0 || sv->tokens > 0)) {
        sv->tokens -= (double)pccrr_blk_size(j->id_len, j->row.length);
        job_start(j);
        return;
    }
    TAILQ_INSERT_TAIL(&sv->rate_wait, j, link);
    if (!event_pending(sv->rate_ev, EV_TIMEOUT, NULL))
        rate_arm(sv, rate);
}

static void serve_getblks(struct serve *sv, struct evhttp_request *req,
    const struct pccrr_request *rq, struct serve_peer *peer, bool busy)
{
    struct daemon *d = sv->d;
    uint32_t block = 0;
    if (!pccrr_request_first_block(rq, &block)) {
        reply_bad(req, "GETBLKS names no block", 0);
        return;
    }
    if (busy) {
        reply_blk_empty(req, rq->segment_id, rq->segment_id_len, block);
        return;
    }
    struct serve_job *j = calloc(1, sizeof(*j));
    if (!j) {
        reply_blk_empty(req, rq->segment_id, rq->segment_id_len, block);
        return;
    }
    j->sv = sv;
    j->req = req;
    memcpy(j->id, rq->segment_id, rq->segment_id_len);
    j->id_len = rq->segment_id_len;
    j->block = block;
    /* We never send plaintext (iPXE refuses it, §3.6): asked for none, we use the default. */
    j->crypto = rq->hdr.crypto >= PCCRR_CRYPTO_AES_128 && rq->hdr.crypto <= PCCRR_CRYPTO_AES_256
        ? (enum pccrr_crypto)rq->hdr.crypto
        : PCCRR_CRYPTO_DEFAULT;
    /* Point queries (a few us), not the whole segment's rows: the block index changes with
     * every local add, so the cache of held blocks is often stale while peers fetch. */
    const struct held *h = held_peek(sv, j->id, j->id_len);
    int64_t next = 0;
    if (store_segment_secret_get(d->store, j->id, j->id_len, &j->secret) != 1 ||
        j->secret.secret_len < pccrr_crypto_key_len(j->crypto) ||
        store_served_block(d->store, j->id, j->id_len, block, &j->row) != 1 ||
        j->row.hash_len != j->id_len ||
        !servable(j->secret.version, j->secret.blocks, block, j->row.length, j->id_len) ||
        bs_slot_state(d->bs, j->id, j->id_len, j->row.file_owner, block) == BS_SLOT_BAD ||
        (j->secret.version == 1 &&
            (next = h ? held_next(h, block + 1)
                      : store_next_served_block(d->store, j->id, j->id_len, block)) < 0)) {
        OPENSSL_cleanse(&j->secret, sizeof(j->secret));
        free(j);
        reply_blk_empty(req, rq->segment_id, rq->segment_id_len, block);
        return;
    }
    j->version = j->secret.version;
    j->next = next > 0 && (uint64_t)next < j->secret.blocks ? (uint32_t)next : 0;
    sv->active++;
    if ((j->peer = peer))
        peer->active++;
    rate_submit(sv, j);
}

/* ---- HTTP ---- */

static void conn_seen(struct serve *sv, struct evhttp_request *req);

static void on_request(struct evhttp_request *req, void *arg)
{
    struct serve *sv = arg;
    conn_seen(sv, req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    /* http.sys matches the registered URL case-insensitively (§3.1). */
    if (!path || !pccrr_path_match(path)) {
        evhttp_send_error(req, HTTP_NOTFOUND, NULL);
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_send_error(req, HTTP_BADMETHOD, NULL);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len < PCCRR_HEADER_SIZE || len > PCCRR_REQUEST_MAX) {
        reply_bad(req, "body size out of bounds", 0);
        return;
    }
    const uint8_t *body = evbuffer_pullup(in, -1);
    static struct pccrr_request rq; /* loop thread only; 2 KiB of ranges */
    int rc = body ? pccrr_request_decode(body, len, &rq) : PCCRR_E_TRUNCATED;
    if (rc == PCCRR_E_VERSION || (rc == PCCRR_OK && rq.hdr.type == PCCRR_MSG_NEGO_REQ)) {
        reply_nego(req); /* §3.7: a major we do not speak gets our versions */
        return;
    }
    if (rc != PCCRR_OK) {
        reply_bad(req, "undecodable message", rc);
        return;
    }
    struct serve_peer *peer = peer_of(sv, req);
    if (peer)
        peer->requests++;
    bool busy = !serving(sv) || !peer || sv->active >= PEER_SERVE_ACTIVE_MAX ||
        peer->active >= PEER_SERVE_PER_PEER_MAX;
    if (rq.hdr.type == PCCRR_MSG_GETBLKLIST) {
        reply_blklist(req, &rq, busy ? NULL : held_get(sv, rq.segment_id, rq.segment_id_len));
        return;
    }
    if (rq.hdr.type == PCCRR_MSG_GETBLKS) {
        serve_getblks(sv, req, &rq, peer, busy);
        return;
    }
    reply_bad(req, "not a request this server answers", 0);
}

static void accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct serve *sv = arg;
    if (sv->nconns >= PEER_SERVE_CONNS_MAX)
        return; /* conn_closed resumes */
    for (unsigned i = 0; i < sv->nlisteners; i++)
        evconnlistener_enable(sv->listeners[i]);
}

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct serve *sv = arg;
    for (unsigned i = 0; i < sv->nconns; i++) {
        if (sv->conns[i] != evcon)
            continue;
        sv->conns[i] = sv->conns[--sv->nconns];
        if (sv->nconns == PEER_SERVE_CONNS_MAX - 1 &&
            !event_pending(sv->accept_ev, EV_TIMEOUT, NULL))
            accept_resume(-1, 0, sv);
        return;
    }
}

/* Counts the request's connection once; at the limit, accepting pauses. */
static void conn_seen(struct serve *sv, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!evcon)
        return;
    for (unsigned i = 0; i < sv->nconns; i++)
        if (sv->conns[i] == evcon)
            return;
    if (sv->nconns == PEER_SERVE_CONNS_MAX)
        return; /* accepted before the pause took hold: not counted, closes with its timeout */
    sv->conns[sv->nconns++] = evcon;
    evhttp_connection_set_closecb(evcon, conn_closed, sv);
    if (sv->nconns == PEER_SERVE_CONNS_MAX) {
        if (log_allowed())
            log_warn("MS-PCCRR server: %d peer connections open; accepting more when one closes",
                PEER_SERVE_CONNS_MAX);
        for (unsigned i = 0; i < sv->nlisteners; i++)
            evconnlistener_disable(sv->listeners[i]);
    }
}

/* accept failed: out of descriptors (or another error) pauses accepting for a while rather
 * than spinning on a listener that stays readable. */
/* evhttp owns its listeners' argument (the struct evhttp): servers by it, loop thread only. */
static struct serve *serves;

static void accept_error(struct evconnlistener *l, void *arg)
{
    (void)l;
    struct serve *sv = serves;
    int err = EVUTIL_SOCKET_ERROR();
    while (sv && (void *)sv->http != arg)
        sv = sv->next;
    if (!sv || event_pending(sv->accept_ev, EV_TIMEOUT, NULL))
        return;
    log_warn("MS-PCCRR server: accept: %s; not accepting for %d s", strerror(err),
        SERVER_ACCEPT_RETRY_SECONDS);
    for (unsigned i = 0; i < sv->nlisteners; i++)
        evconnlistener_disable(sv->listeners[i]);
    struct timeval tv = {SERVER_ACCEPT_RETRY_SECONDS, 0};
    event_add(sv->accept_ev, &tv);
}

/* An accepted peer connection's bufferevent: large reads and writes (PEER_HTTP_IO_MAX). */
static struct bufferevent *new_bev(struct event_base *base, void *arg)
{
    (void)arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev) {
        bufferevent_set_max_single_read(bev, PEER_HTTP_IO_MAX);
        bufferevent_set_max_single_write(bev, PEER_HTTP_IO_MAX);
    }
    return bev;
}
/* A listening socket on the family's any-address and peer_port; -1 (logged) if it fails. */
static int listen_any(int family, uint16_t port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_warn("MS-PCCRR server: no %s socket: %s", family == AF_INET ? "IPv4" : "IPv6",
            strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Accepted sockets inherit it: evhttp writes a response's headers and body apart, and
     * with Nagle each response would wait for the peer's delayed ACK (40 ms). */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        in->sin_addr.s_addr = htonl(INADDR_ANY);
        sl = sizeof(*in);
    } else {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        in6->sin6_addr = in6addr_any;
        sl = sizeof(*in6);
    }
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, PEER_SERVE_BACKLOG) != 0) {
        log_error("MS-PCCRR server: cannot listen on %s port %u: %s",
            family == AF_INET ? "0.0.0.0" : "[::]", (unsigned)port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int peer_serve_init(struct daemon *d)
{
    /* In every mode: secrets of segments bound by readers whose blocks never came (the
     * trigger of schema 005 takes the others with their last block). */
    int64_t pruned = store_segment_secrets_prune(d->store);
    if (pruned > 0)
        log_info("%lld segment secrets without blocks dropped", (long long)pruned);
    if (d->cfg.mode != MODE_DISTRIBUTED)
        return 0;
    struct serve *sv = calloc(1, sizeof(*sv));
    if (!sv || !(sv->http = evhttp_new(d->base)) ||
        !(sv->rate_ev = evtimer_new(d->base, rate_kick, sv)) ||
        !(sv->accept_ev = evtimer_new(d->base, accept_resume, sv))) {
        log_error("out of memory setting up the MS-PCCRR server");
        if (sv && sv->http)
            evhttp_free(sv->http);
        if (sv && sv->rate_ev)
            event_free(sv->rate_ev);
        free(sv);
        return -1;
    }
    sv->d = d;
    d->serve = sv;
    sv->next = serves;
    serves = sv;
    LIST_INIT(&sv->peers);
    TAILQ_INIT(&sv->rate_wait);
    TAILQ_INIT(&sv->running);
    clock_gettime(CLOCK_MONOTONIC, &sv->refilled);
    sv->tokens = 65644.0;
    evhttp_set_allowed_methods(sv->http, EVHTTP_REQ_POST); /* others: 501 */
    evhttp_set_max_body_size(sv->http, PCCRR_REQUEST_MAX);
    evhttp_set_max_headers_size(sv->http, PEER_SERVE_HEADERS_MAX);
    evhttp_set_timeout(sv->http, PEER_SERVE_TIMEOUT_S);
    evhttp_set_gencb(sv->http, on_request, sv);
    evhttp_set_bevcb(sv->http, new_bev, NULL);
    unsigned bound = 0;
    int families[2] = {d->cfg.ipv4 ? AF_INET : 0, d->cfg.ipv6 ? AF_INET6 : 0};
    for (int i = 0; i < 2; i++) {
        if (!families[i])
            continue;
        int fd = listen_any(families[i], d->cfg.peer_port);
        if (fd < 0)
            continue;
        struct evhttp_bound_socket *bsock = evhttp_accept_socket_with_handle(sv->http, fd);
        if (!bsock) {
            close(fd);
            continue;
        }
        struct evconnlistener *l = evhttp_bound_socket_get_listener(bsock);
        evconnlistener_set_error_cb(l, accept_error);
        sv->listeners[sv->nlisteners++] = l;
        bound++;
    }
    if (!bound) {
        log_error("MS-PCCRR server: not listening on port %u: peers cannot be served",
            (unsigned)d->cfg.peer_port);
        return -1;
    }
    log_info("MS-PCCRR server on port %u (%s%s%s)%s", (unsigned)d->cfg.peer_port,
        d->cfg.ipv4 ? "IPv4" : "", d->cfg.ipv4 && d->cfg.ipv6 ? ", " : "",
        d->cfg.ipv6 ? "IPv6" : "", d->cfg.serve ? "" : ", serving nothing (serve = no)");
    return 0;
}

void peer_serve_free(struct daemon *d)
{
    struct serve *sv = d->serve;
    if (!sv)
        return;
    /* Jobs waiting for the rate limit are answered "not held" (which also frees a request
     * whose connection went meanwhile); evhttp_free then closes every connection. */
    while (!TAILQ_EMPTY(&sv->rate_wait)) {
        struct serve_job *j = TAILQ_FIRST(&sv->rate_wait);
        TAILQ_REMOVE(&sv->rate_wait, j, link);
        reply_blk_empty(j->req, j->id, j->id_len, j->block);
        job_end(j);
    }
    for (struct serve **pp = &serves; *pp; pp = &(*pp)->next)
        if (*pp == sv) {
            *pp = sv->next;
            break;
        }
    sv->nlisteners = 0; /* evhttp_free frees them before the connections (conn_closed) */
    evhttp_free(sv->http);
    event_free(sv->rate_ev);
    event_free(sv->accept_ev);
    struct serve_peer *p;
    while ((p = LIST_FIRST(&sv->peers))) {
        LIST_REMOVE(p, link);
        free(p);
    }
    free(sv);
    d->serve = NULL;
}

uint64_t peer_serve_served_bytes(struct daemon *d)
{
    struct serve *sv = d->serve;
    return sv ? sv->counts.served_bytes : 0;
}

size_t peer_serve_peers(struct daemon *d, struct peer_served *out, size_t max)
{
    struct serve *sv = d->serve;
    size_t n = 0;
    struct serve_peer *p;
    if (!sv)
        return 0;
    LIST_FOREACH (p, &sv->peers, link) {
        if (n == max)
            break;
        struct sockaddr_in6 *a = &p->addr;
        memset(&out[n], 0, sizeof(out[n]));
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
            struct sockaddr_in *in = (struct sockaddr_in *)&out[n].addr;
            in->sin_family = AF_INET;
            memcpy(&in->sin_addr, &a->sin6_addr.s6_addr[12], 4);
            out[n].addr_len = sizeof(*in);
        } else {
            memcpy(&out[n].addr, a, sizeof(*a));
            out[n].addr_len = sizeof(*a);
        }
        out[n].bytes = p->bytes;
        out[n].requests = p->requests;
        out[n].active = p->active;
        out[n].last_seen = p->last_seen;
        n++;
    }
    return n;
}
