/*
 * test_content.c - the consuming side of <peerdist.h> (PeerDistClient* on a
 * content handle) against the real peerdistd, through the public API only.
 * Content information comes from common/contentinfo.h, so the publishing side
 * is not needed. Tests marked DAEMON SIDE need daemon/content.c to serve
 * content information, AddData, reads and cancel; the others check what the
 * library decides alone (synchronous errors, exactly-once completions).
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <peerdist.h>

#include "check_run.h"
#include "contentinfo.h"
#include "harness.h"
#include "api_util.h"

#define MiB (1024u * 1024)
#define KiB 1024u
#define CI_CHUNK 333 /* content information is added in small, odd pieces */
#define KEY 77

static struct test_daemon td;

static void setup(void)
{
    td_init(&td, "local");
    td_start(&td);
}

static void teardown(void)
{
    td_cleanup(&td);
}

/* ---- helpers ---- */


static PEERDIST_CONTENT_TAG make_tag(uint8_t seed)
{
    PEERDIST_CONTENT_TAG t;
    for (int i = 0; i < 16; i++)
        t.Data[i] = (uint8_t)(seed * 29 + i);
    return t;
}

static uint8_t *make_content(size_t len, unsigned seed)
{
    uint8_t *p = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(p);
    uint32_t x = 2463534242u + seed;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    return p;
}

/* Content information for data: whole, or the range [off, off+rlen) when rlen > 0. */
struct ci_blob {
    uint8_t *bytes;
    size_t len;
    struct ci_info *info; /* whole-content description, for the block layout */
};

static void make_ci(const uint8_t *data, size_t len, int version, uint64_t off, uint64_t rlen,
    struct ci_blob *out)
{
    struct ci_secret ks;
    enum ci_hash_alg alg = version == 1 ? CI_HASH_SHA256 : CI_HASH_SHA512_TRUNC;
    ck_assert_int_eq(ci_secret_from_passphrase(alg, "test-passphrase", 15, &ks), 0);
    struct ci_gen *g = ci_gen_new(version == 1 ? CI_VERSION_1 : CI_VERSION_2, &ks);
    ck_assert_ptr_nonnull(g);
    for (size_t at = 0; at < len; at += MiB)
        ck_assert_int_eq(ci_gen_feed(g, data + at, len - at < MiB ? len - at : MiB), 0);
    ck_assert_int_eq(ci_gen_finish(g, &out->info), 0);
    ci_gen_free(g);
    struct ci_info *ser = out->info, *ranged = NULL;
    if (rlen) {
        ck_assert_int_eq(ci_range(out->info, off, rlen, &ranged), 0);
        ser = ranged;
    }
    ck_assert_int_eq(ci_serialize(ser, &out->bytes, &out->len), 0);
    if (ranged)
        ci_info_free(ranged);
}

static void free_ci(struct ci_blob *b)
{
    free(b->bytes);
    ci_info_free(b->info);
}

/* Waits for a call that returned ERROR_IO_PENDING; its status, and its byte count in *bytes. */
static DWORD wait_op(DWORD rc, OVERLAPPED *ov, DWORD *bytes)
{
    ck_assert_uint_eq(rc, ERROR_IO_PENDING);
    return api_wait(ov, bytes);
}

static uint64_t ov_offset(const OVERLAPPED *ov)
{
    return (uint64_t)ov->OffsetHigh << 32 | ov->Offset;
}

static PEERDIST_CONTENT_HANDLE open_content(PEERDIST_INSTANCE_HANDLE h,
    const PEERDIST_CONTENT_TAG *tag, HANDLE port)
{
    PEERDIST_CONTENT_HANDLE c = NULL;
    ck_assert_uint_eq(PeerDistClientOpenContent(h, tag, port, KEY, &c), ERROR_SUCCESS);
    return c;
}

/* Adds ci in CI_CHUNK pieces (each consumed whole), then completes it: its status. */
static DWORD feed_ci(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, const struct ci_blob *ci)
{
    for (size_t at = 0; at < ci->len; at += CI_CHUNK) {
        OVERLAPPED ov = {0};
        DWORD n = ci->len - at < CI_CHUNK ? (DWORD)(ci->len - at) : CI_CHUNK, got;
        DWORD st = wait_op(PeerDistClientAddContentInformation(h, c, n, ci->bytes + at, &ov), &ov, &got);
        ck_assert_uint_eq(st, ERROR_SUCCESS);
        ck_assert_uint_eq(got, n);
    }
    OVERLAPPED ov = {0};
    return wait_op(PeerDistClientCompleteContentInformation(h, c, &ov), &ov, NULL);
}

static PEERDIST_CONTENT_HANDLE open_with_ci(PEERDIST_INSTANCE_HANDLE h,
    const PEERDIST_CONTENT_TAG *tag, const struct ci_blob *ci)
{
    PEERDIST_CONTENT_HANDLE c = open_content(h, tag, NULL);
    ck_assert_uint_eq(feed_ci(h, c, ci), ERROR_SUCCESS);
    return c;
}

static DWORD add_data(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, uint64_t off,
    const uint8_t *buf, DWORD n, DWORD *accepted)
{
    OVERLAPPED ov = {.Offset = (DWORD)off, .OffsetHigh = (DWORD)(off >> 32)};
    return wait_op(PeerDistClientAddData(h, c, n, (PBYTE)buf, &ov), &ov, accepted);
}

struct rd {
    DWORD status;
    DWORD bytes;
    uint64_t offset;
};

static struct rd block_read(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, uint64_t off,
    DWORD cap, void *buf)
{
    OVERLAPPED ov = {.Offset = (DWORD)off, .OffsetHigh = (DWORD)(off >> 32)};
    struct rd r;
    r.status = wait_op(PeerDistClientBlockRead(h, c, cap, buf, PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, &ov),
        &ov, &r.bytes);
    r.offset = ov_offset(&ov);
    return r;
}

static struct rd stream_read(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, DWORD cap,
    void *buf)
{
    OVERLAPPED ov = {.Offset = 0x1234}; /* ignored by StreamRead */
    struct rd r;
    r.status = wait_op(PeerDistClientStreamRead(h, c, cap, buf, PEERDIST_READ_TIMEOUT_DEFAULT, &ov),
        &ov, &r.bytes);
    r.offset = ov_offset(&ov);
    return r;
}

