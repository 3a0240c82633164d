/*
 * test_datapath.c - the whole data path end to end, through <peerdist.h>
 * only, against the real peerdistd: publish → retrieve the content
 * information in small chunks → open content under a tag → reads report
 * exactly the missing ranges → AddData in odd-sized pieces out of order →
 * read back byte-identical with BlockRead and StreamRead → flush → missing
 * again. V1 and V2; 0 bytes, 1 byte, exactly 32 MiB, 100 MiB; two tags; two uids.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <peerdist.h>

#include "check_run.h"
#include "harness.h"
#include "api_util.h"

#define MiB (1024u * 1024)
#define CI_CHUNK 777 /* retrieve content information in small, odd pieces */

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

static uint8_t *make_content(size_t len, unsigned seed)
{
    uint8_t *p = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)((7 * i + 13 * (i >> 8) + seed * 31) & 0xff);
    return p;
}


/* Waits for an async call; returns its final status. */
static DWORD finish(DWORD rc, OVERLAPPED *ov, DWORD *bytes)
{
    return rc == ERROR_IO_PENDING ? api_wait(ov, bytes) : rc;
}

/* Publishes data under id and returns its content information (whole content). */
static uint8_t *publish(PEERDIST_INSTANCE_HANDLE h, const char *id, const uint8_t *data,
    size_t len, DWORD version, size_t *ci_len)
{
    PEERDIST_PUBLICATION_OPTIONS po = {version, 0};
    PEERDIST_STREAM_HANDLE s;
    ck_assert_uint_eq(PeerDistServerPublishStream(h, (DWORD)strlen(id), (PBYTE)id, len, &po, NULL, 0, &s),
        ERROR_SUCCESS);
    /* Odd-sized pieces, one of them larger than a protocol chunk. */
    static const size_t pieces[] = {1, 65535, 3 * MiB + 17, 4097};
    size_t off = 0;
    for (int i = 0; off < len; i = (i + 1) % 4) {
        size_t n = len - off < pieces[i] ? len - off : pieces[i];
        OVERLAPPED ov = {0};
        DWORD got = 0;
        ck_assert_uint_eq(finish(PeerDistServerPublishAddToStream(h, s, (DWORD)n, (PBYTE)data + off, &ov),
                              &ov, &got), ERROR_SUCCESS);
        ck_assert_uint_eq(got, n);
        off += n;
    }
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(finish(PeerDistServerPublishCompleteStream(h, s, &ov), &ov, NULL), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerCloseStreamHandle(h, s), ERROR_SUCCESS);

    PEERDIST_CONTENTINFO_HANDLE ci;
    ck_assert_uint_eq(PeerDistServerOpenContentInformation(h, (DWORD)strlen(id), (PBYTE)id, 0, 0, NULL, 0, &ci),
        ERROR_SUCCESS);
    size_t cap = 1 << 16, n = 0;
    uint8_t *out = malloc(cap);
    for (;;) {
        if (cap - n < CI_CHUNK)
            out = realloc(out, cap *= 2);
        OVERLAPPED rov = {0};
        DWORD got = 0;
        DWORD rc = finish(PeerDistServerRetrieveContentInformation(h, ci, CI_CHUNK, out + n, &rov), &rov, &got);
        if (rc == PEERDIST_ERROR_NO_MORE)
            break;
        ck_assert_uint_eq(rc, ERROR_SUCCESS);
        ck_assert_uint_eq((uint64_t)rov.OffsetHigh << 32 | rov.Offset, n); /* where this chunk belongs */
        ck_assert_uint_le(got, CI_CHUNK);
        n += got;
    }
    ck_assert_uint_eq(PeerDistServerCloseContentInformation(h, ci), ERROR_SUCCESS);
    *ci_len = n;
    return out;
}

static PEERDIST_CONTENT_HANDLE open_with_ci(PEERDIST_INSTANCE_HANDLE h, const PEERDIST_CONTENT_TAG *tag,
    const uint8_t *ci, size_t ci_len)
{
    PEERDIST_CONTENT_HANDLE c;
    ck_assert_uint_eq(PeerDistClientOpenContent(h, tag, NULL, 0, &c), ERROR_SUCCESS);
    for (size_t off = 0; off < ci_len;) {
        DWORD n = ci_len - off < CI_CHUNK ? (DWORD)(ci_len - off) : CI_CHUNK;
        OVERLAPPED ov = {0};
        ck_assert_uint_eq(finish(PeerDistClientAddContentInformation(h, c, n, (PBYTE)ci + off, &ov), &ov, NULL),
            ERROR_SUCCESS);
        off += n;
    }
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(finish(PeerDistClientCompleteContentInformation(h, c, &ov), &ov, NULL), ERROR_SUCCESS);
    return c;
}

