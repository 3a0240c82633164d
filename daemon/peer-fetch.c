/* SPDX-License-Identifier: MIT */
/*
 * peer-fetch.c - fetching missing blocks from peers (peer.h, peer-fetch.h). A read that misses
 * locally waits on the fetch of the segment holding its offset: Probes for the segment ID
 * (discovery.c, V1 form for V1 content, V2 for V2), then MSG_GETBLKS (MS-PCCRR) over HTTP POST
 * to each peer that answered from the local subnet, several peers at once and
 * PEER_FETCH_CONNS_PER_PEER requests in flight per peer, each with the 2 s request timer.
 * Every MSG_BLK is decrypted by its CryptoAlgoId with the segment key of the reader's content
 * information and verified against the reader's hash before it is stored, as the reader's
 * AddData would store it (content_add_fetched). A peer that sends a block failing its hash, a
 * malformed message, or nothing in time twice running (no_answer) is distrusted for
 * PEER_FETCH_DISTRUST_SECONDS.
 */
#include "peer-fetch.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "content-internal.h"
#include "log.h"
#include "pccrr.h"
#include "peer.h"
#include "store.h"

#define PCCRR_PATH "/116B50EB-ECE2-41ac-8429-9F9E963361B7/"
/* Peers remembered (Peers reply, distrust): the least recently seen goes first. */
#define PEER_RECS_MAX 256
/* "ip:port", "[ip]:port" */
#define PEER_NAME_MAX (INET6_ADDRSTRLEN + IF_NAMESIZE + 10)

/* What this daemon knows of one peer it fetched from (or tried to). */
struct peer_rec {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char name[PEER_NAME_MAX];
    uint64_t fetched; /* verified bytes */
    time_t last_seen;
    time_t distrust_until;
    const char *why;
    struct peer_rec *next;
};

struct fetch_daemon {
    struct peer_fetch_counts counts; /* first: PEER_FETCH_BYTES reads it (peer.h) */
    struct daemon *d;
    LIST_HEAD(, fetch) fetches;
    LIST_HEAD(, fetch) dying; /* ended, their connections not yet freed (fetch_kill) */
    struct peer_rec *peers;
    unsigned npeers;
    LIST_HEAD(, probe_ctx) probes; /* Probes whose window is open */
    /* ProbeMatches of the last PEER_FETCH_MATCH_SECONDS, for the segments that follow. */
    struct cached_match *matches;
    size_t next_match;
};

/*
 * One Probe of ours (for a fetch's segment and the segments after it): its matches go to
 * every fetch of their segment and to the match cache, so the fetches of the next segments
 * start without probing again. It outlives the fetch that started it.
 */
struct probe_ctx {
    struct fetch_daemon *fd;
    struct discovery_probe *probe;
    LIST_ENTRY(probe_ctx) link;
};

struct cached_match {
    uint8_t id[PEER_ID_MAX];
    size_t id_len;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    time_t at; /* 0: empty */
};

enum { ST_SKIP, ST_WANT, ST_FLIGHT, ST_STORING, ST_DONE, ST_FAILED };

struct fpeer;
/* One connection to a peer and its one request in flight. */
struct slot {
    struct fetch *f;
    struct fpeer *p;
    struct evhttp_connection *conn;
    struct evhttp_request *req; /* in flight, while busy */
    struct event *timer;        /* the request timer (PEER_FETCH_REQUEST_SECONDS in all) */
    bool busy;
    uint32_t block;
    uint64_t seq; /* the peer's request number of the one in flight (fpeer.sent) */
};

struct fpeer {
    struct peer_rec *rec;
    bool failed;
    /* A request of it went unanswered in time: the ones sent after that (sent > slow_seq)
     * get one more chance; one of them unanswered too, and the peer is distrusted. An answer
     * clears it. */
    bool slow;
    uint64_t sent, slow_seq;
    bool has_bitmap;
    uint8_t bitmap[PEER_SEGMENT_BLOCKS_MAX / 8]; /* V2-form availability */
    uint8_t lacks[PEER_SEGMENT_BLOCKS_MAX / 8];  /* answered SizeOfBlock 0 */
    struct slot slots[PEER_FETCH_CONNS_PER_PEER];
};

struct fetch {
    struct fetch_daemon *fd;
    struct conn *c;
    struct content_handle *h;
    size_t seg;
    uint32_t nblocks;
    uint8_t st[PEER_SEGMENT_BLOCKS_MAX];
    struct probe_ctx *pctx; /* the Probe whose window this fetch waits for, or NULL */
    bool probe_done, ended;
    /* reader: a read waited on it (not only read-ahead); chained: the next segment's fetch
     * was started (fetch_chain) once this one had every block asked for. */
    bool reader, chained;
    unsigned refs; /* the fetches list until it ends, each store under way */
    struct event *kill_ev;
    struct event *test_ev;  /* PEER_FETCH_TEST_PEERS_ENV: the peers it names "answer" */
    struct event *chain_ev; /* fetch_chain: starts the next segment's fetch */
    struct fpeer peers[PEER_FETCH_PEERS_MAX];
    size_t npeers;
    LIST_HEAD(, peer_fetch_wait) waiters;
    LIST_ENTRY(fetch) link;
};

/* A block on its way to the store (content_add_fetched's fill and done). */
struct store_ticket {
    struct fetch *f;
    uint32_t block;
    uint32_t len;
    struct fpeer *p;
    uint8_t *body;           /* the peer's MSG_BLK; t->k points into it */
    struct pccrr_response k; /* decoded on the loop: the header checked, not the block */
    const uint8_t *key;      /* the reader's segment secret (Kp; the handle's ci) */
    size_t key_len;
};

static struct fetch_daemon *fetch_state(const struct daemon *d)
{
    return d->fetch;
}