static void assert_missing(struct rd r, uint64_t off, uint64_t len)
{
    ck_assert_uint_eq(r.status, PEERDIST_ERROR_MISSING_DATA);
    ck_assert_uint_eq(r.offset, off);
    ck_assert_uint_eq(r.bytes, len);
}

/* Reads [from, to) back with BlockRead and compares. */
static void read_back_block(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c,
    const uint8_t *data, uint64_t from, uint64_t to)
{
    uint8_t *buf = malloc(300 * KiB);
    for (uint64_t at = from; at < to;) {
        struct rd r = block_read(h, c, at, 300 * KiB, buf);
        ck_assert_msg(r.status == ERROR_SUCCESS, "BlockRead at %llu: %u", (unsigned long long)at, r.status);
        ck_assert_uint_eq(r.offset, at);
        ck_assert_uint_gt(r.bytes, 0);
        ck_assert_uint_le(r.bytes, to - at);
        ck_assert(memcmp(buf, data + at, r.bytes) == 0);
        at += r.bytes;
    }
    free(buf);
}

/* Reads the stream from its cursor to NO_MORE: it must be data[from, to). */
static void read_back_stream(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c,
    const uint8_t *data, uint64_t from, uint64_t to)
{
    /* Asking for more than one request's worth returns at most PD_MAX_CHUNK (1 MiB). */
    DWORD cap = 3 * MiB;
    uint8_t *buf = malloc(cap);
    uint64_t at = from;
    for (;;) {
        struct rd r = stream_read(h, c, cap, buf);
        if (r.status == PEERDIST_ERROR_NO_MORE)
            break;
        ck_assert_msg(r.status == ERROR_SUCCESS, "StreamRead at %llu: %u", (unsigned long long)at, r.status);
        ck_assert_uint_eq(r.offset, at);
        ck_assert_uint_gt(r.bytes, 0);
        ck_assert_uint_le(r.bytes, MiB);
        ck_assert_uint_le(r.bytes, to - at);
        ck_assert(memcmp(buf, data + at, r.bytes) == 0);
        at += r.bytes;
    }
    ck_assert_uint_eq(at, to);
    free(buf);
}

/* ---- a model of what is readable: a block is once all its bytes were added ---- */

struct model {
    const uint8_t *data;
    size_t len;
    uint8_t *added; /* per content byte */
    size_t nblocks;
    uint64_t *boff;
    uint64_t *blen;
};

static void model_init(struct model *m, const uint8_t *data, size_t len, const struct ci_info *ci)
{
    m->data = data;
    m->len = len;
    m->added = calloc(len ? len : 1, 1);
    m->nblocks = 0;
    size_t cap = 16;
    m->boff = malloc(cap * sizeof(uint64_t));
    m->blen = malloc(cap * sizeof(uint64_t));
    for (size_t s = 0; s < ci->n_segments; s++) {
        const struct ci_segment *seg = &ci->segments[s];
        uint32_t nb = ci->version == CI_VERSION_1 ? ci_segment_block_count(seg) : 1;
        for (uint32_t b = 0; b < nb; b++) {
            if (m->nblocks == cap) {
                cap *= 2;
                m->boff = realloc(m->boff, cap * sizeof(uint64_t));
                m->blen = realloc(m->blen, cap * sizeof(uint64_t));
            }
            m->boff[m->nblocks] = seg->offset + (uint64_t)b * seg->block_size;
            m->blen[m->nblocks] = ci->version == CI_VERSION_1 ? ci_block_length(seg, b) : seg->length;
            m->nblocks++;
        }
    }
}

static void model_free(struct model *m)
{
    free(m->added);
    free(m->boff);
    free(m->blen);
}

static bool block_ready(const struct model *m, size_t b)
{
    for (uint64_t i = m->boff[b]; i < m->boff[b] + m->blen[b]; i++)
        if (!m->added[i])
            return false;
    return true;
}

static size_t block_at(const struct model *m, uint64_t off)
{
    size_t b = 0;
    while (b + 1 < m->nblocks && m->boff[b + 1] <= off)
        b++;
    return b;
}

/* BlockRead at off gives what the model says: data, or exactly the missing range. */
static void probe(const struct model *m, PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c,
    uint64_t off)
{
    static uint8_t buf[64 * KiB];
    size_t b = block_at(m, off);
    struct rd r = block_read(h, c, off, sizeof(buf), buf);
    if (block_ready(m, b)) {
        uint64_t end = m->boff[b] + m->blen[b];
        while (++b < m->nblocks && block_ready(m, b))
            end = m->boff[b] + m->blen[b];
        ck_assert_msg(r.status == ERROR_SUCCESS, "read at %llu: %u", (unsigned long long)off, r.status);
        ck_assert_uint_eq(r.offset, off);
        ck_assert_uint_gt(r.bytes, 0);
        ck_assert_uint_le(r.bytes, end - off);
        ck_assert(memcmp(buf, m->data + off, r.bytes) == 0);
        /* cbMax 0: the contiguous cached bytes from off. */
        struct rd q = block_read(h, c, off, 0, NULL);
        ck_assert_uint_eq(q.status, ERROR_SUCCESS);
        ck_assert_uint_eq(q.bytes, end - off);
    } else {
        uint64_t end = m->len;
        while (++b < m->nblocks) {
            if (block_ready(m, b)) {
                end = m->boff[b];
                break;
            }
        }
        assert_missing(r, off, end - off);
    }
}

/* ---- the whole path: DAEMON SIDE ---- */