/* BlockRead at off: status, and the (offset, bytes) it reports. */
static DWORD block_read(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, uint64_t off, uint8_t *buf,
    DWORD max, uint64_t *at, DWORD *bytes)
{
    OVERLAPPED ov = {.Offset = (DWORD)off, .OffsetHigh = (DWORD)(off >> 32)};
    DWORD rc = finish(PeerDistClientBlockRead(h, c, max, buf, PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, &ov),
        &ov, bytes);
    *at = (uint64_t)ov.OffsetHigh << 32 | ov.Offset;
    return rc;
}

static void add_data(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, const uint8_t *data,
    uint64_t off, size_t n)
{
    OVERLAPPED ov = {.Offset = (DWORD)off, .OffsetHigh = (DWORD)(off >> 32)};
    DWORD got = 0;
    ck_assert_uint_eq(finish(PeerDistClientAddData(h, c, (DWORD)n, (PBYTE)data + off, &ov), &ov, &got),
        ERROR_SUCCESS);
    ck_assert_uint_eq(got, n);
}

/* Adds all of data in odd-sized pieces, back to front. */
static void add_all_out_of_order(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c,
    const uint8_t *data, size_t len)
{
    const size_t piece = 3 * MiB / 2 + 333;
    size_t n_pieces = (len + piece - 1) / piece;
    for (size_t i = n_pieces; i-- > 0;) {
        size_t off = i * piece;
        add_data(h, c, data, off, len - off < piece ? len - off : piece);
    }
}

static void assert_all_missing(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, size_t len)
{
    uint8_t buf[16];
    uint64_t at;
    DWORD n;
    if (len == 0) {
        ck_assert_uint_eq(block_read(h, c, 0, buf, sizeof(buf), &at, &n), PEERDIST_ERROR_NO_MORE);
        return;
    }
    ck_assert_uint_eq(block_read(h, c, 0, buf, sizeof(buf), &at, &n), PEERDIST_ERROR_MISSING_DATA);
    ck_assert_uint_eq(at, 0);
    ck_assert_uint_eq(n, len); /* the whole content is the missing range */
}

/* Reads everything back with StreamRead and compares; also BlockRead at a few offsets. */
static void assert_reads_back(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, const uint8_t *data,
    size_t len)
{
    uint8_t *buf = malloc(MiB);
    size_t got_total = 0;
    for (;;) {
        OVERLAPPED ov = {0};
        DWORD n = 0;
        DWORD rc = finish(PeerDistClientStreamRead(h, c, MiB, buf, PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, &ov),
            &ov, &n);
        if (rc == PEERDIST_ERROR_NO_MORE)
            break;
        ck_assert_msg(rc == ERROR_SUCCESS, "stream read at %zu: %u", got_total, rc);
        ck_assert_uint_eq((uint64_t)ov.OffsetHigh << 32 | ov.Offset, got_total);
        ck_assert_int_eq(memcmp(buf, data + got_total, n), 0);
        got_total += n;
    }
    ck_assert_uint_eq(got_total, len);
    const uint64_t probes[] = {0, 1, 65535, 65536, len / 2, len > 3 ? len - 3 : 0};
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        if (probes[i] >= len)
            continue;
        uint64_t at;
        DWORD n;
        ck_assert_uint_eq(block_read(h, c, probes[i], buf, 4096, &at, &n), ERROR_SUCCESS);
        ck_assert_uint_eq(at, probes[i]);
        ck_assert_uint_ge(n, 1);
        ck_assert_int_eq(memcmp(buf, data + probes[i], n), 0);
    }
    free(buf);
}

static void flush_tag(PEERDIST_INSTANCE_HANDLE h, const PEERDIST_CONTENT_TAG *tag)
{
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(finish(PeerDistClientFlushContent(h, tag, NULL, 0, &ov), &ov, NULL), ERROR_SUCCESS);
}