int peer_fetch_init(struct daemon *d)
{
    if (d->cfg.mode != MODE_DISTRIBUTED)
        return 0;
    struct fetch_daemon *fd = calloc(1, sizeof(*fd));
    if (!fd)
        return -1;
    fd->d = d;
    LIST_INIT(&fd->fetches);
    LIST_INIT(&fd->dying);
    LIST_INIT(&fd->probes);
    if (!(fd->matches = calloc(PEER_FETCH_MATCHES_MAX, sizeof(*fd->matches)))) {
        free(fd);
        return -1;
    }
    d->fetch = fd;
    return 0;
}

static void fetch_end(struct fetch *f);
static void fetch_kill(evutil_socket_t fd, short what, void *arg);

void peer_fetch_free(struct daemon *d)
{
    struct fetch_daemon *fd = d->fetch;
    if (!fd)
        return;
    while (!LIST_EMPTY(&fd->fetches))
        fetch_end(LIST_FIRST(&fd->fetches));
    while (!LIST_EMPTY(&fd->dying)) { /* the loop is over: fetch_kill will not run */
        struct fetch *f = LIST_FIRST(&fd->dying);
        event_del(f->kill_ev);
        fetch_kill(-1, 0, f);
    }
    while (!LIST_EMPTY(&fd->probes)) {
        struct probe_ctx *pc = LIST_FIRST(&fd->probes);
        LIST_REMOVE(pc, link);
        discovery_probe_cancel(pc->probe);
        free(pc);
    }
    free(fd->matches);
    while (fd->peers) {
        struct peer_rec *r = fd->peers;
        fd->peers = r->next;
        free(r);
    }
    free(fd);
    d->fetch = NULL;
}

void peer_fetch_counts_refresh(struct daemon *d)
{
    struct fetch_daemon *fd = d->fetch;
    if (fd)
        fd->counts.served_bytes = peer_serve_served_bytes(d);
}

bool peer_fetch_enabled(const struct conn *c)
{
    return c->d->fetch != NULL && !c->d->stopping;
}

/* ---- peers ---- */

static void addr_name(const struct sockaddr_storage *ss, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(out, n, "%s:%u", ip, (unsigned)ntohs(s4->sin_port));
    } else {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(out, n, "[%s]:%u", ip, (unsigned)ntohs(s6->sin6_port));
    }
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
        memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

/* The record of a peer, created (the least recently seen replaced when full); NULL: memory. */
static struct peer_rec *peer_rec_get(struct fetch_daemon *fd, const struct sockaddr_storage *ss,
    socklen_t len)
{
    struct peer_rec **oldest = NULL;
    for (struct peer_rec **pp = &fd->peers; *pp; pp = &(*pp)->next) {
        if (same_addr(&(*pp)->addr, ss))
            return *pp;
        if (!oldest || (*pp)->last_seen < (*oldest)->last_seen)
            oldest = pp;
    }
    struct peer_rec *r;
    if (fd->npeers >= PEER_RECS_MAX && oldest) {
        r = *oldest;
        *oldest = r->next;
        fd->npeers--;
        memset(r, 0, sizeof(*r));
    } else if (!(r = calloc(1, sizeof(*r)))) {
        return NULL;
    }
    memcpy(&r->addr, ss, len);
    r->addr_len = len;
    addr_name(ss, r->name, sizeof(r->name));
    r->next = fd->peers;
    fd->peers = r;
    fd->npeers++;
    return r;
}