static void round_trip(size_t len, int version)
{
    uint8_t *data = make_content(len, (unsigned)len + version);
    struct ci_blob ci;
    make_ci(data, len, version, 0, 0, &ci);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = make_tag((uint8_t)(len + version));
    PEERDIST_CONTENT_HANDLE c = open_content(h, &tag, port);

    /* Content information in small pieces; completions go to the handle's port. */
    for (size_t at = 0; at < ci.len; at += CI_CHUNK) {
        OVERLAPPED ov = {0};
        DWORD n = ci.len - at < CI_CHUNK ? (DWORD)(ci.len - at) : CI_CHUNK, got;
        ULONG_PTR key;
        LPOVERLAPPED pov;
        ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, n, ci.bytes + at, &ov), ERROR_IO_PENDING);
        ck_assert(GetQueuedCompletionStatus(port, &got, &key, &pov, 10000));
        ck_assert_ptr_eq(pov, &ov);
        ck_assert_uint_eq(key, KEY);
        ck_assert_uint_eq(got, n);
    }
    PEERDIST_CLIENT_BASIC_INFO bi = {.fFlashCrowd = TRUE};
    ck_assert_uint_eq(PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo, sizeof(bi), &bi),
        PEERDIST_ERROR_NOT_INITIALIZED);
    OVERLAPPED cov = {0};
    ck_assert_uint_eq(wait_op(PeerDistClientCompleteContentInformation(h, c, &cov), &cov, NULL), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo, sizeof(bi), &bi),
        ERROR_SUCCESS);
    ck_assert_int_eq(bi.fFlashCrowd, FALSE);

    uint8_t one[16];
    if (len == 0) {
        ck_assert_uint_eq(block_read(h, c, 0, sizeof(one), one).status, PEERDIST_ERROR_NO_MORE);
        ck_assert_uint_eq(stream_read(h, c, sizeof(one), one).status, PEERDIST_ERROR_NO_MORE);
        ck_assert_uint_eq(add_data(h, c, 0, one, 1, NULL), PEERDIST_ERROR_OUT_OF_BOUNDS);
        goto done;
    }

    /* Nothing cached: reads report exactly the missing ranges. */
    static uint8_t big[64 * KiB];
    assert_missing(block_read(h, c, 0, sizeof(big), big), 0, len);
    assert_missing(block_read(h, c, len / 2, 16, one), len / 2, len - len / 2);
    assert_missing(block_read(h, c, len - 1, 16, one), len - 1, 1);
    ck_assert_uint_eq(block_read(h, c, len, 16, one).status, PEERDIST_ERROR_NO_MORE);
    ck_assert_uint_eq(block_read(h, c, len + 1000, 16, one).status, PEERDIST_ERROR_NO_MORE);
    /* The stream moves past a missing range. */
    assert_missing(stream_read(h, c, 16, one), 0, len);
    ck_assert_uint_eq(stream_read(h, c, 16, one).status, PEERDIST_ERROR_NO_MORE);

    /* AddData in odd pieces, out of order, two of them larger than 1 MiB when len allows. */
    struct model m;
    model_init(&m, data, len, ci.info);
    uint64_t cuts[] = {70001, 70001 + 1362999, len > 500000 ? len - 500000 : 0};
    uint64_t pts[5] = {0};
    size_t np = 1;
    for (size_t i = 0; i < 3; i++)
        if (cuts[i] > pts[np - 1] && cuts[i] < len)
            pts[np++] = cuts[i];
    pts[np] = len;
    size_t order[4] = {3, 0, 2, 1}, done_pieces = 0;
    for (size_t k = 0; k < 4; k++) {
        size_t i = order[k];
        if (i >= np)
            continue;
        DWORD got;
        DWORD n = (DWORD)(pts[i + 1] - pts[i]);
        ck_assert_uint_eq(add_data(h, c, pts[i], data + pts[i], n, &got), ERROR_SUCCESS);
        ck_assert_uint_eq(got, n);
        memset(m.added + pts[i], 1, n);
        done_pieces++;
        for (size_t j = 0; j <= np; j++) {
            if (pts[j] < len)
                probe(&m, h, c, pts[j]);
            if (pts[j] > 0)
                probe(&m, h, c, pts[j] - 1);
        }
        probe(&m, h, c, len / 3);
    }
    ck_assert_uint_eq(done_pieces, np);

    /* Everything back, byte-identical, both ways (a second handle has a fresh stream cursor). */
    read_back_block(h, c, data, 0, len);
    PEERDIST_CONTENT_HANDLE c2 = open_with_ci(h, &tag, &ci);
    read_back_stream(h, c2, data, 0, len);
    struct rd q = block_read(h, c2, 0, 0, NULL);
    ck_assert_uint_eq(q.status, ERROR_SUCCESS);
    ck_assert_uint_eq(q.bytes, len);

    /* Flush: missing again, for this handle and a new one. */
    OVERLAPPED fov = {0};
    ck_assert_uint_eq(wait_op(PeerDistClientFlushContent(h, &tag, NULL, 0, &fov), &fov, NULL), ERROR_SUCCESS);
    assert_missing(block_read(h, c2, 0, 16, one), 0, len);
    PEERDIST_CONTENT_HANDLE c3 = open_with_ci(h, &tag, &ci);
    assert_missing(block_read(h, c3, 0, 16, one), 0, len);
    assert_missing(stream_read(h, c3, 16, one), 0, len);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c2), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c3), ERROR_SUCCESS);
    model_free(&m);
done:
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    CloseHandle(port);
    free_ci(&ci);
    free(data);
}

START_TEST(round_trip_v1) { round_trip(3 * MiB + 12345, 1); }
END_TEST
START_TEST(round_trip_v2) { round_trip(3 * MiB + 12345, 2); }
END_TEST
START_TEST(empty_content_v1) { round_trip(0, 1); }
END_TEST
START_TEST(empty_content_v2) { round_trip(0, 2); }
END_TEST
START_TEST(one_byte_v1) { round_trip(1, 1); }
END_TEST
START_TEST(one_byte_v2) { round_trip(1, 2); }
END_TEST