static void round_trip(size_t len, DWORD version)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    uint8_t *data = make_content(len, (unsigned)len);
    char id[64];
    snprintf(id, sizeof(id), "content-%zu-v%u", len, version);
    size_t ci_len;
    uint8_t *ci = publish(h, id, data, len, version, &ci_len);
    PEERDIST_CONTENT_TAG tag = {{(uint8_t)len, (uint8_t)version, 0xd0}};
    PEERDIST_CONTENT_HANDLE c = open_with_ci(h, &tag, ci, ci_len);
    assert_all_missing(h, c, len); /* publishing cached no bytes */
    add_all_out_of_order(h, c, data, len);
    assert_reads_back(h, c, data, len);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    flush_tag(h, &tag);
    c = open_with_ci(h, &tag, ci, ci_len);
    assert_all_missing(h, c, len);
    PeerDistClientCloseContent(h, c);
    PeerDistServerUnpublish(h, (DWORD)strlen(id), (PBYTE)id);
    PeerDistShutdown(h);
    free(ci);
    free(data);
}

START_TEST(empty_content_v1) { round_trip(0, 1); }
END_TEST
START_TEST(one_byte_v1) { round_trip(1, 1); }
END_TEST
START_TEST(one_byte_v2) { round_trip(1, 2); }
END_TEST
START_TEST(odd_size_v2) { round_trip(5 * MiB + 12345, 2); }
END_TEST
START_TEST(exactly_32_mib_v1) { round_trip(32 * MiB, 1); }
END_TEST
START_TEST(hundred_mib_v1) { round_trip(100 * MiB, 1); }
END_TEST

/* Two tags add the same bytes: flushing one keeps what the other labelled. */
START_TEST(two_tags_share_data)
{
    const size_t len = 2 * MiB + 1;
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    uint8_t *data = make_content(len, 3);
    size_t ci_len;
    uint8_t *ci = publish(h, "shared", data, len, 1, &ci_len);
    PEERDIST_CONTENT_TAG a = {{0xa}}, b = {{0xb}};
    PEERDIST_CONTENT_HANDLE ca = open_with_ci(h, &a, ci, ci_len);
    PEERDIST_CONTENT_HANDLE cb = open_with_ci(h, &b, ci, ci_len);
    add_all_out_of_order(h, ca, data, len);
    add_all_out_of_order(h, cb, data, len);
    flush_tag(h, &a);
    assert_reads_back(h, ca, data, len); /* b's labels keep the bytes */
    flush_tag(h, &b);
    assert_all_missing(h, cb, len);
    PeerDistShutdown(h);
    free(ci);
    free(data);
}
END_TEST

static int read_full(int fd, void *p, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (uint8_t *)p + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* In a forked child: waits for content information on rfd, then becomes uid 65534. */
static uint8_t *child_take_ci_as_other_uid(int rfd, size_t *ci_len)
{
    if (read_full(rfd, ci_len, sizeof(*ci_len)) != 0)
        _exit(9);
    uint8_t *ci = malloc(*ci_len);
    if (!ci || read_full(rfd, ci, *ci_len) != 0)
        _exit(9);
    if (setgid(65534) != 0 || setuid(65534) != 0)
        _exit(10);
    return ci;
}

/* The second user: waits for the content information, then reads and flushes as uid 65534. */
static void other_uid_child(int rfd, const uint8_t *data)
{
    size_t ci_len;
    uint8_t *ci = child_take_ci_as_other_uid(rfd, &ci_len);
    PEERDIST_CONTENT_TAG tag = {{0x55}};
    PEERDIST_INSTANCE_HANDLE h2 = api_startup();
    PEERDIST_CONTENT_HANDLE c2 = open_with_ci(h2, &tag, ci, ci_len);
    uint8_t buf[64];
    uint64_t at;
    DWORD n;
    /* Content information is the capability: the bytes root added are readable here. */
    if (block_read(h2, c2, 100, buf, sizeof(buf), &at, &n) != ERROR_SUCCESS || memcmp(buf, data + 100, n))
        _exit(11);
    flush_tag(h2, &tag); /* removes only uid 65534's labels: there are none */
    _exit(0);
}

/* Another user's flush of the same tag leaves our data; content is readable by both. */
START_TEST(two_uids)
{
    const size_t len = MiB + 7;
    uint8_t *data = make_content(len, 5);
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    pid_t pid = fork(); /* before the library starts threads in this process */
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(pfd[1]);
        other_uid_child(pfd[0], data);
    }
    close(pfd[0]);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    size_t ci_len;
    uint8_t *ci = publish(h, "two-uids", data, len, 1, &ci_len);
    PEERDIST_CONTENT_TAG tag = {{0x55}};
    PEERDIST_CONTENT_HANDLE c = open_with_ci(h, &tag, ci, ci_len);
    add_all_out_of_order(h, c, data, len);
    ck_assert_int_eq(write(pfd[1], &ci_len, sizeof(ci_len)), (ssize_t)sizeof(ci_len));
    ck_assert_int_eq(write(pfd[1], ci, ci_len), (ssize_t)ci_len);
    close(pfd[1]);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    assert_reads_back(h, c, data, len);
    PeerDistShutdown(h);
    free(ci);
    free(data);
}
END_TEST