/* True if addr is on the subnet of one of this host's interfaces (IPv6: link-local too). */
static bool on_local_subnet(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6 &&
        IN6_IS_ADDR_LINKLOCAL(&((const struct sockaddr_in6 *)ss)->sin6_addr))
        return true;
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) != 0)
        return false;
    bool found = false;
    for (struct ifaddrs *i = ifs; i && !found; i = i->ifa_next) {
        if (!i->ifa_addr || !i->ifa_netmask || i->ifa_addr->sa_family != ss->ss_family ||
            !(i->ifa_flags & IFF_UP))
            continue;
        const uint8_t *a, *m, *p;
        size_t n;
        if (ss->ss_family == AF_INET) {
            a = (const uint8_t *)&((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr;
            m = (const uint8_t *)&((const struct sockaddr_in *)(const void *)i->ifa_netmask)
                    ->sin_addr;
            p = (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
            n = 4;
        } else {
            a = (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)i->ifa_addr)
                    ->sin6_addr;
            m = (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)i->ifa_netmask)
                    ->sin6_addr;
            p = (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
            n = 16;
        }
        bool match = true;
        for (size_t k = 0; k < n && match; k++)
            match = (a[k] & m[k]) == (p[k] & m[k]);
        found = match;
    }
    freeifaddrs(ifs);
    return found;
}

static void distrust(struct fetch *f, struct fpeer *p, const char *why)
{
    time_t now = time(NULL);
    p->failed = true;
    p->rec->distrust_until = now + PEER_FETCH_DISTRUST_SECONDS;
    p->rec->why = why;
    log_warn("peer %s: %s: distrusted for %d s; the fetch goes on with other peers", p->rec->name,
        why, PEER_FETCH_DISTRUST_SECONDS);
    for (size_t j = 0; j < PEER_FETCH_CONNS_PER_PEER; j++)
        if (p->slots[j].busy && f->st[p->slots[j].block] == ST_FLIGHT)
            f->st[p->slots[j].block] = ST_WANT;
}

/*
 * sl's request got no answer in time (PEER_FETCH_REQUEST_SECONDS), or its connection failed.
 * A peer is not distrusted for one slow answer (a busy disk, a burst of other requests, a
 * rate limit): the first time, its requests are sent again; it is distrusted only when one
 * of those, sent after the first went unanswered, goes unanswered too with no answer from it
 * in between. Requests already in flight at the first time out with it, not against it.
 */
static void no_answer(struct fetch *f, struct fpeer *p, const struct slot *sl)
{
    if (p->failed)
        return;
    if (!p->slow) {
        p->slow = true;
        p->slow_seq = p->sent;
        log_info("peer %s: no answer in %d s: asked again before it is distrusted", p->rec->name,
            PEER_FETCH_REQUEST_SECONDS);
        return;
    }
    if (sl->seq > p->slow_seq)
        distrust(f, p, "no answer in time");
}

/* ---- the fetch ---- */

static void fetch_unref(struct fetch *f)
{
    if (--f->refs)
        return;
    for (size_t i = 0; i < f->npeers; i++)
        for (size_t j = 0; j < PEER_FETCH_CONNS_PER_PEER; j++) {
            struct slot *sl = &f->peers[i].slots[j];
            if (sl->timer)
                event_free(sl->timer);
            if (sl->conn)
                evhttp_connection_free(sl->conn); /* with its request, if one is in flight */
        }
    event_free(f->kill_ev);
    if (f->test_ev)
        event_free(f->test_ev);
    if (f->chain_ev)
        event_free(f->chain_ev); /* not run yet: no read-ahead for a fetch that is gone */
    content_handle_unref(f->h);
    conn_unref(f->c);
    free(f);
}

/* Loop, outside any of the fetch's callbacks: its connections go (with what is in flight). */
static void fetch_kill(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fetch *f = arg;
    LIST_REMOVE(f, link); /* dying */
    fetch_unref(f);
}

static void wake(struct fetch *f, enum peer_fetch_event ev)
{
    struct peer_fetch_wait *w = LIST_FIRST(&f->waiters), *next;
    for (; w; w = next) {
        next = LIST_NEXT(w, link);
        if (ev == PEER_FETCH_ENDED) {
            LIST_REMOVE(w, link);
            w->f = NULL;
        }
        w->fn(w, ev); /* may detach w (only w) */
    }
}

static void fetch_end(struct fetch *f)
{
    if (f->ended)
        return;
    f->ended = true;
    LIST_REMOVE(f, link);
    LIST_INSERT_HEAD(&f->fd->dying, f, link);
    f->pctx = NULL; /* the Probe goes on for the cache and other fetches */
    if (f->test_ev)
        event_del(f->test_ev);
    f->refs++; /* held while the waiters run */
    wake(f, PEER_FETCH_ENDED);
    /* The list's reference goes in fetch_kill, outside any of the fetch's HTTP callbacks. */
    if (event_add(f->kill_ev, &(struct timeval){0, 0}) != 0) {
        LIST_REMOVE(f, link);
        fetch_unref(f);
    }
    fetch_unref(f);
}

static void pump(struct fetch *f);
static void fetch_chain(struct fetch *f);

/*
 * Worker: the block's plaintext, decrypted from the peer's message by its own CryptoAlgoId
 * straight into out (len bytes: the length the reader's content information gives; out has
 * CONTENT_FILL_SLACK bytes of room past them for the padding). content-add.c verifies it
 * against the reader's hash next, before anything is written.
 */
_Static_assert(CONTENT_FILL_SLACK >= PCCRR_IV_SIZE, "a block's padding must fit its op's buffer");

static int store_fill(void *arg, uint8_t *out, size_t len)
{
    struct store_ticket *t = arg;
    /* Never plaintext (§3.6, as iPXE): a MSG_BLK without crypto or IV is refused. Plaintext
     * and padding fit out only if the ciphertext is at most one cipher block longer. */
    if (!t->k.block || t->k.block_len < len || t->k.block_len > len + PCCRR_IV_SIZE ||
        t->k.hdr.crypto == PCCRR_CRYPTO_NONE || !t->k.iv || t->k.iv_len != PCCRR_IV_SIZE)
        return -1;
    size_t got = 0;
    if (pccrr_block_decrypt((enum pccrr_crypto)t->k.hdr.crypto, t->key, t->key_len, t->k.iv,
            t->k.block, t->k.block_len, out, len + CONTENT_FILL_SLACK, &got) != 0 ||
        got != len)
        return -1;
    return 0;
}

/* Loop: the block is stored (counted, readers woken), or failed: a block that failed its
 * hash (or could not be decrypted) distrusts the peer that sent it. */
static void store_done(void *arg, uint32_t status)
{
    struct store_ticket *t = arg;
    struct fetch *f = t->f;
    if (status == ERROR_SUCCESS) {
        t->p->rec->fetched += t->len;
        f->fd->counts.fetched_bytes += t->len;
    }
    if (!f->ended) {
        f->st[t->block] = status == ERROR_SUCCESS ? ST_DONE
            : status == ERROR_INVALID_DATA        ? ST_WANT
                                                  : ST_FAILED;
        if (status == ERROR_INVALID_DATA && !t->p->failed)
            distrust(f, t->p, "a block failing its hash");
        if (status == ERROR_SUCCESS)
            wake(f, PEER_FETCH_PROGRESS);
        pump(f);
    }
    free(t->body);
    free(t);
    fetch_unref(f);
}

static void on_response(struct evhttp_request *req, void *arg)
{
    struct slot *sl = arg;
    struct fetch *f = sl->f;
    struct fpeer *p = sl->p;
    uint32_t b = sl->block;
    sl->busy = false;
    sl->req = NULL;
    if (sl->timer)
        evtimer_del(sl->timer);
    if (f->ended || p->failed)
        return;
    f->st[b] = ST_WANT; /* unless it is stored below */
    const struct ci_info *ci = f->h->ci;
    const struct ci_segment *seg = &ci->segments[f->seg];
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (code == 0) { /* the connection failed or stayed silent (its own timeout) */
        no_answer(f, p, sl);
        pump(f);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    /* The body in a buffer of our own (one copy): it goes to a worker with the block. */
    uint8_t *body = n && n <= PCCRR_RESPONSE_MAX + PCCRR_TRANSPORT_SIZE ? malloc(n) : NULL;
    struct store_ticket *t = NULL;
    if (body && evbuffer_remove(in, body, n) != (int)n) {
        free(body);
        body = NULL;
    }
    if (code != 200 || !body || !(t = calloc(1, sizeof(*t))) ||
        pccrr_response_decode(body, n, &t->k) != 0 || t->k.hdr.type != PCCRR_MSG_BLK ||
        t->k.segment_id_len != ci->digest_len ||
        memcmp(t->k.segment_id, seg->id, ci->digest_len) != 0 || t->k.block_index != b) {
        free(body);
        free(t);
        distrust(f, p, "a malformed answer");
        pump(f);
        return;
    }
    p->rec->last_seen = time(NULL);
    p->slow = false;           /* it answers */
    if (t->k.block_len == 0) { /* "I don't have it" (or busy) */
        free(body);
        free(t);
        p->lacks[b / 8] |= (uint8_t)(1u << (b % 8));
        pump(f);
        return;
    }
    /* Decrypted by the MSG_BLK's own CryptoAlgoId with the reader's segment key (Kp) and
     * verified against the reader's hash on a worker, then stored as the reader's AddData
     * would store it (store_fill, content_add_fetched): nothing of it is stored or returned
     * unless it passes. */
    uint32_t len = ci_block_length(seg, b);
    uint64_t off = seg->offset + (uint64_t)b * (ci->version == CI_VERSION_2 ? 0 : seg->block_size);
    t->f = f;
    t->block = b;
    t->len = len;
    t->p = p;
    t->body = body;
    t->key = seg->secret;
    t->key_len = ci->digest_len;
    f->refs++;
    f->st[b] = ST_STORING;
    if (content_add_fetched(f->c, f->h, off, len, store_fill, t, store_done, t) != 0) {
        f->refs--;
        f->st[b] = ST_FAILED;
        free(body);
        free(t);
    }
    pump(f);
}

static bool peer_may_have(const struct fpeer *p, uint32_t b)
{
    if (p->lacks[b / 8] & (1u << (b % 8)))
        return false;
    return !p->has_bitmap || (p->bitmap[b / 8] & (1u << (b % 8)));
}

/*
 * The request timer (§3.7): the whole answer within PEER_FETCH_REQUEST_SECONDS, however
 * slowly it trickles in (the connection's own timeout only bounds silence). The request is
 * cancelled (its callback does not run) and its block asked for again; the peer is
 * distrusted only if that happens again (no_answer).
 */
static void slot_timeout(evutil_socket_t sock, short what, void *arg)
{
    (void)sock;
    (void)what;
    struct slot *sl = arg;
    struct fetch *f = sl->f;
    struct fpeer *p = sl->p;
    if (!sl->busy)
        return;
    if (sl->req)
        evhttp_cancel_request(sl->req);
    sl->req = NULL;
    sl->busy = false;
    if (f->ended)
        return;
    if (f->st[sl->block] == ST_FLIGHT)
        f->st[sl->block] = ST_WANT;
    if (!p->failed)
        no_answer(f, p, sl);
    pump(f);
}

static bool send_request(struct fetch *f, struct fpeer *p, struct slot *sl, uint32_t b)
{
    struct daemon *d = f->fd->d;
    const struct ci_info *ci = f->h->ci;
    if (!sl->conn) {
        char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2] = "";
        uint16_t port;
        const struct sockaddr_storage *ss = &p->rec->addr;
        if (ss->ss_family == AF_INET) {
            inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, host, sizeof(host));
            port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
        } else {
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
            char ifn[IF_NAMESIZE];
            if (s6->sin6_scope_id && if_indextoname(s6->sin6_scope_id, ifn)) {
                strncat(host, "%", sizeof(host) - strlen(host) - 1);
                strncat(host, ifn, sizeof(host) - strlen(host) - 1);
            }
            port = ntohs(s6->sin6_port);
        }
        if (!(sl->conn = evhttp_connection_base_new(d->base, NULL, host, port)))
            return false;
        evhttp_connection_set_timeout(sl->conn, PEER_FETCH_REQUEST_SECONDS);
        evhttp_connection_set_retries(sl->conn, 0);
        evhttp_connection_set_max_body_size(sl->conn, PCCRR_RESPONSE_MAX + PCCRR_TRANSPORT_SIZE);
        struct bufferevent *bev = evhttp_connection_get_bufferevent(sl->conn);
        bufferevent_set_max_single_read(bev, PEER_HTTP_IO_MAX);
        bufferevent_set_max_single_write(bev, PEER_HTTP_IO_MAX);
    }
    struct evhttp_request *req = evhttp_request_new(on_response, sl);
    if (!req)
        return false;
    uint8_t msg[128];
    struct pccrr_range one = {b, 1};
    long n = pccrr_encode_getblks(msg, sizeof(msg), PCCRR_CRYPTO_DEFAULT, ci->segments[f->seg].id,
        ci->digest_len, &one, 1);
    if (n <= 0) {
        evhttp_request_free(req);
        return false;
    }
    struct evkeyvalq *hd = evhttp_request_get_output_headers(req);
    evhttp_add_header(hd, "Host", p->rec->name);
    evhttp_add_header(hd, "Content-Type", "application/octet-stream");
    if (evbuffer_add(evhttp_request_get_output_buffer(req), msg, (size_t)n) != 0) {
        evhttp_request_free(req);
        return false;
    }
    if (!sl->timer && !(sl->timer = evtimer_new(d->base, slot_timeout, sl))) {
        evhttp_request_free(req);
        return false;
    }
    sl->busy = true;
    sl->block = b;
    sl->seq = ++p->sent;
    f->st[b] = ST_FLIGHT;
    if (evhttp_make_request(sl->conn, req, EVHTTP_REQ_POST, PCCRR_PATH) != 0) {
        sl->busy = false; /* evhttp freed req */
        f->st[b] = ST_WANT;
        return false;
    }
    sl->req = req;
    struct timeval tv = {PEER_FETCH_REQUEST_SECONDS, 0};
    evtimer_add(sl->timer, &tv);
    return true;
}