/* DAEMON SIDE: a block that fails its hash is refused and nothing of it is readable. */
START_TEST(corrupted_data_rejected)
{
    for (int version = 1; version <= 2; version++) {
        size_t len = 300 * KiB + 7;
        uint8_t *data = make_content(len, 40 + version);
        struct ci_blob ci;
        make_ci(data, len, version, 0, 0, &ci);
        PEERDIST_INSTANCE_HANDLE h = api_startup();
        PEERDIST_CONTENT_TAG tag = make_tag((uint8_t)(40 + version));
        PEERDIST_CONTENT_HANDLE c = open_with_ci(h, &tag, &ci);
        /* The first block (V1) or segment (V2), one byte flipped. */
        size_t first = version == 1 ? CI_V1_BLOCK_SIZE : ci.info->segments[0].length;
        uint8_t *bad = malloc(first);
        memcpy(bad, data, first);
        bad[first / 2] ^= 0x5a;
        ck_assert_uint_eq(add_data(h, c, 0, bad, (DWORD)first, NULL), ERROR_INVALID_DATA);
        uint8_t buf[16];
        assert_missing(block_read(h, c, 0, sizeof(buf), buf), 0, len);
        /* Another handle of the same content sees nothing either. */
        PEERDIST_CONTENT_HANDLE c2 = open_with_ci(h, &tag, &ci);
        assert_missing(block_read(h, c2, 0, sizeof(buf), buf), 0, len);
        /* The right bytes are then accepted. */
        ck_assert_uint_eq(add_data(h, c, 0, data, (DWORD)len, NULL), ERROR_SUCCESS);
        read_back_block(h, c2, data, 0, len);
        PeerDistShutdown(h);
        free(bad);
        free_ci(&ci);
        free(data);
    }
}
END_TEST

/* DAEMON SIDE: two tags add the same bytes; flushing one keeps the other's. */
START_TEST(two_tags_share_data)
{
    size_t len = 200 * KiB + 99;
    uint8_t *data = make_content(len, 50);
    struct ci_blob ci;
    make_ci(data, len, 1, 0, 0, &ci);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_TAG ta = make_tag(51), tb = make_tag(52);
    PEERDIST_CONTENT_HANDLE a = open_with_ci(h, &ta, &ci), b = open_with_ci(h, &tb, &ci);
    ck_assert_uint_eq(add_data(h, a, 0, data, (DWORD)len, NULL), ERROR_SUCCESS);
    ck_assert_uint_eq(add_data(h, b, 0, data, (DWORD)len, NULL), ERROR_SUCCESS);
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(wait_op(PeerDistClientFlushContent(h, &ta, NULL, 0, &ov), &ov, NULL), ERROR_SUCCESS);
    read_back_block(h, a, data, 0, len);
    PEERDIST_CONTENT_HANDLE c = open_with_ci(h, &ta, &ci);
    read_back_stream(h, c, data, 0, len);
    ck_assert_uint_eq(wait_op(PeerDistClientFlushContent(h, &tb, NULL, 0, &ov), &ov, NULL), ERROR_SUCCESS);
    uint8_t buf[16];
    assert_missing(block_read(h, c, 0, sizeof(buf), buf), 0, len);
    PeerDistShutdown(h);
    free_ci(&ci);
    free(data);
}
END_TEST

/* DAEMON SIDE: ranged content information binds the handle to its range. */
START_TEST(ranged_content_information)
{
    for (int version = 1; version <= 2; version++) {
        size_t len = 700 * KiB + 3;
        uint64_t off = 100000, rlen = 300000;
        uint8_t *data = make_content(len, 60 + version);
        struct ci_blob ci;
        make_ci(data, len, version, off, rlen, &ci);
        PEERDIST_INSTANCE_HANDLE h = api_startup();
        PEERDIST_CONTENT_TAG tag = make_tag((uint8_t)(60 + version));
        PEERDIST_CONTENT_HANDLE c = open_with_ci(h, &tag, &ci);
        uint8_t buf[16];
        ck_assert_uint_eq(block_read(h, c, off - 1, sizeof(buf), buf).status, PEERDIST_ERROR_NO_MORE);
        ck_assert_uint_eq(block_read(h, c, off + rlen + 1, sizeof(buf), buf).status, PEERDIST_ERROR_NO_MORE);
        /* The missing range is clipped to the range. */
        assert_missing(block_read(h, c, off, sizeof(buf), buf), off, rlen);
        assert_missing(block_read(h, c, off + 10, sizeof(buf), buf), off + 10, rlen - 10);
        assert_missing(stream_read(h, c, sizeof(buf), buf), off, rlen);
        ck_assert_uint_eq(stream_read(h, c, sizeof(buf), buf).status, PEERDIST_ERROR_NO_MORE);
        /* The bytes of every block (segment) the range touches, then the range reads back. */
        struct model m;
        model_init(&m, data, len, ci.info);
        size_t b0 = block_at(&m, off), b1 = block_at(&m, off + rlen - 1);
        uint64_t from = m.boff[b0], to = m.boff[b1] + m.blen[b1];
        ck_assert_uint_eq(add_data(h, c, from, data + from, (DWORD)(to - from), NULL), ERROR_SUCCESS);
        read_back_block(h, c, data, off, off + rlen);
        PEERDIST_CONTENT_HANDLE c2 = open_with_ci(h, &tag, &ci);
        read_back_stream(h, c2, data, off, off + rlen);
        model_free(&m);
        PeerDistShutdown(h);
        free_ci(&ci);
        free(data);
    }
}
END_TEST

/* DAEMON SIDE: state errors are completion statuses. */
START_TEST(state_errors_complete_async)
{
    size_t len = 100 * KiB;
    uint8_t *data = make_content(len, 70);
    struct ci_blob ci;
    make_ci(data, len, 2, 0, 0, &ci);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_TAG tag = make_tag(70);
    PEERDIST_CONTENT_HANDLE c = open_content(h, &tag, NULL);
    uint8_t buf[16];
    ck_assert_uint_eq(block_read(h, c, 0, sizeof(buf), buf).status, PEERDIST_ERROR_NOT_INITIALIZED);
    ck_assert_uint_eq(stream_read(h, c, sizeof(buf), buf).status, PEERDIST_ERROR_NOT_INITIALIZED);
    ck_assert_uint_eq(add_data(h, c, 0, data, 10, NULL), PEERDIST_ERROR_NOT_INITIALIZED);
    ck_assert_uint_eq(feed_ci(h, c, &ci), ERROR_SUCCESS);
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(wait_op(PeerDistClientCompleteContentInformation(h, c, &ov), &ov, NULL),
        PEERDIST_ERROR_ALREADY_COMPLETED);
    ck_assert_uint_eq(wait_op(PeerDistClientAddContentInformation(h, c, 4, ci.bytes, &ov), &ov, NULL),
        PEERDIST_ERROR_ALREADY_COMPLETED);
    ck_assert_uint_eq(add_data(h, c, len - 5, data, 10, NULL), PEERDIST_ERROR_OUT_OF_BOUNDS);
    ck_assert_uint_eq(add_data(h, c, len + 5, data, 10, NULL), PEERDIST_ERROR_OUT_OF_BOUNDS);

    /* Truncated content information does not parse. */
    PEERDIST_CONTENT_HANDLE t = open_content(h, &tag, NULL);
    ck_assert_uint_eq(wait_op(PeerDistClientAddContentInformation(h, t, (DWORD)(ci.len / 2), ci.bytes, &ov),
        &ov, NULL), ERROR_SUCCESS);
    ck_assert_uint_eq(wait_op(PeerDistClientCompleteContentInformation(h, t, &ov), &ov, NULL),
        PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO);
    /* An unknown version: refused when the version is seen, or at completion. */
    PEERDIST_CONTENT_HANDLE v = open_content(h, &tag, NULL);
    uint8_t v9[64] = {0x09, 0x00};
    DWORD st = wait_op(PeerDistClientAddContentInformation(h, v, sizeof(v9), v9, &ov), &ov, NULL);
    if (st == ERROR_SUCCESS)
        st = wait_op(PeerDistClientCompleteContentInformation(h, v, &ov), &ov, NULL);
    ck_assert_uint_eq(st, PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED);
    PeerDistShutdown(h);
    free_ci(&ci);
    free(data);
}
END_TEST