/* Content information for [off, off+len) of a publication, in one piece. */
static uint8_t *ranged_ci(PEERDIST_INSTANCE_HANDLE h, const char *id, uint64_t off, uint64_t len,
    size_t *ci_len)
{
    PEERDIST_CONTENTINFO_HANDLE ci;
    ck_assert_uint_eq(PeerDistServerOpenContentInformation(h, (DWORD)strlen(id), (PBYTE)id, off, len, NULL,
                          0, &ci), ERROR_SUCCESS);
    uint8_t *out = malloc(4 * MiB);
    size_t n = 0;
    for (;;) {
        OVERLAPPED ov = {0};
        DWORD got = 0;
        DWORD rc = finish(PeerDistServerRetrieveContentInformation(h, ci, MiB, out + n, &ov), &ov, &got);
        if (rc == PEERDIST_ERROR_NO_MORE)
            break;
        ck_assert_uint_eq(rc, ERROR_SUCCESS);
        n += got;
    }
    PeerDistServerCloseContentInformation(h, ci);
    *ci_len = n;
    return out;
}

/*
 * uid 65534 with the same ranged (partial) list: phase 1 must not read what root verified
 * against its partial list; phase 2, after a full list verified, may. (A full list would
 * itself verify against HoD and promote the blocks: any handle may supply it.)
 */
static void trust_child(int rfd, int wfd, const uint8_t *data)
{
    size_t ci_len;
    uint8_t *ci = child_take_ci_as_other_uid(rfd, &ci_len);
    PEERDIST_CONTENT_TAG tag = {{0x77}};
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_HANDLE c = open_with_ci(h, &tag, ci, ci_len);
    uint8_t buf[64];
    uint64_t at;
    DWORD n;
    char phase = 0;
    /* Phase 1: block 1 was verified only against root's ranged (partial) list. */
    if (block_read(h, c, 65536 + 200, buf, sizeof(buf), &at, &n) != PEERDIST_ERROR_MISSING_DATA)
        _exit(12);
    if (write(wfd, "1", 1) != 1 || read(rfd, &phase, 1) != 1)
        _exit(13);
    /* Phase 2: a full list has verified against HoD since: the same bytes are shared now. */
    if (block_read(h, c, 65536 + 200, buf, sizeof(buf), &at, &n) != ERROR_SUCCESS ||
        memcmp(buf, data + 65536 + 200, n) != 0)
        _exit(14);
    _exit(0);
}

/*
 * DESIGN.md, Trust in stored bytes: blocks verified against a partial hash list serve their
 * handle (and survive its close) but reach other users only once the full list verifies.
 */