/* Hands wanted blocks to idle connections; ends the fetch when nothing more can come. */
static void pump(struct fetch *f)
{
    if (f->ended)
        return;
    for (size_t i = 0; i < f->npeers; i++) {
        struct fpeer *p = &f->peers[i];
        if (p->failed)
            continue;
        for (size_t j = 0; j < PEER_FETCH_CONNS_PER_PEER && !p->failed; j++) {
            struct slot *sl = &p->slots[j];
            if (sl->busy)
                continue;
            uint32_t b = 0;
            while (b < f->nblocks && !(f->st[b] == ST_WANT && peer_may_have(p, b)))
                b++;
            if (b == f->nblocks)
                break;
            if (!send_request(f, p, sl, b))
                distrust(f, p, "cannot be reached");
        }
    }
    bool busy = false, wanted = false, can = false;
    for (uint32_t b = 0; b < f->nblocks; b++) {
        busy |= f->st[b] == ST_FLIGHT || f->st[b] == ST_STORING;
        if (f->st[b] == ST_WANT) {
            wanted = true;
            for (size_t i = 0; i < f->npeers && !can; i++)
                can = !f->peers[i].failed && peer_may_have(&f->peers[i], b);
        }
    }
    if (!wanted && f->reader && !f->chained && f->npeers > 0)
        fetch_chain(f);
    if (busy || (wanted && (can || !f->probe_done)))
        return;
    fetch_end(f); /* all fetched, or the rest held by no peer we trust */
}