/* ---- cancellation and close: DAEMON SIDE ---- */

/* A reading of td_unread; sent_more waits for it to grow: another request went out. */
struct sent_mark {
    long before;
};

static bool sent_more(void *arg)
{
    return td_unread(&td) > ((struct sent_mark *)arg)->before;
}

/*
 * The daemon paused, requests queue in its socket; a thread resumes it once the call the
 * main thread is blocked in (a cancel, a close) has put its request there too, so the daemon
 * finds that request with everything before it.
 */
struct resume_after {
    pthread_t thread;
    struct sent_mark mark;
    bool sent; /* the call's request reached the socket before TD_WAIT_MS */
};

static void *resume_when_sent(void *arg)
{
    struct resume_after *r = arg;
    r->sent = td_wait_until(sent_more, &r->mark);
    td_resume(&td);
    return NULL;
}

/* Call just before the blocking call, and resume_after_join after it. */
static void resume_after_next_request(struct resume_after *r)
{
    r->mark.before = td_unread(&td);
    r->sent = false;
    pthread_create(&r->thread, NULL, resume_when_sent, r);
}

static void resume_after_join(struct resume_after *r)
{
    pthread_join(r->thread, NULL);
    ck_assert_msg(r->sent, "the request never reached the paused daemon's socket");
}

/* A content handle with content information and no data, for pending reads. */
static PEERDIST_CONTENT_HANDLE ready_handle(PEERDIST_INSTANCE_HANDLE h, HANDLE port, size_t len,
    uint8_t **data, struct ci_blob *ci)
{
    *data = make_content(len, 80);
    make_ci(*data, len, 1, 0, 0, ci);
    PEERDIST_CONTENT_TAG tag = make_tag(80);
    PEERDIST_CONTENT_HANDLE c = open_content(h, &tag, port);
    ck_assert_uint_eq(feed_ci(h, c, ci), ERROR_SUCCESS);
    DWORD bytes;
    ULONG_PTR key;
    LPOVERLAPPED got;
    while (GetQueuedCompletionStatus(port, &bytes, &key, &got, 0) || got)
        ; /* feed_ci's completions */
    return c;
}

/* Counts the port's packets until it is quiet; each overlapped of ovs exactly once. */
static void drain_exactly_once(HANDLE port, OVERLAPPED *ovs, int n)
{
    int seen[64] = {0};
    for (int k = 0; k < n; k++) {
        DWORD bytes;
        ULONG_PTR key;
        LPOVERLAPPED got = NULL;
        GetQueuedCompletionStatus(port, &bytes, &key, &got, 10000);
        ck_assert_ptr_nonnull(got);
        ck_assert_int_ge(got - ovs, 0);
        ck_assert_int_lt(got - ovs, n);
        seen[got - ovs]++;
    }
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(seen[i], 1);
    DWORD bytes;
    ULONG_PTR key;
    LPOVERLAPPED got = NULL;
    ck_assert(!GetQueuedCompletionStatus(port, &bytes, &key, &got, 200));
    ck_assert_ptr_null(got);
}

/* Queues AddData of 64 KiB at 0 and 64 KiB (the daemon hashes and stores them on its workers)
 * and BlockReads at len - 100 (never added), alternately, into ov[0..n). */
static void queue_ops(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, const uint8_t *data,
    size_t len, OVERLAPPED *ov, int n)
{
    static uint8_t bufs[8][256];
    for (int i = 0; i < n; i++) {
        memset(&ov[i], 0, sizeof(ov[i]));
        if (i % 2 == 0) {
            uint64_t off = (uint64_t)(i / 2 % 2) * 65536;
            ov[i].Offset = (DWORD)off;
            ck_assert_uint_eq(PeerDistClientAddData(h, c, 65536, (PBYTE)data + off, &ov[i]), ERROR_IO_PENDING);
        } else {
            ov[i].Offset = (DWORD)(len - 100);
            ck_assert_uint_eq(PeerDistClientBlockRead(h, c, sizeof(bufs[i]), bufs[i],
                PEERDIST_READ_TIMEOUT_DEFAULT, &ov[i]), ERROR_IO_PENDING);
        }
    }
}

/* What queue_ops' operations end with: AddData accepted or aborted, reads missing. */
static void assert_queued_results(const OVERLAPPED *ov, int n, int cancelled, size_t len)
{
    for (int i = 0; i < n; i++) {
        DWORD st = (DWORD)ov[i].Internal;
        if (i == cancelled || cancelled < 0) {
            if (st == ERROR_OPERATION_ABORTED)
                continue;
        }
        if (i % 2 == 0) {
            ck_assert_msg(st == ERROR_SUCCESS, "AddData %d: %u", i, st);
            ck_assert_uint_eq(ov[i].InternalHigh, 65536);
        } else {
            ck_assert_msg(st == PEERDIST_ERROR_MISSING_DATA, "read %d: %u", i, st);
            ck_assert_uint_eq(ov[i].InternalHigh, 100);
            ck_assert_uint_eq(ov[i].Offset, len - 100);
        }
    }
}