START_TEST(ranged_blocks_are_shared_only_after_the_full_list)
{
    const size_t len = 4 * 65536;
    uint8_t *data = make_content(len, 11);
    int to_child[2], from_child[2];
    ck_assert_int_eq(pipe(to_child), 0);
    ck_assert_int_eq(pipe(from_child), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(to_child[1]);
        close(from_child[0]);
        trust_child(to_child[0], from_child[1], data);
    }
    close(to_child[0]);
    close(from_child[1]);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    size_t full_len, part_len;
    uint8_t *full = publish(h, "trust", data, len, 1, &full_len);
    uint8_t *part = ranged_ci(h, "trust", 65536 + 100, 65536, &part_len); /* inside blocks 1-2 */
    PEERDIST_CONTENT_TAG tag = {{0x66}};
    PEERDIST_CONTENT_HANDLE c = open_with_ci(h, &tag, part, part_len);
    add_data(h, c, data, 65536, 2 * 65536); /* blocks 1 and 2, whole */
    uint8_t buf[64];
    uint64_t at;
    DWORD n;
    ck_assert_uint_eq(block_read(h, c, 65536 + 200, buf, sizeof(buf), &at, &n), ERROR_SUCCESS);
    ck_assert_int_eq(memcmp(buf, data + 65536 + 200, n), 0);
    /* Outside its range the ranged handle has nothing to say. */
    ck_assert_uint_eq(block_read(h, c, 10, buf, sizeof(buf), &at, &n), PEERDIST_ERROR_NO_MORE);
    PeerDistClientCloseContent(h, c);

    /* The other user, holding the same partial list, does not get root's bytes. */
    ck_assert_int_eq(write(to_child[1], &part_len, sizeof(part_len)), (ssize_t)sizeof(part_len));
    ck_assert_int_eq(write(to_child[1], part, part_len), (ssize_t)part_len);
    char ack;
    ck_assert_int_eq(read(from_child[0], &ack, 1), 1);

    /* Root completes the full list: it verifies against HoD and the blocks become shared. */
    c = open_with_ci(h, &tag, full, full_len);
    ck_assert_uint_eq(block_read(h, c, 65536 + 200, buf, sizeof(buf), &at, &n), ERROR_SUCCESS);
    ck_assert_int_eq(write(to_child[1], "2", 1), 1);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    PeerDistShutdown(h);
    free(full);
    free(part);
    free(data);
}
END_TEST

/* Bytes that do not match their hash are refused and nothing of that block is readable. */
START_TEST(corrupted_data_rejected)
{
    const size_t len = 3 * 65536;
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    uint8_t *data = make_content(len, 9);
    size_t ci_len;
    uint8_t *ci = publish(h, "corrupt", data, len, 1, &ci_len);
    PEERDIST_CONTENT_TAG tag = {{0xcc}};
    PEERDIST_CONTENT_HANDLE c = open_with_ci(h, &tag, ci, ci_len);
    uint8_t *bad = malloc(len);
    memcpy(bad, data, len);
    bad[65536 + 5] ^= 1;
    OVERLAPPED ov = {.Offset = 65536};
    ck_assert_uint_eq(finish(PeerDistClientAddData(h, c, 65536, bad + 65536, &ov), &ov, NULL), ERROR_INVALID_DATA);
    uint8_t buf[16];
    uint64_t at;
    DWORD n;
    ck_assert_uint_eq(block_read(h, c, 65536, buf, sizeof(buf), &at, &n), PEERDIST_ERROR_MISSING_DATA);
    ck_assert_uint_eq(at, 65536);
    add_data(h, c, data, 0, 65536);
    ck_assert_uint_eq(block_read(h, c, 0, buf, sizeof(buf), &at, &n), ERROR_SUCCESS);
    /* The missing range after block 0 runs to the end: block 1 was never stored. */
    ck_assert_uint_eq(block_read(h, c, 65536, buf, sizeof(buf), &at, &n), PEERDIST_ERROR_MISSING_DATA);
    ck_assert_uint_eq(n, len - 65536);
    PeerDistShutdown(h);
    free(bad);
    free(ci);
    free(data);
}
END_TEST

/*
 * What a completion promises (DESIGN.md): acknowledged AddData survives SIGKILL; bytes of
 * requests still in flight when the daemon dies are either readable and right, or missing.
 */