/* m is a peer on a local subnet holding blocks of segment seg of f's content: it joins f. */
static void fetch_add_peer(struct fetch *f, const struct discovery_match *m)
{
    const struct ci_info *ci = f->h->ci;
    if (f->ended || m->segment_id_len != ci->digest_len ||
        memcmp(m->segment_id, ci->segments[f->seg].id, ci->digest_len) != 0)
        return;
    struct peer_rec *rec = peer_rec_get(f->fd, &m->peer, m->peer_len);
    if (!rec)
        return;
    time_t now = time(NULL);
    rec->last_seen = now;
    if (rec->distrust_until > now)
        return;
    struct fpeer *p = NULL;
    for (size_t i = 0; i < f->npeers && !p; i++)
        if (f->peers[i].rec == rec)
            p = &f->peers[i];
    if (!p) {
        if (f->npeers == PEER_FETCH_PEERS_MAX)
            return;
        p = &f->peers[f->npeers++];
        memset(p, 0, sizeof(*p));
        p->rec = rec;
        for (size_t j = 0; j < PEER_FETCH_CONNS_PER_PEER; j++) {
            p->slots[j].f = f;
            p->slots[j].p = p;
        }
    }
    if (ci->version == CI_VERSION_1 && m->bitmap && m->bitmap_len) {
        p->has_bitmap = true;
        memset(p->bitmap, 0, sizeof(p->bitmap));
        memcpy(p->bitmap, m->bitmap,
            m->bitmap_len < sizeof(p->bitmap) ? m->bitmap_len : sizeof(p->bitmap));
    }
    pump(f);
}

/* Checked again here whatever discovery did: only peers on a local subnet are contacted. */
static bool match_acceptable(const struct discovery_match *m)
{
    if (on_local_subnet(&m->peer))
        return true;
    char name[80];
    addr_name(&m->peer, name, sizeof(name));
    log_warn("ProbeMatch from %s: not on a local subnet: ignored", name);
    return false;
}

/* The fetches whose segment is id (or that wait on pc's window), each held: n of them. */
static size_t fetches_of(struct fetch_daemon *fd, const uint8_t *id, size_t id_len,
    const struct probe_ctx *pc, struct fetch **out, size_t max)
{
    size_t n = 0;
    struct fetch *f;
    LIST_FOREACH (f, &fd->fetches, link) {
        const struct ci_info *ci = f->h->ci;
        bool same = pc
            ? f->pctx == pc
            : ci->digest_len == id_len && memcmp(ci->segments[f->seg].id, id, id_len) == 0;
        if (same && n < max) {
            f->refs++;
            out[n++] = f;
        }
    }
    return n;
}

static void probe_match(void *arg, const struct discovery_match *m)
{
    struct probe_ctx *pc = arg;
    struct fetch_daemon *fd = pc->fd;
    if (!match_acceptable(m) || m->segment_id_len > PEER_ID_MAX)
        return;
    struct cached_match *cm = &fd->matches[fd->next_match];
    fd->next_match = (fd->next_match + 1) % PEER_FETCH_MATCHES_MAX;
    memcpy(cm->id, m->segment_id, m->segment_id_len);
    cm->id_len = m->segment_id_len;
    memcpy(&cm->peer, &m->peer, m->peer_len);
    cm->peer_len = m->peer_len;
    cm->at = time(NULL);
    struct fetch *fs[64];
    size_t n = fetches_of(fd, m->segment_id, m->segment_id_len, NULL, fs, 64);
    for (size_t i = 0; i < n; i++) {
        fetch_add_peer(fs[i], m);
        fetch_unref(fs[i]);
    }
}