START_TEST(cancel_one_and_all)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    uint8_t *data;
    struct ci_blob ci;
    size_t len = 6 * MiB + 4321;
    PEERDIST_CONTENT_HANDLE c = ready_handle(h, port, len, &data, &ci);

    /* Nothing pending: not found, synchronously (and nothing completes). */
    OVERLAPPED idle = {0};
    ck_assert_uint_eq(PeerDistClientCancelAsyncOperation(h, c, &idle), PEERDIST_ERROR_OPERATION_NOTFOUND);

    /* Cancel one: the daemon is paused, so the operations are all queued when the cancel is sent. */
    OVERLAPPED ov[6];
    struct resume_after ra;
    td_pause(&td);
    queue_ops(h, c, data, len, ov, 4);
    resume_after_next_request(&ra);
    DWORD rc = PeerDistClientCancelAsyncOperation(h, c, &ov[2]);
    resume_after_join(&ra);
    if (getenv("PD_TEST_VERBOSE"))
        fprintf(stderr, "cancel one: %u\n", rc);
    /* Either it was aborted, or its real result was already on its way; either way, delivered. */
    ck_assert(HasOverlappedIoCompleted(&ov[2]));
    if (rc == ERROR_SUCCESS)
        ck_assert_uint_eq(ov[2].Internal, ERROR_OPERATION_ABORTED);
    else
        ck_assert_uint_eq(rc, PEERDIST_ERROR_OPERATION_NOTFOUND);
    drain_exactly_once(port, ov, 4);
    assert_queued_results(ov, 4, rc == ERROR_SUCCESS ? 2 : 99, len);
    ck_assert(rc != ERROR_SUCCESS || ov[2].Internal == ERROR_OPERATION_ABORTED);
    /* Cancelling a finished operation: not found. */
    ck_assert_uint_eq(PeerDistClientCancelAsyncOperation(h, c, &ov[0]), PEERDIST_ERROR_OPERATION_NOTFOUND);

    /* Cancel all: everything pending ends, aborted or with its result, exactly once. */
    td_pause(&td);
    queue_ops(h, c, data, len, ov, 6);
    resume_after_next_request(&ra);
    rc = PeerDistClientCancelAsyncOperation(h, c, NULL);
    resume_after_join(&ra);
    if (getenv("PD_TEST_VERBOSE"))
        fprintf(stderr, "cancel all: %u\n", rc);
    ck_assert_msg(rc == ERROR_SUCCESS || rc == PEERDIST_ERROR_OPERATION_NOTFOUND, "cancel all: %u", rc);
    for (int i = 0; i < 6; i++)
        ck_assert(HasOverlappedIoCompleted(&ov[i]));
    drain_exactly_once(port, ov, 6);
    assert_queued_results(ov, 6, -1, len);

    /* Cancel one split AddData (6 requests) while the daemon works on it. */
    memset(ov, 0, sizeof(ov));
    ck_assert_uint_eq(PeerDistClientAddData(h, c, (DWORD)len, data, &ov[0]), ERROR_IO_PENDING);
    rc = PeerDistClientCancelAsyncOperation(h, c, &ov[0]);
    if (getenv("PD_TEST_VERBOSE"))
        fprintf(stderr, "cancel split: %u\n", rc);
    DWORD n;
    if (rc == ERROR_SUCCESS) {
        ck_assert(HasOverlappedIoCompleted(&ov[0]));
        ck_assert_uint_eq(ov[0].Internal, ERROR_OPERATION_ABORTED);
    } else {
        ck_assert_uint_eq(rc, PEERDIST_ERROR_OPERATION_NOTFOUND);
        ck_assert(PeerDistGetOverlappedResult(&ov[0], &n, TRUE));
    }
    drain_exactly_once(port, ov, 1);

    /* The handle still works (the parts after the cancelled one may have been stored). */
    uint8_t one[8];
    struct rd r = block_read(h, c, len - 100, sizeof(one), one);
    ck_assert(r.status == ERROR_SUCCESS || r.status == PEERDIST_ERROR_MISSING_DATA);
    ck_assert_uint_eq(r.offset, len - 100);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    PeerDistShutdown(h);
    CloseHandle(port);
    free_ci(&ci);
    free(data);
}
END_TEST

START_TEST(close_with_operations_pending)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    uint8_t *data;
    struct ci_blob ci;
    size_t len = 2 * MiB + 500;
    PEERDIST_CONTENT_HANDLE c = ready_handle(h, port, len, &data, &ci);
    static uint8_t bufs[6][4096];
    OVERLAPPED ov[8] = {{0}};
    td_pause(&td);
    for (int i = 0; i < 6; i++)
        ck_assert_uint_eq((i & 1 ? PeerDistClientStreamRead : PeerDistClientBlockRead)(h, c,
            sizeof(bufs[i]), bufs[i], PEERDIST_READ_TIMEOUT_DEFAULT, &ov[i]), ERROR_IO_PENDING);
    /* Paused, the daemon reads nothing: only what fits in the socket buffer can be sent. */
    ck_assert_uint_eq(PeerDistClientAddData(h, c, 65536, data, &ov[6]), ERROR_IO_PENDING);
    ov[7].Offset = 65536;
    ck_assert_uint_eq(PeerDistClientAddData(h, c, 65536, data + 65536, &ov[7]), ERROR_IO_PENDING);
    struct resume_after ra;
    resume_after_next_request(&ra); /* the close request */
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    resume_after_join(&ra);
    for (int i = 0; i < 8; i++) {
        DWORD st = (DWORD)ov[i].Internal;
        ck_assert_msg(HasOverlappedIoCompleted(&ov[i]), "op %d still pending after close", i);
        ck_assert_msg(st == ERROR_OPERATION_ABORTED || st == ERROR_SUCCESS ||
            st == PEERDIST_ERROR_MISSING_DATA || st == PEERDIST_ERROR_NO_MORE, "op %d: %u", i, st);
    }
    drain_exactly_once(port, ov, 8);
    PeerDistShutdown(h);
    CloseHandle(port);
    free_ci(&ci);
    free(data);
}
END_TEST

/* ---- what the library decides alone (pass without the daemon side) ---- */

