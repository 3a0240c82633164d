/* SPDX-License-Identifier: MIT */
/* fuzz_daemon.c - libFuzzer harness for the real peerdistd: each input is a sequence of protocol
 * requests sent over socketpairs handed to server_adopt (two clients, two uids), pumped through
 * the daemon's own event loop and worker pool; every reply must parse, answer a request sent,
 * once, with a body its request type allows, and bytes read must be the content's own bytes. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <peerdist.h>

#include "contentinfo.h"
#include "daemon.h"
#include "worker.h"

/* Bounds that keep one input fast and the state across inputs small. */
#define FZ_MAX_OPS 192               /* operations per input */
#define FZ_MAX_IDS (FZ_MAX_OPS + 16) /* request ids per connection (ops, Hello, cleanup) */
#define FZ_MAX_RECONNECTS 6          /* fresh connections per client per input */
#define FZ_BYTE_BUDGET (12u << 20)   /* request bytes per input (past PUB_EARLY_ACK_BYTES) */
#define FZ_HANDLES 8                 /* content handles 1..7 are modelled (0 never exists) */
#define FZ_NCLIENTS 2
#define FZ_NTAGS 4
#define FZ_NVARIANTS 4
#define FZ_MAX_GENERATED 24 /* ranged content information remembered per input */

/* ---- the daemon, set up once by daemon_init, as daemon/main.c does ---- */

static struct daemon D;
static bool trace; /* FUZZ_TRACE set: one line per request and reply on stderr */
static char state_root[PATH_MAX];
static atomic_uint in_flight; /* worker jobs submitted whose done has not run */

/*
 * The harness links with -Wl,--wrap=worker_submit: every job the daemon hands its pool is
 * counted, so "quiet" means no job in flight, not a guess made with sleeps.
 */
int __real_worker_submit(struct worker_pool *wp, worker_fn work, worker_fn done, void *arg);
int __wrap_worker_submit(struct worker_pool *wp, worker_fn work, worker_fn done, void *arg);

struct counted_job {
    worker_fn work, done;
    void *arg;
};

static void counted_work(void *p)
{
    struct counted_job *j = p;
    if (j->work)
        j->work(j->arg);
}

static void counted_done(void *p)
{
    struct counted_job *j = p;
    atomic_fetch_sub(&in_flight, 1);
    if (j->done)
        j->done(j->arg);
    free(j);
}