START_TEST(acknowledged_data_survives_sigkill)
{
    const size_t len = 6 * MiB + 4321;
    uint8_t *data = make_content(len, 21);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    size_t ci_len;
    uint8_t *ci = publish(h, "survive", data, len, 1, &ci_len);
    PEERDIST_CONTENT_TAG tag = {{0x5a}};
    PEERDIST_CONTENT_HANDLE c = open_with_ci(h, &tag, ci, ci_len);
    add_data(h, c, data, 0, 3 * MiB); /* acknowledged */
    /* More in flight, not waited for, then the daemon dies. */
    static OVERLAPPED ov[3];
    for (int i = 0; i < 3; i++) {
        uint64_t off = 3 * MiB + (uint64_t)i * MiB;
        size_t n = i < 2 ? MiB : len - off;
        ov[i].Offset = (DWORD)off;
        DWORD rc = PeerDistClientAddData(h, c, (DWORD)n, data + off, &ov[i]);
        ck_assert(rc == ERROR_IO_PENDING);
    }
    td_kill(&td);
    for (int i = 0; i < 3; i++) {
        DWORD n;
        PeerDistGetOverlappedResult(&ov[i], &n, TRUE); /* each completes, one way or the other */
    }
    PeerDistShutdown(h);

    td_start(&td); /* start-up reconciles files with the metadata */
    h = api_startup();
    c = open_with_ci(h, &tag, ci, ci_len);
    uint8_t *buf = malloc(MiB);
    size_t readable = 0;
    for (uint64_t off = 0; off < len;) {
        uint64_t at;
        DWORD n = 0;
        DWORD rc = block_read(h, c, off, buf, MiB, &at, &n);
        ck_assert_uint_gt(n, 0);
        if (rc == ERROR_SUCCESS) {
            ck_assert_int_eq(memcmp(buf, data + off, n), 0); /* never wrong bytes */
            readable += n;
        } else {
            ck_assert_uint_eq(rc, PEERDIST_ERROR_MISSING_DATA);
            ck_assert_uint_eq(at, off);
            ck_assert(off >= 3 * MiB); /* acknowledged bytes are all there */
        }
        off += n;
    }
    ck_assert_uint_ge(readable, 3 * MiB);
    PeerDistShutdown(h);
    free(buf);
    free(ci);
    free(data);
}
END_TEST

/*
 * A client cannot make the daemon hold unbounded memory: bytes of incomplete blocks are
 * capped per handle (64 MiB) and, across handles, per connection (256 MiB); past that
 * AddData completes with ERROR_NOT_ENOUGH_MEMORY and the daemon keeps serving.
 */
START_TEST(held_bytes_are_bounded_per_connection)
{
    const uint32_t blocks = 800; /* ~59 MB held per handle: under the per-handle cap */
    const size_t len = (size_t)blocks * 65536;
    uint8_t *data = make_content(len, 31);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    size_t ci_len;
    uint8_t *ci = publish(h, "held", data, len, 1, &ci_len);
    PEERDIST_CONTENT_TAG tag = {{0x4e}};
    DWORD refused = 0;
    int handle_refused = -1;
    for (int k = 0; k < 5 && !refused; k++) {
        PEERDIST_CONTENT_HANDLE c = open_with_ci(h, &tag, ci, ci_len);
        for (uint32_t b = 0; b < blocks; b++) {
            /* All of each block but its last byte: nothing completes, everything is held. */
            OVERLAPPED ov = {.Offset = b * 65536};
            DWORD rc = finish(PeerDistClientAddData(h, c, 65535, data + (size_t)b * 65536, &ov), &ov, NULL);
            if (rc != ERROR_SUCCESS) {
                refused = rc;
                handle_refused = k;
                break;
            }
        }
    }
    ck_assert_uint_eq(refused, ERROR_NOT_ENOUGH_MEMORY);
    ck_assert_int_eq(handle_refused, 4); /* four handles fit in 256 MiB, the fifth does not */
    ck_assert(td_log_contains(&td, "AddData refused"));
    PEERDIST_STATUS st;
    ck_assert_uint_eq(PeerDistGetStatus(h, &st), ERROR_SUCCESS);
    ck_assert_int_eq(st, PEERDIST_STATUS_AVAILABLE);
    PeerDistShutdown(h);
    free(ci);
    free(data);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("datapath");
    TCase *tc = tcase_create("datapath");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, empty_content_v1);
    tcase_add_test(tc, one_byte_v1);
    tcase_add_test(tc, one_byte_v2);
    tcase_add_test(tc, odd_size_v2);
    tcase_add_test(tc, two_tags_share_data);
    tcase_add_test(tc, two_uids);
    tcase_add_test(tc, corrupted_data_rejected);
    tcase_add_test(tc, ranged_blocks_are_shared_only_after_the_full_list);
    tcase_add_test(tc, acknowledged_data_survives_sigkill);
    tcase_add_test(tc, held_bytes_are_bounded_per_connection);
    tcase_add_test(tc, exactly_32_mib_v1);
    tcase_add_test(tc, hundred_mib_v1);
    suite_add_tcase(s, tc);
    return check_run(s);
}