START_TEST(synchronous_argument_errors)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup(), other = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = make_tag(1);
    PEERDIST_CONTENT_HANDLE c = open_content(h, &tag, port);
    uint8_t buf[64] = {1};
    OVERLAPPED ov = {0}, off = {.Offset = 1}, offh = {.OffsetHigh = 1};
    PEERDIST_CLIENT_BASIC_INFO bi;

    /* NULL overlapped, NULL buffer with a size, size 0, reserved offsets. */
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 4, buf, NULL), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 4, NULL, &ov), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 0, buf, &ov), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 4, buf, &off), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 4, buf, &offh), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientCompleteContentInformation(h, c, NULL), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientCompleteContentInformation(h, c, &off), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientCompleteContentInformation(h, c, &offh), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientAddData(h, c, 4, buf, NULL), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientAddData(h, c, 4, NULL, &ov), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientAddData(h, c, 0, buf, &ov), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientBlockRead(h, c, 4, buf, 0, NULL), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientBlockRead(h, c, 4, NULL, 0, &ov), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientStreamRead(h, c, 4, buf, 0, NULL), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientStreamRead(h, c, 4, NULL, 0, &ov), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientGetInformationByHandle(h, c, MaximumPeerDistClientInfoByHandlesClass,
        sizeof(bi), &bi), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientGetInformationByHandle(h, c, (PEERDIST_CLIENT_INFO_BY_HANDLE_CLASS)7,
        sizeof(bi), &bi), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo, sizeof(bi), NULL),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo, sizeof(bi) - 1, &bi),
        ERROR_INSUFFICIENT_BUFFER);
    /* Before CompleteContentInformation has succeeded. */
    ck_assert_uint_eq(PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo, sizeof(bi), &bi),
        PEERDIST_ERROR_NOT_INITIALIZED);
    /* Nothing pending on the handle: nothing to cancel. */
    ck_assert_uint_eq(PeerDistClientCancelAsyncOperation(h, c, &ov), PEERDIST_ERROR_OPERATION_NOTFOUND);

    /* Unknown instance; unknown, foreign and closed content handles. */
    PEERDIST_INSTANCE_HANDLE gone = api_startup();
    PeerDistShutdown(gone);
    PEERDIST_CONTENT_HANDLE foreign = open_content(other, &tag, NULL), closed = open_content(h, &tag, NULL);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, closed), ERROR_SUCCESS);
    PEERDIST_INSTANCE_HANDLE insts[] = {gone, NULL, h, h, h, h};
    PEERDIST_CONTENT_HANDLE hs[] = {c, c, NULL, foreign, closed, (PEERDIST_CONTENT_HANDLE)port};
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
        PEERDIST_INSTANCE_HANDLE hi = insts[i];
        PEERDIST_CONTENT_HANDLE hc = hs[i];
        OVERLAPPED z = {0};
        ck_assert_uint_eq(PeerDistClientAddContentInformation(hi, hc, 4, buf, &z), ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(PeerDistClientCompleteContentInformation(hi, hc, &z), ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(PeerDistClientAddData(hi, hc, 4, buf, &z), ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(PeerDistClientBlockRead(hi, hc, 4, buf, 0, &z), ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(PeerDistClientStreamRead(hi, hc, 0, NULL, 0, &z), ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(PeerDistClientCancelAsyncOperation(hi, hc, NULL), ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(PeerDistClientCancelAsyncOperation(hi, hc, &z), ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(PeerDistClientGetInformationByHandle(hi, hc, PeerDistClientBasicInfo, sizeof(bi), &bi),
            ERROR_INVALID_HANDLE);
        ck_assert_uint_eq(z.Internal, 0); /* untouched: no completion is coming */
    }
    ck_assert_uint_eq(PeerDistClientCloseContent(h, foreign), ERROR_INVALID_HANDLE);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, closed), ERROR_INVALID_HANDLE);
    ck_assert_uint_eq(PeerDistClientCloseContent(gone, c), ERROR_INVALID_HANDLE);

    /* None of this posted anything. */
    DWORD bytes;
    ULONG_PTR key;
    LPOVERLAPPED got = NULL;
    ck_assert(!GetQueuedCompletionStatus(port, &bytes, &key, &got, 100));
    ck_assert_ptr_null(got);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    PeerDistShutdown(other);
    PeerDistShutdown(h);
    CloseHandle(port);
}
END_TEST

/* Every call on a content handle, with one result expected from each (synchronously). */
static void assert_all_calls_fail(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, DWORD want)
{
    uint8_t buf[8] = {0};
    OVERLAPPED ov = {0};
    PEERDIST_CLIENT_BASIC_INFO bi;
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 4, buf, &ov), want);
    ck_assert_uint_eq(PeerDistClientCompleteContentInformation(h, c, &ov), want);
    ck_assert_uint_eq(PeerDistClientAddData(h, c, 4, buf, &ov), want);
    ck_assert_uint_eq(PeerDistClientBlockRead(h, c, 4, buf, 0, &ov), want);
    ck_assert_uint_eq(PeerDistClientStreamRead(h, c, 4, buf, 0, &ov), want);
    ck_assert_uint_eq(PeerDistClientCancelAsyncOperation(h, c, NULL), want);
    ck_assert_uint_eq(PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo, sizeof(bi), &bi), want);
    ck_assert(ov.Internal != STATUS_PENDING);
}

/* The condition a SIGHUP to "disabled" is waited on: the instance's status says so. */
static bool status_disabled(void *arg)
{
    PEERDIST_STATUS st = PEERDIST_STATUS_AVAILABLE;
    ck_assert_uint_eq(PeerDistGetStatus(arg, &st), ERROR_SUCCESS);
    return st == PEERDIST_STATUS_DISABLED;
}