static void probe_done(void *arg)
{
    struct probe_ctx *pc = arg;
    struct fetch_daemon *fd = pc->fd;
    LIST_REMOVE(pc, link);
    struct fetch *fs[64];
    size_t n;
    /* In turns: a fetch that ends may start others, which do not wait on this window. */
    while ((n = fetches_of(fd, NULL, 0, pc, fs, 64)) > 0) {
        for (size_t i = 0; i < n; i++) {
            struct fetch *f = fs[i];
            f->pctx = NULL;
            f->probe_done = true;
            if (f->npeers == 0 && !f->ended)
                log_info("segment %zu: no peer answered the Probes", f->seg);
            pump(f);
            fetch_unref(f);
        }
    }
    free(pc);
}

/*
 * Peers for f's segment: those that answered a Probe of ours for it in the last
 * PEER_FETCH_MATCH_SECONDS (then no Probe), else a Probe for it and up to
 * PEER_FETCH_PROBE_SEGMENTS - 1 segments after it. -1 if nothing can be sent.
 */
static int fetch_find_peers(struct fetch *f)
{
    struct fetch_daemon *fd = f->fd;
    const struct ci_info *ci = f->h->ci;
    const uint8_t *id = ci->segments[f->seg].id;
    time_t now = time(NULL);
    struct discovery_match ms[PEER_FETCH_PEERS_MAX];
    size_t n = 0;
    for (size_t i = 0; i < PEER_FETCH_MATCHES_MAX && n < PEER_FETCH_PEERS_MAX; i++) {
        const struct cached_match *cm = &fd->matches[i];
        if (!cm->at || now - cm->at > PEER_FETCH_MATCH_SECONDS || cm->id_len != ci->digest_len ||
            memcmp(cm->id, id, ci->digest_len) != 0)
            continue;
        struct discovery_match *m = &ms[n++];
        memset(m, 0, sizeof(*m));
        memcpy(&m->peer, &cm->peer, cm->peer_len);
        m->peer_len = cm->peer_len;
        memcpy(m->segment_id, id, ci->digest_len);
        m->segment_id_len = ci->digest_len;
        m->version = ci->version == CI_VERSION_2 ? 2 : 1;
    }
    if (n) {
        /* Cached answers, from peers still trusted: no Probe (pump waits for none). */
        f->probe_done = true;
        for (size_t i = 0; i < n && !f->ended; i++)
            fetch_add_peer(f, &ms[i]);
        if (f->ended || f->npeers > 0)
            return 0;
        f->probe_done = false; /* every one of them distrusted now: ask again */
    }
    struct probe_ctx *pc = calloc(1, sizeof(*pc));
    if (!pc)
        return -1;
    const uint8_t *ids[PEER_FETCH_PROBE_SEGMENTS];
    size_t lens[PEER_FETCH_PROBE_SEGMENTS], k = 0;
    for (size_t s = f->seg; s < ci->n_segments && k < PEER_FETCH_PROBE_SEGMENTS; s++, k++) {
        ids[k] = ci->segments[s].id;
        lens[k] = ci->digest_len;
    }
    pc->fd = fd;
    pc->probe = discovery_probe_start(fd->d, ci->version == CI_VERSION_2 ? 2 : 1, ids, lens, k,
        PEER_FETCH_DISCOVERY_MS, probe_match, probe_done, pc);
    if (!pc->probe) {
        free(pc);
        return -1;
    }
    LIST_INSERT_HEAD(&fd->probes, pc, link);
    f->pctx = pc;
    return 0;
}

/* PEER_FETCH_TEST_PEERS_ENV: its peers reported as ProbeMatches, then the window closes. */
static void test_peers(evutil_socket_t sock, short what, void *arg)
{
    (void)sock;
    (void)what;
    struct fetch *f = arg;
    const struct ci_info *ci = f->h->ci;
    const char *env = getenv(PEER_FETCH_TEST_PEERS_ENV);
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", env ? env : "");
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t && !f->ended; t = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(t, ':');
        struct discovery_match m;
        memset(&m, 0, sizeof(m));
        struct sockaddr_in *s4 = (struct sockaddr_in *)&m.peer;
        if (!colon)
            continue;
        *colon = '\0';
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET, t, &s4->sin_addr) != 1)
            continue;
        m.peer_len = sizeof(*s4);
        memcpy(m.segment_id, ci->segments[f->seg].id, ci->digest_len);
        m.segment_id_len = ci->digest_len;
        m.version = ci->version == CI_VERSION_2 ? 2 : 1;
        if (match_acceptable(&m))
            fetch_add_peer(f, &m);
    }
    if (!f->ended) {
        f->probe_done = true;
        pump(f);
    }
}

/*
 * A fetch of blocks [from, nblocks) of segment seg that missing[] marks, started (Probes, or
 * the ProbeMatches kept): NULL if none can run (nothing to probe with, out of memory) or it
 * ended at once.
 */