int __wrap_worker_submit(struct worker_pool *wp, worker_fn work, worker_fn done, void *arg)
{
    struct counted_job *j = malloc(sizeof(*j));
    if (!j)
        return -1;
    j->work = work;
    j->done = done;
    j->arg = arg;
    atomic_fetch_add(&in_flight, 1);
    if (__real_worker_submit(wp, counted_work, counted_done, j) != 0) {
        atomic_fetch_sub(&in_flight, 1);
        free(j);
        return -1;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void remove_state(void)
{
    if (state_root[0])
        nftw(state_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- content the harness knows the bytes of ---- */

static const size_t variant_len[FZ_NVARIANTS] = {200000, 2 * CI_V1_BLOCK_SIZE, 1000, 0};
static uint8_t *variant[FZ_NVARIANTS];
static struct ci_info *full_ci[FZ_NVARIANTS][2]; /* [variant][version - 1] */

struct generated {
    uint8_t *wire;
    size_t len;
    int variant;
};
static struct generated fixed_gen[FZ_NVARIANTS][2];
static struct generated input_gen[FZ_MAX_GENERATED]; /* ranged ones, this input only */
static size_t n_input_gen;

static void make_variants(void)
{
    struct ci_secret ks1, ks2;
    uint32_t x = 0x9e3779b9u;
    if (ci_secret_from_passphrase(CI_HASH_SHA256, "fuzz", 4, &ks1) != 0 ||
        ci_secret_from_passphrase(CI_HASH_SHA512_TRUNC, "fuzz", 4, &ks2) != 0)
        abort();
    for (int v = 0; v < FZ_NVARIANTS; v++) {
        variant[v] = malloc(variant_len[v] + 1);
        for (size_t i = 0; i < variant_len[v]; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5; /* xorshift: fixed bytes, no repeats */
            variant[v][i] = (uint8_t)x;
        }
        for (int ver = 1; ver <= 2; ver++) {
            struct ci_gen *g = ci_gen_new(ver, ver == 1 ? &ks1 : &ks2);
            struct generated *fg = &fixed_gen[v][ver - 1];
            if (!g || ci_gen_feed(g, variant[v], variant_len[v]) != 0 ||
                ci_gen_finish(g, &full_ci[v][ver - 1]) != 0 ||
                ci_serialize(full_ci[v][ver - 1], &fg->wire, &fg->len) != 0)
                abort();
            fg->variant = v;
            ci_gen_free(g);
        }
    }
}

/* The content a content information's bytes describe, or -1 if it is not one we made. */
static int known_variant(const uint8_t *wire, size_t len)
{
    for (int v = 0; v < FZ_NVARIANTS; v++)
        for (int k = 0; k < 2; k++)
            if (fixed_gen[v][k].len == len && memcmp(fixed_gen[v][k].wire, wire, len) == 0)
                return v;
    for (size_t i = 0; i < n_input_gen; i++)
        if (input_gen[i].len == len && memcmp(input_gen[i].wire, wire, len) == 0)
            return input_gen[i].variant;
    return -1;
}

/* ---- reading the input ---- */

struct in {
    const uint8_t *p;
    size_t n;
};

static uint8_t in_u8(struct in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static uint16_t in_u16(struct in *in)
{
    uint16_t lo = in_u8(in);
    return (uint16_t)(lo | in_u8(in) << 8);
}

static uint32_t in_u32(struct in *in)
{
    uint32_t lo = in_u16(in);
    return lo | (uint32_t)in_u16(in) << 16;
}

static uint64_t in_u64(struct in *in)
{
    uint64_t lo = in_u32(in);
    return lo | (uint64_t)in_u32(in) << 32;
}

/* Up to want bytes of the input itself (fewer at its end). */
static size_t in_take(struct in *in, size_t want, const uint8_t **out)
{
    size_t n = want < in->n ? want : in->n;
    *out = in->p;
    in->p += n;
    in->n -= n;
    return n;
}

static const uint8_t tags[FZ_NTAGS][STORE_TAG_SIZE] = {
    {1},
    {2},
    {0x7b, 0x3a, 0x11, 0x90, 0x00, 0x00, 0x40, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0x42},
    {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff},
};

/* A tag from the set, or now and then one of a wrong size. */
static ProtobufCBinaryData pick_tag(struct in *in)
{
    uint8_t k = in_u8(in) % 8;
    ProtobufCBinaryData b = {STORE_TAG_SIZE, (uint8_t *)tags[k % FZ_NTAGS]};
    if (k == 6)
        b.len = STORE_TAG_SIZE - 1;
    else if (k == 7)
        b.len = 0;
    return b;
}

static uint8_t big_id[64 * 1024 + 1];

static ProtobufCBinaryData pick_content_id(struct in *in)
{
    static uint8_t ids[] = "ABC";
    uint8_t k = in_u8(in) % 8;
    ProtobufCBinaryData b = {1, ids + k % 3};
    if (k == 5)
        b.len = 0;
    else if (k == 6)
        b = (ProtobufCBinaryData){sizeof(big_id), big_id}; /* one past the limit */
    else if (k == 7)
        b = (ProtobufCBinaryData){2, ids}; /* "AB": a prefix of nothing, a different id */
    return b;
}

/* Small numbers hit live handles; a few others do not. */
static uint64_t pick_handle(struct in *in)
{
    uint8_t k = in_u8(in);
    if (k < 0xf0)
        return k % 6;
    return k == 0xff ? UINT64_MAX : (uint64_t)k << 24;
}

/* Offsets near what matters: blocks, segments, the content's end, overflow. */
static uint64_t pick_offset(struct in *in, int v)
{
    uint64_t len = variant_len[v];
    const struct ci_info *v2 = full_ci[v][1];
    uint8_t k = in_u8(in);
    switch (k % 16) {
    case 0: return 0;
    case 1: return 1;
    case 2: return CI_V1_BLOCK_SIZE - 1;
    case 3: return CI_V1_BLOCK_SIZE;
    case 4: return CI_V1_BLOCK_SIZE + 1;
    case 5: return 2 * CI_V1_BLOCK_SIZE;
    case 6: return len ? len - 1 : 0;
    case 7: return len;
    case 8: return len + 1;
    case 9: return CI_V1_SEGMENT_SIZE - 1 + (k >> 4) % 3; /* 32 MiB -1, 0, +1 */
    case 10: return UINT64_MAX - (k >> 4) * (uint64_t)CI_V1_BLOCK_SIZE;
    case 11: return len ? in_u32(in) % len : 0;
    case 12: return in_u64(in);
    case 13: /* a V2 segment boundary, or one byte either side */
        if (!v2->n_segments)
            return 0;
        return v2->segments[in_u8(in) % v2->n_segments].offset + (k >> 4) % 3 - 1;
    case 14: return (uint64_t)(k >> 4) * CI_V1_BLOCK_SIZE;
    default: return in_u16(in);
    }
}

static uint64_t pick_length(struct in *in, int v, uint64_t off)
{
    uint64_t len = variant_len[v];
    uint8_t k = in_u8(in);
    switch (k % 16) {
    case 0: return 1;
    case 1: return CI_V1_BLOCK_SIZE - 1;
    case 2: return CI_V1_BLOCK_SIZE;
    case 3: return CI_V1_BLOCK_SIZE + 1;
    case 4: return off < len ? len - off : 0; /* to the end */
    case 5: return 0;
    case 6: return 1 + in_u16(in) % 4096;
    case 7: return CI_V1_BLOCK_SIZE - off % CI_V1_BLOCK_SIZE; /* to the next block boundary */
    case 8: return 2 * CI_V1_BLOCK_SIZE;
    case 9: return in_u32(in);
    case 10: return in_u64(in);
    case 11: return PD_MAX_CHUNK;
    case 12: return PD_MAX_CHUNK + 1;
    default: return (k >> 4) + 2;
    }
}

/* ---- clients ---- */

struct sent {
    uint8_t type; /* Request body case; 0xff = not sent */
    bool answered;
    uint64_t handle;
    uint64_t count; /* bytes a CountReply must report */
    uint8_t *ci;    /* AddContentInfo bytes, for the model */
    size_t ci_len;
};

/* What the daemon holds for one content handle, followed from its replies. */
struct handle_model {
    uint8_t *ci;
    size_t len;
    bool completed;
};

struct client {
    int fd;
    bool eof;     /* the daemon closed it */
    bool cleanup; /* the end-of-input flush connection: every flush must succeed */
    bool lax;     /* raw bytes sent: replies to ids we did not choose, or none, may come */
    bool deaf;    /* not reading replies (until a settle, or sending stalls) */
    uid_t uid;
    unsigned connects;
    uint64_t next_id;
    struct sent sent[FZ_MAX_IDS];
    struct handle_model model[FZ_HANDLES];
    struct frame_buf rx;
    uint64_t tags_seen; /* n_tags of the last TagsReply + 1 (0: none) */
};

static struct client clients[FZ_NCLIENTS + 1]; /* the last one: cleanup */
static size_t budget;
static uint8_t *scratch; /* PD_MAX_CHUNK + 1 bytes of request data */

static void client_reset(struct client *cl)
{
    if (cl->fd >= 0)
        close(cl->fd);
    cl->fd = -1;
    cl->eof = false;
    cl->lax = false;
    cl->deaf = false;
    for (size_t i = 0; i < FZ_MAX_IDS; i++)
        free(cl->sent[i].ci);
    memset(cl->sent, 0xff, sizeof(cl->sent));
    for (size_t i = 0; i < FZ_MAX_IDS; i++) {
        cl->sent[i].ci = NULL;
        cl->sent[i].answered = false;
    }
    for (int h = 0; h < FZ_HANDLES; h++) {
        free(cl->model[h].ci);
        cl->model[h] = (struct handle_model){0};
    }
    frame_buf_reset(&cl->rx);
    cl->next_id = 1;
    cl->tags_seen = 0;
}

#define FAIL(...)                                     \
    do {                                              \
        fprintf(stderr, "fuzz_daemon: " __VA_ARGS__); \
        fputc('\n', stderr);                          \
        abort();                                      \
    } while (0)

static int expected_body(uint8_t type)
{
    switch (type) {
    case PEERDIST__REQUEST__BODY_HELLO: return PEERDIST__REPLY__BODY_HELLO;
    case PEERDIST__REQUEST__BODY_GET_STATUS: return PEERDIST__REPLY__BODY_GET_STATUS;
    case PEERDIST__REQUEST__BODY_OPEN_CONTENT: return PEERDIST__REPLY__BODY_OPEN_CONTENT;
    case PEERDIST__REQUEST__BODY_FLUSH: return PEERDIST__REPLY__BODY_FLUSH;
    case PEERDIST__REQUEST__BODY_DAEMON_INFO: return PEERDIST__REPLY__BODY_DAEMON_INFO;
    case PEERDIST__REQUEST__BODY_PUBLISH_STREAM: return PEERDIST__REPLY__BODY_PUBLISH_STREAM;
    case PEERDIST__REQUEST__BODY_OPEN_CONTENT_INFO: return PEERDIST__REPLY__BODY_OPEN_CONTENT_INFO;
    case PEERDIST__REQUEST__BODY_RETRIEVE_CONTENT_INFO:
        return PEERDIST__REPLY__BODY_RETRIEVE_CONTENT_INFO;
    case PEERDIST__REQUEST__BODY_READ: return PEERDIST__REPLY__BODY_READ;
    case PEERDIST__REQUEST__BODY_TAGS: return PEERDIST__REPLY__BODY_TAGS;
    case PEERDIST__REQUEST__BODY_PUBLISH_ADD:
    case PEERDIST__REQUEST__BODY_ADD_CONTENT_INFO:
    case PEERDIST__REQUEST__BODY_ADD_DATA: return PEERDIST__REPLY__BODY_COUNT;
    default: return PEERDIST__REPLY__BODY__NOT_SET;
    }
}

/* Bytes served for a handle whose content information we made must be that content's bytes. */
static void check_read(struct client *cl, const struct sent *s, const Peerdist__ReadReply *rr)
{
    if (s->handle >= FZ_HANDLES || !rr->data.len)
        return;
    const struct handle_model *m = &cl->model[s->handle];
    int v = m->completed ? known_variant(m->ci, m->len) : -1;
    if (v < 0)
        return;
    if (rr->offset > variant_len[v] || rr->data.len > variant_len[v] - rr->offset)
        FAIL("read on handle %llu served [%llu, +%zu) past the content's %zu bytes",
            (unsigned long long)s->handle, (unsigned long long)rr->offset, rr->data.len,
            variant_len[v]);
    if (memcmp(rr->data.data, variant[v] + rr->offset, rr->data.len) != 0)
        FAIL("read on handle %llu served wrong bytes at [%llu, +%zu)",
            (unsigned long long)s->handle, (unsigned long long)rr->offset, rr->data.len);
    if (rr->length != rr->data.len)
        FAIL("ReadReply length %llu with %zu data bytes", (unsigned long long)rr->length,
            rr->data.len);
}

/* Follows what a content handle was given, in the order the daemon took it. */
static void follow_model(struct client *cl, const struct sent *s, const Peerdist__Reply *r)
{
    if (s->handle >= FZ_HANDLES || r->status != ERROR_SUCCESS)
        return;
    struct handle_model *m = &cl->model[s->handle];
    if (s->type == PEERDIST__REQUEST__BODY_ADD_CONTENT_INFO && !m->completed && s->ci_len) {
        uint8_t *p = realloc(m->ci, m->len + s->ci_len);
        if (!p)
            abort();
        memcpy(p + m->len, s->ci, s->ci_len);
        m->ci = p;
        m->len += s->ci_len;
    } else if (s->type == PEERDIST__REQUEST__BODY_COMPLETE_CONTENT_INFO) {
        if (m->completed)
            FAIL("handle %llu completed twice", (unsigned long long)s->handle);
        m->completed = true;
    }
}

static void check_reply(struct client *cl, const uint8_t *payload, uint32_t len)
{
    Peerdist__Reply *r = peerdist__reply__unpack(NULL, len, payload);
    if (!r)
        FAIL("a reply frame of %u bytes does not unpack", len);
    if (r->id == 0) {
        if (r->body_case != PEERDIST__REPLY__BODY_STATUS_CHANGED)
            FAIL("reply id 0 that is not a StatusChanged notice (body %d)", r->body_case);
        peerdist__reply__free_unpacked(r, NULL);
        return;
    }
    if (cl->lax) { /* ids may be the raw bytes' own, and collide with ours */
        peerdist__reply__free_unpacked(r, NULL);
        return;
    }
    if (r->id >= cl->next_id || cl->sent[r->id].type == 0xff)
        FAIL("reply to id %llu, never sent", (unsigned long long)r->id);
    struct sent *s = &cl->sent[r->id];
    if (s->answered)
        FAIL("second reply to id %llu (request type %d)", (unsigned long long)r->id, s->type);
    s->answered = true;
    if (trace)
        fprintf(stderr, "  uid %u  <- id %llu status %u body %d\n", (unsigned)cl->uid,
            (unsigned long long)r->id, r->status, r->body_case);
    int want = expected_body(s->type);
    if (r->body_case != PEERDIST__REPLY__BODY__NOT_SET && (int)r->body_case != want)
        FAIL("id %llu (request type %d) answered with body %d", (unsigned long long)r->id, s->type,
            r->body_case);
    /* Success carries the body its type defines (Flush has none in practice). */
    if (r->status == ERROR_SUCCESS && want != PEERDIST__REPLY__BODY__NOT_SET &&
        want != PEERDIST__REPLY__BODY_FLUSH && (int)r->body_case != want)
        FAIL("id %llu (request type %d) succeeded without its reply body",
            (unsigned long long)r->id, s->type);
    if (r->body_case == PEERDIST__REPLY__BODY_COUNT && s->count != UINT64_MAX &&
        r->count->bytes != s->count)
        FAIL("id %llu (request type %d) counted %llu bytes of %llu", (unsigned long long)r->id,
            s->type, (unsigned long long)r->count->bytes, (unsigned long long)s->count);
    if (r->body_case == PEERDIST__REPLY__BODY_READ && r->status == ERROR_SUCCESS)
        check_read(cl, s, r->read);
    if (r->body_case == PEERDIST__REPLY__BODY_TAGS)
        cl->tags_seen = r->tags->n_tags + 1;
    if (cl->cleanup && s->type == PEERDIST__REQUEST__BODY_FLUSH && r->status != ERROR_SUCCESS)
        FAIL("clean-up flush failed with %u", r->status);
    follow_model(cl, s, r);
    peerdist__reply__free_unpacked(r, NULL);
}

/* Reads and checks what the daemon sent this client; true if anything came. */
static bool client_drain(struct client *cl)
{
    bool got = false;
    while (cl->fd >= 0 && !cl->eof && !cl->deaf) {
        size_t avail;
        uint8_t *p = frame_buf_space(&cl->rx, 64 * 1024, &avail);
        if (!p)
            abort();
        ssize_t n = read(cl->fd, p, avail);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            cl->eof = true;
            got = true;
            break;
        }
        if (n < 0)
            break;
        frame_buf_commit(&cl->rx, (size_t)n);
        got = true;
        const uint8_t *payload;
        uint32_t plen;
        enum frame_status fs;
        while ((fs = frame_buf_next(&cl->rx, &payload, &plen)) == FRAME_OK)
            check_reply(cl, payload, plen);
        if (fs == FRAME_TOO_BIG)
            FAIL("the daemon sent a frame over FRAME_MAX_PAYLOAD");
    }
    return got;
}

/* One turn of the daemon's loop, then every client's replies; true if any arrived. */
static bool pump(void)
{
    event_base_loop(D.base, EVLOOP_NONBLOCK);
    bool got = false;
    for (int i = 0; i <= FZ_NCLIENTS; i++)
        got |= client_drain(&clients[i]);
    return got;
}

/* Runs until no job is in flight and a few turns bring nothing (a hang is libFuzzer's timeout). */
static void settle(void)
{
    for (int i = 0; i <= FZ_NCLIENTS; i++)
        clients[i].deaf = false;
    for (int idle = 0; idle < 3;) {
        bool got = pump();
        if (got) {
            idle = 0;
        } else if (atomic_load(&in_flight) > 0) {
            idle = 0;
            event_base_loop(D.base, EVLOOP_ONCE); /* sleeps until a job's done is due */
        } else {
            idle++;
        }
    }
}

static void send_bytes(struct client *cl, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    unsigned stalls = 0;
    while (off < len && !cl->eof) {
        ssize_t n = send(cl->fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            stalls = 0;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            /* The daemon reads on its turn; one that stopped reading us (its replies piled
             * up) reads again once we read them. */
            if (!pump() && ++stalls > 64)
                cl->deaf = false;
        } else {
            cl->eof = true; /* the daemon closed it: the rest is not sent */
        }
    }
}

/* Packs and sends one request; its id and what its reply is checked against are recorded. */
static void send_request(struct client *cl, Peerdist__Request *req, uint64_t handle, uint64_t count,
    const uint8_t *ci, size_t ci_len)
{
    if (cl->next_id >= FZ_MAX_IDS)
        return;
    uint64_t id = cl->next_id++;
    struct sent *s = &cl->sent[id];
    req->id = id;
    s->type = (uint8_t)req->body_case;
    s->answered = false;
    s->handle = handle;
    s->count = count;
    s->ci = NULL;
    s->ci_len = 0;
    if (ci_len) {
        s->ci = malloc(ci_len);
        if (!s->ci)
            abort();
        memcpy(s->ci, ci, ci_len);
        s->ci_len = ci_len;
    }
    size_t n = frame_size(&req->base);
    uint8_t *buf = malloc(n);
    if (!buf)
        abort();
    frame_pack(&req->base, buf);
    budget = n < budget ? budget - n : 0;
    if (trace)
        fprintf(stderr, "  uid %u  -> id %llu type %d handle %lld, %zu bytes\n", (unsigned)cl->uid,
            (unsigned long long)id, req->body_case, (long long)handle, n);
    send_bytes(cl, buf, n);
    free(buf);
}

static void send_hello(struct client *cl, uint32_t min, uint32_t max)
{
    Peerdist__Hello h = PEERDIST__HELLO__INIT;
    h.min_version = min;
    h.max_version = max;
    h.software = "fuzz_daemon";
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_HELLO;
    req.hello = &h;
    send_request(cl, &req, UINT64_MAX, UINT64_MAX, NULL, 0);
}

static void client_connect(struct client *cl, uint8_t hello_mode, struct in *in)
{
    int sv[2];
    client_reset(cl);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    if (!server_adopt(&D, sv[0], cl->uid, getgid(), getpid()))
        abort();
    cl->fd = sv[1];
    cl->connects++;
    switch (hello_mode % 16) {
    case 14: { /* versions from the input */
        uint32_t min = in_u8(in) % 4;
        send_hello(cl, min, in_u8(in) % 4);
        break;
    }
    case 15: /* no Hello: the first request is whatever comes next */ break;
    default: send_hello(cl, PD_PROTOCOL_VERSION_MIN, PD_PROTOCOL_VERSION_MAX);
    }
}

/* Request data: the content's own bytes at off, the same with a byte flipped, or input bytes. */
static size_t make_data(struct in *in, int v, uint64_t off, uint64_t want)
{
    size_t len = want > PD_MAX_CHUNK + 1 ? PD_MAX_CHUNK + 1 : (size_t)want;
    if (len > budget)
        len = len < 4096 ? len : 4096;
    uint8_t how = in_u8(in) % 8;
    memset(scratch, 0, len);
    if (how <= 6) {
        if (off < variant_len[v]) {
            size_t k = variant_len[v] - off < len ? (size_t)(variant_len[v] - off) : len;
            memcpy(scratch, variant[v] + off, k);
        }
        if (how == 6 && len) {
            size_t at = in_u32(in) % len;
            scratch[at] ^= (uint8_t)(1u << (in_u8(in) % 8));
        }
    } else {
        const uint8_t *p;
        size_t k = in_take(in, in_u8(in), &p);
        memcpy(scratch, p, k < len ? k : len);
    }
    return len;
}

/* Content information to add: made by us (whole, ranged, a piece, a byte off) or input bytes. */
static size_t make_ci(struct in *in, const uint8_t **out)
{
    int v = in_u8(in) % FZ_NVARIANTS, ver = in_u8(in) % 2;
    struct generated *g = &fixed_gen[v][ver];
    uint8_t how = in_u8(in) % 8;
    switch (how) {
    case 0:
    case 1:
    case 2: *out = g->wire; return g->len;
    case 3: { /* ranged */
        uint64_t off = pick_offset(in, v), len = pick_length(in, v, off);
        struct ci_info *r;
        uint8_t *wire;
        size_t n;
        if (ci_range(full_ci[v][ver], off, len, &r) != 0)
            return 0;
        int rc = ci_serialize(r, &wire, &n);
        ci_info_free(r);
        if (rc != 0)
            abort();
        if (n_input_gen == FZ_MAX_GENERATED || n > PD_MAX_CHUNK) {
            free(wire);
            return 0;
        }
        input_gen[n_input_gen++] = (struct generated){wire, n, v};
        *out = wire;
        return n;
    }
    case 4:
    case 5: { /* a piece: [a, a + n) of the whole */
        size_t a = in_u16(in) % (g->len + 1);
        size_t n = in_u16(in) % (g->len - a + 1);
        *out = g->wire + a;
        return n;
    }
    case 6: { /* one bit flipped */
        size_t n = g->len < PD_MAX_CHUNK ? g->len : PD_MAX_CHUNK;
        memcpy(scratch, g->wire, n);
        if (n) {
            size_t at = in_u16(in) % n;
            scratch[at] ^= (uint8_t)(1u << (in_u8(in) % 8));
        }
        *out = scratch;
        return n;
    }
    default: return in_take(in, in_u16(in) % 2048, out);
    }
}

enum op {
    OP_HELLO,
    OP_GET_STATUS,
    OP_OPEN,
    OP_CLOSE,
    OP_FLUSH,
    OP_DAEMON_INFO,
    OP_PUB_STREAM,
    OP_PUB_ADD,
    OP_PUB_COMPLETE,
    OP_CLOSE_STREAM,
    OP_UNPUBLISH,
    OP_OPEN_CI,
    OP_RETRIEVE_CI,
    OP_CLOSE_CI,
    OP_ADD_CI,
    OP_COMPLETE_CI,
    OP_ADD_DATA,
    OP_READ,
    OP_CANCEL,
    OP_TAGS,
    OP_RAW_FRAME,
    OP_BAD_HEADER,
    OP_NO_BODY,
    OP_ID_ZERO,
    OP_SETTLE,
    OP_DISCONNECT,
    OP_MODE,
    OP_PUMP,
    OP_DEAF,
    OP_COUNT
};

/* The common Add* ops get more of the selector byte so useful sequences come up often. */
static enum op pick_op(uint8_t k)
{
    static const uint8_t extra[] = {OP_ADD_CI, OP_ADD_DATA, OP_READ, OP_OPEN, OP_COMPLETE_CI,
        OP_SETTLE, OP_PUB_ADD, OP_PUMP, OP_CANCEL, OP_CLOSE};
    k &= 0x3f; /* bits 6-7 choose the client */
    return k < OP_COUNT ? (enum op)k : (enum op)extra[(k - OP_COUNT) % sizeof(extra)];
}

static void run_op(struct client *cl, enum op op, struct in *in)
{
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    union {
        Peerdist__Hello hello;
        Peerdist__OpenContentRequest open;
        Peerdist__CloseContentRequest close;
        Peerdist__FlushRequest flush;
        Peerdist__PublishStreamRequest pstream;
        Peerdist__PublishAddRequest padd;
        Peerdist__PublishCompleteRequest pcomplete;
        Peerdist__CloseStreamRequest cstream;
        Peerdist__UnpublishRequest unpublish;
        Peerdist__OpenContentInfoRequest oci;
        Peerdist__RetrieveContentInfoRequest rci;
        Peerdist__CloseContentInfoRequest cci;
        Peerdist__AddContentInfoRequest aci;
        Peerdist__CompleteContentInfoRequest ccomplete;
        Peerdist__AddDataRequest adata;
        Peerdist__ReadRequest read;
        Peerdist__CancelRequest cancel;
    } m;
    Peerdist__GetStatusRequest gs = PEERDIST__GET_STATUS_REQUEST__INIT;
    Peerdist__DaemonInfoRequest di = PEERDIST__DAEMON_INFO_REQUEST__INIT;
    Peerdist__TagsRequest tr = PEERDIST__TAGS_REQUEST__INIT;
    uint64_t handle = UINT64_MAX, count = UINT64_MAX;
    const uint8_t *ci = NULL;
    size_t ci_len = 0;

    switch (op) {
    case OP_HELLO:
        m.hello = (Peerdist__Hello)PEERDIST__HELLO__INIT;
        m.hello.min_version = in_u8(in) % 3;
        m.hello.max_version = in_u8(in) % 3;
        req.body_case = PEERDIST__REQUEST__BODY_HELLO;
        req.hello = &m.hello;
        break;
    case OP_GET_STATUS:
        req.body_case = PEERDIST__REQUEST__BODY_GET_STATUS;
        req.get_status = &gs;
        break;
    case OP_OPEN:
        m.open = (Peerdist__OpenContentRequest)PEERDIST__OPEN_CONTENT_REQUEST__INIT;
        m.open.tag = pick_tag(in);
        req.body_case = PEERDIST__REQUEST__BODY_OPEN_CONTENT;
        req.open_content = &m.open;
        break;
    case OP_CLOSE:
        m.close = (Peerdist__CloseContentRequest)PEERDIST__CLOSE_CONTENT_REQUEST__INIT;
        m.close.handle = handle = pick_handle(in);
        req.body_case = PEERDIST__REQUEST__BODY_CLOSE_CONTENT;
        req.close_content = &m.close;
        break;
    case OP_FLUSH:
        m.flush = (Peerdist__FlushRequest)PEERDIST__FLUSH_REQUEST__INIT;
        m.flush.tag = pick_tag(in);
        req.body_case = PEERDIST__REQUEST__BODY_FLUSH;
        req.flush = &m.flush;
        break;
    case OP_DAEMON_INFO:
        req.body_case = PEERDIST__REQUEST__BODY_DAEMON_INFO;
        req.daemon_info = &di;
        break;
    case OP_PUB_STREAM: {
        int v = in_u8(in) % FZ_NVARIANTS;
        uint8_t k = in_u8(in);
        m.pstream = (Peerdist__PublishStreamRequest)PEERDIST__PUBLISH_STREAM_REQUEST__INIT;
        m.pstream.content_id = pick_content_id(in);
        m.pstream.content_length = k % 4 == 0 ? 0
            : k % 4 == 1                      ? variant_len[v]
                                              : pick_offset(in, v);
        m.pstream.version = (k >> 2) % 8 < 6 ? 1 + (k >> 2) % 2 : (k >> 2) % 4;
        req.body_case = PEERDIST__REQUEST__BODY_PUBLISH_STREAM;
        req.publish_stream = &m.pstream;
        break;
    }
    case OP_PUB_ADD: {
        int v = in_u8(in) % FZ_NVARIANTS;
        m.padd = (Peerdist__PublishAddRequest)PEERDIST__PUBLISH_ADD_REQUEST__INIT;
        m.padd.stream = handle = pick_handle(in);
        uint64_t off = pick_offset(in, v);
        m.padd.data.len = make_data(in, v, off, pick_length(in, v, off));
        m.padd.data.data = scratch;
        count = m.padd.data.len;
        req.body_case = PEERDIST__REQUEST__BODY_PUBLISH_ADD;
        req.publish_add = &m.padd;
        break;
    }
    case OP_PUB_COMPLETE:
        m.pcomplete = (Peerdist__PublishCompleteRequest)PEERDIST__PUBLISH_COMPLETE_REQUEST__INIT;
        m.pcomplete.stream = handle = pick_handle(in);
        req.body_case = PEERDIST__REQUEST__BODY_PUBLISH_COMPLETE;
        req.publish_complete = &m.pcomplete;
        break;
    case OP_CLOSE_STREAM:
        m.cstream = (Peerdist__CloseStreamRequest)PEERDIST__CLOSE_STREAM_REQUEST__INIT;
        m.cstream.stream = handle = pick_handle(in);
        req.body_case = PEERDIST__REQUEST__BODY_CLOSE_STREAM;
        req.close_stream = &m.cstream;
        break;
    case OP_UNPUBLISH:
        m.unpublish = (Peerdist__UnpublishRequest)PEERDIST__UNPUBLISH_REQUEST__INIT;
        m.unpublish.content_id = pick_content_id(in);
        req.body_case = PEERDIST__REQUEST__BODY_UNPUBLISH;
        req.unpublish = &m.unpublish;
        break;
    case OP_OPEN_CI: {
        static const uint32_t vers[][2] = {{0, 0}, {0, 0}, {1, 1}, {1, 2}, {2, 2}, {2, 1}, {0, 2},
            {3, 3}};
        int v = in_u8(in) % FZ_NVARIANTS;
        uint8_t k = in_u8(in);
        m.oci = (Peerdist__OpenContentInfoRequest)PEERDIST__OPEN_CONTENT_INFO_REQUEST__INIT;
        m.oci.content_id = pick_content_id(in);
        if (k & 1) {
            m.oci.offset = pick_offset(in, v);
            m.oci.length = pick_length(in, v, m.oci.offset);
        }
        m.oci.min_version = vers[(k >> 1) % 8][0];
        m.oci.max_version = vers[(k >> 1) % 8][1];
        req.body_case = PEERDIST__REQUEST__BODY_OPEN_CONTENT_INFO;
        req.open_content_info = &m.oci;
        break;
    }
    case OP_RETRIEVE_CI: {
        static const uint32_t sizes[] = {0, 1, 100, 4096, UINT32_MAX, 17, 65536, 3};
        uint8_t k = in_u8(in);
        m.rci = (Peerdist__RetrieveContentInfoRequest)PEERDIST__RETRIEVE_CONTENT_INFO_REQUEST__INIT;
        m.rci.handle = handle = pick_handle(in);
        m.rci.max_bytes = k < 0xf0 ? sizes[k % 8] : in_u32(in);
        req.body_case = PEERDIST__REQUEST__BODY_RETRIEVE_CONTENT_INFO;
        req.retrieve_content_info = &m.rci;
        break;
    }
    case OP_CLOSE_CI:
        m.cci = (Peerdist__CloseContentInfoRequest)PEERDIST__CLOSE_CONTENT_INFO_REQUEST__INIT;
        m.cci.handle = handle = pick_handle(in);
        req.body_case = PEERDIST__REQUEST__BODY_CLOSE_CONTENT_INFO;
        req.close_content_info = &m.cci;
        break;
    case OP_ADD_CI:
        m.aci = (Peerdist__AddContentInfoRequest)PEERDIST__ADD_CONTENT_INFO_REQUEST__INIT;
        m.aci.handle = handle = pick_handle(in);
        m.aci.data.len = ci_len = make_ci(in, &ci);
        m.aci.data.data = (uint8_t *)ci;
        count = ci_len;
        req.body_case = PEERDIST__REQUEST__BODY_ADD_CONTENT_INFO;
        req.add_content_info = &m.aci;
        break;
    case OP_COMPLETE_CI:
        m.ccomplete = (Peerdist__CompleteContentInfoRequest)
            PEERDIST__COMPLETE_CONTENT_INFO_REQUEST__INIT;
        m.ccomplete.handle = handle = pick_handle(in);
        req.body_case = PEERDIST__REQUEST__BODY_COMPLETE_CONTENT_INFO;
        req.complete_content_info = &m.ccomplete;
        break;
    case OP_ADD_DATA: {
        int v = in_u8(in) % FZ_NVARIANTS;
        m.adata = (Peerdist__AddDataRequest)PEERDIST__ADD_DATA_REQUEST__INIT;
        m.adata.handle = handle = pick_handle(in);
        m.adata.offset = pick_offset(in, v);
        m.adata.data.len = make_data(in, v, m.adata.offset, pick_length(in, v, m.adata.offset));
        m.adata.data.data = scratch;
        count = m.adata.data.len;
        req.body_case = PEERDIST__REQUEST__BODY_ADD_DATA;
        req.add_data = &m.adata;
        break;
    }
    case OP_READ: {
        static const uint32_t sizes[] = {0, 1, 65536, 65537, UINT32_MAX, 1000, 200000, 7};
        int v = in_u8(in) % FZ_NVARIANTS;
        uint8_t k = in_u8(in);
        m.read = (Peerdist__ReadRequest)PEERDIST__READ_REQUEST__INIT;
        m.read.handle = handle = pick_handle(in);
        m.read.stream = k & 1;
        m.read.offset = pick_offset(in, v);
        m.read.max_bytes = sizes[(k >> 1) % 8];
        m.read.timeout_ms = (k >> 4) % 3 ? 0 : in_u32(in);
        req.body_case = PEERDIST__REQUEST__BODY_READ;
        req.read = &m.read;
        break;
    }
    case OP_CANCEL: {
        uint8_t k = in_u8(in);
        m.cancel = (Peerdist__CancelRequest)PEERDIST__CANCEL_REQUEST__INIT;
        m.cancel.handle = handle = pick_handle(in);
        m.cancel.kind = k % 4;
        /* 0 = everything, else one of the last few requests sent on this connection */
        m.cancel.request_id = (k >> 2) % 8 == 0 || cl->next_id <= (k >> 2) % 8
            ? 0
            : cl->next_id - (k >> 2) % 8;
        req.body_case = PEERDIST__REQUEST__BODY_CANCEL;
        req.cancel = &m.cancel;
        break;
    }
    case OP_TAGS:
        req.body_case = PEERDIST__REQUEST__BODY_TAGS;
        req.tags = &tr;
        break;
    case OP_RAW_FRAME: { /* input bytes as a frame: mostly undecodable, closes the connection */
        const uint8_t *p;
        uint8_t frame[FRAME_HEADER_SIZE + 255];
        size_t n = in_take(in, in_u8(in), &p);
        frame[0] = frame[1] = 0;
        frame[2] = (uint8_t)(n >> 8);
        frame[3] = (uint8_t)n;
        memcpy(frame + FRAME_HEADER_SIZE, p, n);
        Peerdist__Request *r = peerdist__request__unpack(NULL, n, p);
        if (r) { /* it decodes: a request with an id of its own, maybe one we used */
            cl->lax |= r->id != 0;
            peerdist__request__free_unpacked(r, NULL);
        }
        send_bytes(cl, frame, FRAME_HEADER_SIZE + n);
        return;
    }
    case OP_BAD_HEADER: { /* over the cap (closes), or a frame that never finishes */
        uint8_t k = in_u8(in);
        uint32_t len = k & 1 ? FRAME_MAX_PAYLOAD + 1 + (k >> 1)
            : k & 2          ? UINT32_MAX
                             : FRAME_MAX_PAYLOAD;
        uint8_t hdr[FRAME_HEADER_SIZE] = {len >> 24, len >> 16, len >> 8, len};
        cl->lax |= len <= FRAME_MAX_PAYLOAD; /* it swallows the requests after it */
        send_bytes(cl, hdr, sizeof(hdr));
        return;
    }
    case OP_NO_BODY: /* a request type from a newer client */ break;
    case OP_ID_ZERO: { /* reserved for notices: closes the connection, no reply */
        uint8_t frame[64];
        req.body_case = PEERDIST__REQUEST__BODY_GET_STATUS;
        req.get_status = &gs;
        send_bytes(cl, frame, frame_pack(&req.base, frame));
        return;
    }
    case OP_SETTLE: /* every reply in, every job done */ settle(); return;
    case OP_PUMP: /* one turn of the loop: what was sent so far is read, some of it answered */
        pump();
        return;
    case OP_DEAF: /* replies pile up in the daemon: its write backpressure, then its read pause */
        cl->deaf = true;
        return;
    case OP_DISCONNECT: /* with work in flight: the daemon must clean up behind us */
        close(cl->fd);
        cl->fd = -1;
        return;
    case OP_MODE: /* what SIGHUP does when the configuration file's mode changed */
        D.cfg.mode = in_u8(in) % 4 == 0 ? MODE_DISABLED : MODE_LOCAL;
        dispatch_broadcast_status(&D);
        return;
    case OP_COUNT: abort();
    }
    send_request(cl, &req, handle, count, ci, ci_len);
}

/* The end of an input: every connection gone, every job done, then the tags flushed per uid. */
static void finish_input(void)
{
    for (int i = 0; i < FZ_NCLIENTS; i++) {
        if (clients[i].fd >= 0)
            close(clients[i].fd);
        clients[i].fd = -1;
    }
    while (D.nconns > 0 || atomic_load(&in_flight) > 0)
        settle();
    D.cfg.mode = MODE_LOCAL;
    struct client *cl = &clients[FZ_NCLIENTS];
    for (int i = 0; i < FZ_NCLIENTS; i++) {
        cl->uid = clients[i].uid;
        client_connect(cl, 0, NULL);
        for (int t = 0; t < FZ_NTAGS; t++) {
            Peerdist__FlushRequest f = PEERDIST__FLUSH_REQUEST__INIT;
            f.tag = (ProtobufCBinaryData){STORE_TAG_SIZE, (uint8_t *)tags[t]};
            Peerdist__Request req = PEERDIST__REQUEST__INIT;
            req.body_case = PEERDIST__REQUEST__BODY_FLUSH;
            req.flush = &f;
            send_request(cl, &req, UINT64_MAX, UINT64_MAX, NULL, 0);
        }
        settle();
        Peerdist__TagsRequest tr = PEERDIST__TAGS_REQUEST__INIT;
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.body_case = PEERDIST__REQUEST__BODY_TAGS;
        req.tags = &tr;
        send_request(cl, &req, UINT64_MAX, UINT64_MAX, NULL, 0);
        settle();
        if (cl->tags_seen != 1)
            FAIL("uid %u still has %lld tags after flushing them all", (unsigned)cl->uid,
                (long long)cl->tags_seen - 1);
        for (uint64_t id = 1; id < cl->next_id; id++)
            if (!cl->sent[id].answered)
                FAIL("clean-up request %llu unanswered", (unsigned long long)id);
        close(cl->fd);
        cl->fd = -1;
        while (D.nconns > 0 || atomic_load(&in_flight) > 0)
            settle();
    }
    for (size_t i = 0; i < n_input_gen; i++)
        free(input_gen[i].wire);
    n_input_gen = 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *base = getenv("FUZZ_STATE_DIR");
    struct stat st;
    if (!base)
        base = stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(state_root, sizeof(state_root), "%s/fuzz_daemon.XXXXXX", base);
    if (!mkdtemp(state_root))
        abort();
    atexit(remove_state);
    signal(SIGPIPE, SIG_IGN);

    config_defaults(&D.cfg);
    snprintf(D.cfg.socket_path, sizeof(D.cfg.socket_path), "%s/peerdistd.sock", state_root);
    snprintf(D.cfg.db_path, sizeof(D.cfg.db_path), "%s/cache.db", state_root);
    snprintf(D.cfg.state_dir, sizeof(D.cfg.state_dir), "%s/state", state_root);
    D.cfg.mode = MODE_LOCAL;
    trace = getenv("FUZZ_TRACE") != NULL;
    D.cfg.log_level = trace ? LOG_LVL_DEBUG : LOG_LVL_ERROR;
    log_set_level(D.cfg.log_level);
    if (daemon_init(&D) != 0) /* as main.c, without the socket and the signals */
        FAIL("daemon set-up failed");

    make_variants();
    memset(big_id, 'Z', sizeof(big_id));
    scratch = malloc(PD_MAX_CHUNK + 1);
    if (!scratch)
        abort();
    for (int i = 0; i <= FZ_NCLIENTS; i++) {
        clients[i].fd = -1;
        frame_buf_init(&clients[i].rx);
    }
    clients[FZ_NCLIENTS].cleanup = true;
    return 0;
}

/*
 * Input: byte 0 sets up the clients (bits 0-3: client 0's Hello, 14 = versions from the input,
 * 15 = none); then operations, each a selector byte (bits 0-5: the operation, 6: which client)
 * followed by the bytes its fields take.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = {data, size};
    uint8_t setup = in_u8(&in);
    budget = FZ_BYTE_BUDGET;
    clients[0].uid = getuid();
    clients[1].uid = getuid() + 1; /* a second local user: private rows, sharing, promotion */
    for (int i = 0; i < FZ_NCLIENTS; i++) {
        client_reset(&clients[i]);
        clients[i].connects = 0;
    }
    client_connect(&clients[0], setup, &in);
    for (int ops = 0; in.n > 0 && ops < FZ_MAX_OPS; ops++) {
        uint8_t k = in_u8(&in);
        struct client *cl = &clients[(k >> 6) & 1];
        if (cl->fd < 0 || cl->eof) {
            if (cl->connects >= FZ_MAX_RECONNECTS)
                continue;
            client_connect(cl, (uint8_t)(cl->connects ? k >> 6 : 0), &in);
        }
        run_op(cl, pick_op(k), &in); /* no pump: requests pile up unless the input pumps */
    }
    settle();
    /* A connection the daemon kept open has answered every request it took. */
    for (int i = 0; i < FZ_NCLIENTS; i++) {
        struct client *cl = &clients[i];
        if (cl->fd < 0 || cl->eof)
            continue;
        for (uint64_t id = 1; id < cl->next_id; id++)
            if (!cl->lax && !cl->sent[id].answered)
                FAIL("client %d: request %llu (type %d) unanswered on a live connection", i,
                    (unsigned long long)id, cl->sent[id].type);
    }
    finish_input();
    return 0;
}