START_TEST(synchronous_service_errors)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_TAG tag = make_tag(2);
    PEERDIST_CONTENT_HANDLE c = open_content(h, &tag, NULL);
    /* Disabled by policy (mode change on SIGHUP). */
    td_set_mode(&td, "disabled");
    td_signal(&td, SIGHUP);
    ck_assert_msg(td_wait_until(status_disabled, h), "still not DISABLED after SIGHUP");
    assert_all_calls_fail(h, c, ERROR_ACCESS_DISABLED_BY_POLICY);
    /* No daemon (GetStatus is the round trip that notices it went away). */
    td_stop(&td);
    PEERDIST_STATUS st;
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
    ck_assert_int_eq(st, PEERDIST_STATUS_UNAVAILABLE);
    assert_all_calls_fail(h, c, PEERDIST_ERROR_SERVICE_UNAVAILABLE);
    /* Back: the handle from before is invalidated, and still closes. */
    td_set_mode(&td, "local");
    td_start(&td);
    assert_all_calls_fail(h, c, PEERDIST_ERROR_INVALIDATED);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    PeerDistShutdown(h);
}
END_TEST

START_TEST(one_add_content_information_at_a_time)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_TAG tag = make_tag(3);
    PEERDIST_CONTENT_HANDLE c = open_content(h, &tag, NULL);
    uint8_t buf[100] = {1, 0};
    OVERLAPPED a = {0}, b = {0};
    td_pause(&td); /* the first one stays pending */
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, sizeof(buf), buf, &a), ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, sizeof(buf), buf, &b), ERROR_INVALID_PARAMETER);
    ck_assert(!HasOverlappedIoCompleted(&a));
    td_resume(&td);
    DWORD n;
    PeerDistGetOverlappedResult(&a, &n, TRUE);
    /* Once it completed, the next one is accepted. */
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, sizeof(buf), buf, &b), ERROR_IO_PENDING);
    PeerDistGetOverlappedResult(&b, &n, TRUE);
    PeerDistShutdown(h);
}
END_TEST

struct big_add {
    PEERDIST_INSTANCE_HANDLE h;
    PEERDIST_CONTENT_HANDLE c;
    const uint8_t *data;
    DWORD len;
    OVERLAPPED *ov;
    DWORD rc;
};

static void *big_add_thread(void *arg)
{
    struct big_add *b = arg;
    b->rc = PeerDistClientAddData(b->h, b->c, b->len, (PBYTE)b->data, b->ov);
    return NULL;
}

START_TEST(daemon_gone_completes_everything_once)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = make_tag(4);
    PEERDIST_CONTENT_HANDLE c = open_content(h, &tag, port);
    size_t big = 2 * MiB + 17; /* three requests */
    uint8_t *data = make_content(big, 4);
    static uint8_t rb[2][4096];
    OVERLAPPED ov[5] = {{0}};
    td_pause(&td);
    ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, 1000, data, &ov[0]), ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientBlockRead(h, c, sizeof(rb[0]), rb[0], 0, &ov[1]), ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientStreamRead(h, c, sizeof(rb[1]), rb[1], 0, &ov[2]), ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientCompleteContentInformation(h, c, &ov[3]), ERROR_IO_PENDING);
    /*
     * A paused daemon reads nothing, so the split AddData blocks in its writes until the kill
     * (its first 1 MiB request outgrows the socket buffer). Killed once its bytes start
     * reaching the socket: td_unread grows past its reading from before.
     */
    struct sent_mark sent = {td_unread(&td)};
    struct big_add ba = {h, c, data, (DWORD)big, &ov[4], 0};
    pthread_t t;
    pthread_create(&t, NULL, big_add_thread, &ba);
    ck_assert_msg(td_wait_until(sent_more, &sent), "the AddData never reached the socket");
    td_kill(&td);
    pthread_join(t, NULL);
    /* Pending (some part went out) and then completed, or failed synchronously: never both. */
    ck_assert(ba.rc == ERROR_IO_PENDING || ba.rc == PEERDIST_ERROR_SERVICE_UNAVAILABLE);
    int n = ba.rc == ERROR_IO_PENDING ? 5 : 4;
    drain_exactly_once(port, ov, n);
    for (int i = 0; i < n; i++)
        ck_assert_uint_eq(ov[i].Internal, PEERDIST_ERROR_SERVICE_UNAVAILABLE);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    PeerDistShutdown(h);
    CloseHandle(port);
    free(data);
}
END_TEST

START_TEST(shutdown_aborts_content_operations)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = make_tag(5);
    PEERDIST_CONTENT_HANDLE c = open_content(h, &tag, port);
    static uint8_t data[50 * 1024], rb[4096];
    OVERLAPPED ov[3] = {{0}};
    td_pause(&td); /* nothing can complete but by the shutdown */
    ck_assert_uint_eq(PeerDistClientAddData(h, c, sizeof(data), data, &ov[0]), ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientBlockRead(h, c, sizeof(rb), rb, 0, &ov[1]), ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientCompleteContentInformation(h, c, &ov[2]), ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    drain_exactly_once(port, ov, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(ov[i].Internal, ERROR_OPERATION_ABORTED);
    td_resume(&td);
    CloseHandle(port);
}
END_TEST

static Suite *content_suite(void)
{
    Suite *s = suite_create("content");
    TCase *lib = tcase_create("library");
    tcase_add_checked_fixture(lib, setup, teardown);
    tcase_set_timeout(lib, 60);
    tcase_add_test(lib, synchronous_argument_errors);
    tcase_add_test(lib, synchronous_service_errors);
    tcase_add_test(lib, one_add_content_information_at_a_time);
    tcase_add_test(lib, daemon_gone_completes_everything_once);
    tcase_add_test(lib, shutdown_aborts_content_operations);
    suite_add_tcase(s, lib);

    /* DAEMON SIDE: these need daemon/content.c to handle the consuming requests. */
    TCase *dp = tcase_create("datapath");
    tcase_add_checked_fixture(dp, setup, teardown);
    tcase_set_timeout(dp, 60);
    tcase_add_test(dp, round_trip_v1);
    tcase_add_test(dp, round_trip_v2);
    tcase_add_test(dp, empty_content_v1);
    tcase_add_test(dp, empty_content_v2);
    tcase_add_test(dp, one_byte_v1);
    tcase_add_test(dp, one_byte_v2);
    tcase_add_test(dp, corrupted_data_rejected);
    tcase_add_test(dp, two_tags_share_data);
    tcase_add_test(dp, ranged_content_information);
    tcase_add_test(dp, state_errors_complete_async);
    tcase_add_test(dp, cancel_one_and_all);
    tcase_add_test(dp, close_with_operations_pending);
    suite_add_tcase(s, dp);
    return s;
}

int main(void)
{
    return check_run(content_suite());
}