static struct fetch *fetch_new(struct conn *c, struct content_handle *h, size_t seg, uint32_t from,
    const bool *missing, uint32_t nblocks)
{
    struct fetch_daemon *fd = fetch_state(c->d);
    struct fetch *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->fd = fd;
    f->c = c;
    f->h = h;
    f->seg = seg;
    f->nblocks = nblocks;
    f->refs = 1;
    LIST_INIT(&f->waiters);
    for (uint32_t b = from; b < nblocks; b++)
        f->st[b] = missing[b] ? ST_WANT : ST_SKIP;
    f->kill_ev = evtimer_new(c->d->base, fetch_kill, f);
    const char *test = getenv(PEER_FETCH_TEST_PEERS_ENV);
    if (f->kill_ev && test && *test) {
        struct timeval now = {0, 0};
        if ((f->test_ev = evtimer_new(c->d->base, test_peers, f)) &&
            evtimer_add(f->test_ev, &now) != 0) {
            event_free(f->test_ev);
            f->test_ev = NULL;
        }
    }
    if (!f->kill_ev || (test && *test && !f->test_ev)) {
        if (f->kill_ev)
            event_free(f->kill_ev);
        free(f);
        return NULL;
    }
    h->refs++;
    c->refs++;
    LIST_INSERT_HEAD(&fd->fetches, f, link);
    f->refs++; /* finding peers may end it */
    if (!f->test_ev && fetch_find_peers(f) != 0) {
        fetch_end(f); /* nothing to probe with: held by nobody */
        fetch_unref(f);
        return NULL;
    }
    bool ended = f->ended;
    fetch_unref(f);
    return ended ? NULL : f;
}

/* The store's rows of segment seg that h may read (its hash, its length, shared or its uid's
 * own): those blocks are not fetched again. */
struct have_ctx {
    const struct ci_info *ci;
    const struct ci_segment *seg;
    uint32_t uid, nblocks;
    bool *missing;
};

static int have_row(void *arg, const struct store_block_row *row)
{
    struct have_ctx *hc = arg;
    if (row->block >= hc->nblocks)
        return 0;
    const uint8_t *hash = content_listed_hash(hc->ci, hc->seg, row->block);
    if (hash && row->hash_len == hc->ci->digest_len &&
        memcmp(hash, row->hash, row->hash_len) == 0 &&
        row->length == ci_block_length(hc->seg, row->block) &&
        (row->owner == STORE_OWNER_SHARED || row->owner == (int64_t)hc->uid))
        hc->missing[row->block] = false;
    return 0;
}

/* Loop, from an event (not inside pump): fetch_chain's work. f is alive (fetch_unref frees
 * the event with it), ended or not. */
static void chain_run(evutil_socket_t sock, short what, void *arg)
{
    (void)sock;
    (void)what;
    struct fetch *f = arg;
    struct fetch_daemon *fd = f->fd;
    struct content_handle *h = f->h;
    const struct ci_info *ci = h->ci;
    size_t next = f->seg + 1;
    struct fetch *g;
    LIST_FOREACH (g, &fd->fetches, link)
        if (g->h == h && g->seg == next)
            break;
    if (!g && !h->closed && !f->c->d->stopping && next < ci->n_segments) {
        const struct ci_segment *seg = &ci->segments[next];
        uint32_t nb = ci_segment_block_count(seg);
        bool missing[PEER_SEGMENT_BLOCKS_MAX];
        bool any = false;
        if (nb <= PEER_SEGMENT_BLOCKS_MAX) {
            for (uint32_t b = 0; b < nb; b++)
                missing[b] = content_listed_hash(ci, seg, b) != NULL;
            struct have_ctx hc = {ci, seg, f->c->uid, nb, missing};
            if (store_segment_blocks(f->c->d->store, seg->id, ci->digest_len, f->c->uid, have_row,
                    &hc) == 0)
                for (uint32_t b = 0; b < nb && !any; b++)
                    any = missing[b];
        }
        if (any)
            fetch_new(f->c, h, next, 0, missing, nb); /* it runs on its own (no reader yet) */
    }
}

/*
 * Read-ahead into the next segment: f (a segment a reader waits on) has asked for every
 * block it wants, so the fetch of the segment after it starts now, from the peers kept, and
 * the reader does not wait at each segment's start for a first block to be fetched, synced
 * and committed. Only one segment ahead of a reader: a fetch started this way chains on
 * only once a read waits on it (peer_fetch_wait).
 */
static void fetch_chain(struct fetch *f)
{
    f->chained = true;
    if (f->seg + 1 >= f->h->ci->n_segments || f->h->closed)
        return;
    struct timeval now = {0, 0};
    if (!(f->chain_ev = evtimer_new(f->fd->d->base, chain_run, f)) ||
        evtimer_add(f->chain_ev, &now) != 0)
        log_debug("segment %zu: no read-ahead into the next one (out of memory)", f->seg);
}

int peer_fetch_wait(struct conn *c, struct content_handle *h, size_t seg, uint32_t from,
    const bool *missing, uint32_t nblocks, struct peer_fetch_wait *w)
{
    struct fetch_daemon *fd = fetch_state(c->d);
    if (!fd || !h->ci || nblocks > PEER_SEGMENT_BLOCKS_MAX)
        return -1;
    struct fetch *f;
    LIST_FOREACH (f, &fd->fetches, link)
        if (f->h == h && f->seg == seg)
            break;
    if (f) {
        /* A fetch under way for this segment (a read's, or read-ahead): blocks it gave up on
         * are tried again, and it now reads ahead in turn. */
        for (uint32_t b = from; b < nblocks && b < f->nblocks; b++)
            if (missing[b] && (f->st[b] == ST_SKIP || f->st[b] == ST_FAILED))
                f->st[b] = ST_WANT;
        f->reader = true;
        f->refs++;
        pump(f); /* may chain, or end it */
        bool ended = f->ended;
        fetch_unref(f);
        if (ended)
            return -1;
    } else {
        if (!(f = fetch_new(c, h, seg, from, missing, nblocks)))
            return -1;
        f->reader = true;
        f->refs++;
        pump(f);
        bool ended = f->ended;
        fetch_unref(f);
        if (ended)
            return -1;
    }
    w->f = f;
    LIST_INSERT_HEAD(&f->waiters, w, link);
    return 0;
}

void peer_fetch_detach(struct peer_fetch_wait *w)
{
    if (!w->f)
        return;
    LIST_REMOVE(w, link);
    w->f = NULL;
}

void peer_fetch_handle_closed(struct conn *c, struct content_handle *h)
{
    struct fetch_daemon *fd = fetch_state(c->d);
    if (!fd)
        return;
    for (struct fetch *f = LIST_FIRST(&fd->fetches), *next; f; f = next) {
        next = LIST_NEXT(f, link);
        if (f->h == h)
            fetch_end(f); /* next is another fetch: its own waiters are not touched */
    }
}

bool peer_fetch_flash_crowd(struct conn *c, const struct content_handle *h)
{
    if (!fetch_state(c->d) || !h->ci)
        return false;
    const struct ci_info *ci = h->ci;
    for (size_t i = 0; i < ci->n_segments; i++)
        if (discovery_recent_probers(c->d, ci->segments[i].id, ci->digest_len, 10) > 3)
            return true;
    return false;
}

/* ---- Peers (admins only) ---- */

static bool same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
            ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
               &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/*
 * The peers this daemon fetched from (address with the port it fetched from) and the ones
 * peer-serve.c served (port 0): one entry per host when both know it, with both counters.
 */
/* A host without a port (one that probed us, or asked us for blocks): its address alone. */
static void host_name(const struct sockaddr_storage *ss, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, ip, sizeof(ip));
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof(ip));
    snprintf(out, n, "%s", ip);
}

/* The entry of the host of ss among the first k (fetched-from peers carry their port), or
 * a new one named by its address alone. NULL when full. */
static Peerdist__PeerInfo *peer_entry(Peerdist__PeerInfo *infos, struct sockaddr_storage *addrs,
    char (*names)[PEER_NAME_MAX], size_t *k, size_t cap, const struct sockaddr_storage *ss)
{
    for (size_t i = 0; i < *k; i++)
        if (same_host(&addrs[i], ss))
            return &infos[i];
    if (*k == cap)
        return NULL;
    Peerdist__PeerInfo pi = PEERDIST__PEER_INFO__INIT;
    host_name(ss, names[*k], sizeof(names[*k]));
    pi.address = names[*k];
    addrs[*k] = *ss;
    infos[*k] = pi;
    return &infos[(*k)++];
}

void peer_fetch_peers(struct conn *c, uint64_t id)
{
    if (!c->admin) {
        log_warn(CONN_FMT ": Peers refused: only root and group %s may list them", CONN_ARGS(c),
            SERVER_ADMIN_GROUP);
        conn_reply_status(c, id, ERROR_ACCESS_DENIED);
        return;
    }
    struct fetch_daemon *fd = fetch_state(c->d);
    size_t nf = fd ? fd->npeers : 0;
    struct peer_served *served = calloc(PEER_RECS_MAX, sizeof(*served));
    struct discovery_prober_info *probers = calloc(PEER_RECS_MAX, sizeof(*probers));
    size_t ns = served ? peer_serve_peers(c->d, served, PEER_RECS_MAX) : 0;
    size_t np = probers ? discovery_probers(c->d, probers, PEER_RECS_MAX) : 0;
    size_t cap = nf + ns + np ? nf + ns + np : 1, k = 0;
    Peerdist__PeerInfo *infos = calloc(cap, sizeof(*infos));
    Peerdist__PeerInfo **ptrs = calloc(cap, sizeof(*ptrs));
    struct sockaddr_storage *addrs = calloc(cap, sizeof(*addrs));
    char(*names)[PEER_NAME_MAX] = calloc(cap, sizeof(*names));
    if (!served || !probers || !infos || !ptrs || !addrs || !names) {
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        goto out;
    }
    time_t now = time(NULL);
    for (struct peer_rec *r = fd ? fd->peers : NULL; r && k < cap; r = r->next, k++) {
        Peerdist__PeerInfo pi = PEERDIST__PEER_INFO__INIT;
        pi.address = r->name;
        pi.last_seen = r->last_seen > 0 ? (uint64_t)r->last_seen : 0;
        pi.bytes_fetched = r->fetched;
        if (r->distrust_until > now) {
            pi.distrusted_until = (uint64_t)r->distrust_until;
            pi.distrust_reason = (char *)r->why;
        }
        addrs[k] = r->addr;
        infos[k] = pi;
    }
    for (size_t i = 0; i < ns; i++) {
        Peerdist__PeerInfo *pi = peer_entry(infos, addrs, names, &k, cap, &served[i].addr);
        if (!pi)
            break;
        pi->bytes_served += served[i].bytes;
        pi->requests += served[i].requests;
        if (served[i].last_seen > 0 && (uint64_t)served[i].last_seen > pi->last_seen)
            pi->last_seen = (uint64_t)served[i].last_seen;
    }
    for (size_t i = 0; i < np; i++) {
        Peerdist__PeerInfo *pi = peer_entry(infos, addrs, names, &k, cap, &probers[i].addr);
        if (!pi)
            break;
        pi->probes += probers[i].probes;
        if (probers[i].last_seen > 0 && (uint64_t)probers[i].last_seen > pi->last_seen)
            pi->last_seen = (uint64_t)probers[i].last_seen;
    }
    for (size_t i = 0; i < k; i++)
        ptrs[i] = &infos[i];
    Peerdist__PeersReply pr = PEERDIST__PEERS_REPLY__INIT;
    pr.n_peers = k;
    pr.peers = ptrs;
    Peerdist__Reply rep = PEERDIST__REPLY__INIT;
    rep.id = id;
    rep.body_case = PEERDIST__REPLY__BODY_PEERS;
    rep.peers = &pr;
    conn_send(c, &rep);
out:
    free(served);
    free(probers);
    free(infos);
    free(ptrs);
    free(addrs);
    free(names);
}
