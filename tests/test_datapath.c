/* SPDX-License-Identifier: MIT */
/*
 * test_datapath.c - the whole data path end to end, through <peerdist.h> only, against the
 * real peerdistd: publish → retrieve the content information in small chunks → open content
 * under a tag → reads report exactly the missing ranges → AddData in odd-sized pieces out of
 * order → read back byte-identical with BlockRead and StreamRead → flush → missing again;
 * V1 and V2, from 0 bytes to 100 MiB. Then what must hold across users, restarts and limits:
 * two uids, blocks verified against a partial list, acknowledged AddData surviving SIGKILL,
 * the bytes a connection can make the daemon hold, the database's WAL staying small under a
 * steady stream of AddData (checkpoints off the loop, daemon/checkpoint.c), the daemon's
 * account of where AddData's time went, and freed data files written over by new segments
 * without their old bytes ever being served.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <peerdist.h>

#include "api_util.h"
#include "check_run.h"
#include "contentinfo.h"
#include "harness.h"
#include "wire_util.h"

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

/*
 * Publishes data under id (in odd-sized pieces, one of them larger than a protocol chunk)
 * and gives the daemon's own content information for it: retrieved in API_CI_CHUNK pieces,
 * each where it belongs, and parsed for the block layout.
 */
static void publish_ci(PEERDIST_INSTANCE_HANDLE h, const char *id, const uint8_t *data, size_t len,
    DWORD version, struct api_ci *ci)
{
    static const size_t pieces[] = {1, 65535, 3 * MiB + 17, 4097};
    api_publish(h, id, data, len, version, pieces, 4);
    PEERDIST_CONTENTINFO_HANDLE hci;
    ck_assert_uint_eq(api_open_ci(h, id, 0, 0, NULL, &hci), ERROR_SUCCESS);
    ci->bytes = api_retrieve_ci(h, hci, API_CI_CHUNK, &ci->len);
    ck_assert_uint_eq(PeerDistServerCloseContentInformation(h, hci), ERROR_SUCCESS);
    struct ci_error err;
    ck_assert_uint_eq(ci_parse(ci->bytes, ci->len, &ci->info, &err), ERROR_SUCCESS);
    ck_assert_int_eq(ci->info->version, (int)version);
    ck_assert_uint_eq(ci->info->range_length, len);
}

/* Adds all of data in odd-sized pieces (1.5 MiB + 333), back to front. */
static void add_back_to_front(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c,
    const uint8_t *data, size_t len)
{
    const size_t piece = 3 * MiB / 2 + 333;
    for (size_t i = (len + piece - 1) / piece; i-- > 0;) {
        size_t off = i * piece;
        DWORD n = (DWORD)(len - off < piece ? len - off : piece), got;
        ck_assert_uint_eq(api_add_data(h, c, off, data + off, n, &got), ERROR_SUCCESS);
        ck_assert_uint_eq(got, n);
    }
}

/* ---- the whole path ---- */

static void round_trip(size_t len, DWORD version)
{
    uint8_t *data = api_make_content(len, (unsigned)len + version);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    char id[64];
    snprintf(id, sizeof(id), "content-%zu-v%u", len, version);
    struct api_ci ci;
    publish_ci(h, id, data, len, version, &ci);
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag = api_make_tag((uint8_t)(len + version));
    PEERDIST_CONTENT_HANDLE c = api_open_content(h, &tag, port);

    /* Content information in small pieces; completions go to the handle's port. */
    for (size_t at = 0; at < ci.len; at += API_CI_CHUNK) {
        OVERLAPPED ov = {0};
        DWORD n = ci.len - at < API_CI_CHUNK ? (DWORD)(ci.len - at) : API_CI_CHUNK, got;
        ULONG_PTR key;
        LPOVERLAPPED pov;
        ck_assert_uint_eq(PeerDistClientAddContentInformation(h, c, n, ci.bytes + at, &ov),
            ERROR_IO_PENDING);
        ck_assert(GetQueuedCompletionStatus(port, &got, &key, &pov, 10000));
        ck_assert_ptr_eq(pov, &ov);
        ck_assert_uint_eq(key, API_KEY);
        ck_assert_uint_eq(got, n);
    }
    PEERDIST_CLIENT_BASIC_INFO bi = {.fFlashCrowd = TRUE};
    ck_assert_uint_eq(
        PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo, sizeof(bi), &bi),
        PEERDIST_ERROR_NOT_INITIALIZED);
    OVERLAPPED cov = {0};
    ck_assert_uint_eq(
        api_wait_pending(PeerDistClientCompleteContentInformation(h, c, &cov), &cov, NULL),
        ERROR_SUCCESS);
    ck_assert_uint_eq(
        PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo, sizeof(bi), &bi),
        ERROR_SUCCESS);
    ck_assert_int_eq(bi.fFlashCrowd, FALSE);

    uint8_t one[16];
    if (len == 0) {
        ck_assert_uint_eq(api_block_read(h, c, 0, sizeof(one), one).status, PEERDIST_ERROR_NO_MORE);
        ck_assert_uint_eq(api_stream_read(h, c, sizeof(one), one).status, PEERDIST_ERROR_NO_MORE);
        ck_assert_uint_eq(api_add_data(h, c, 0, one, 1, NULL), PEERDIST_ERROR_OUT_OF_BOUNDS);
        ck_assert_uint_eq(api_flush(h, &tag), ERROR_SUCCESS);
        PEERDIST_CONTENT_HANDLE c2 = api_open_with_ci(h, &tag, &ci);
        ck_assert_uint_eq(api_block_read(h, c2, 0, sizeof(one), one).status,
            PEERDIST_ERROR_NO_MORE);
        ck_assert_uint_eq(PeerDistClientCloseContent(h, c2), ERROR_SUCCESS);
        goto done;
    }

    /* Nothing cached (publishing cached no bytes): reads report exactly the missing ranges. */
    static uint8_t big[64 * KiB];
    api_assert_missing(api_block_read(h, c, 0, sizeof(big), big), 0, len);
    api_assert_missing(api_block_read(h, c, len / 2, 16, one), len / 2, len - len / 2);
    api_assert_missing(api_block_read(h, c, len - 1, 16, one), len - 1, 1);
    ck_assert_uint_eq(api_block_read(h, c, len, 16, one).status, PEERDIST_ERROR_NO_MORE);
    ck_assert_uint_eq(api_block_read(h, c, len + 1000, 16, one).status, PEERDIST_ERROR_NO_MORE);
    /* The stream moves past a missing range. */
    api_assert_missing(api_stream_read(h, c, 16, one), 0, len);
    ck_assert_uint_eq(api_stream_read(h, c, 16, one).status, PEERDIST_ERROR_NO_MORE);

    /* AddData in odd pieces, out of order, two of them larger than 1 MiB when len allows;
     * after each, reads at every piece boundary give what the model says. */
    struct api_model m;
    api_model_init(&m, data, len, ci.info);
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
        ck_assert_uint_eq(api_add_data(h, c, pts[i], data + pts[i], n, &got), ERROR_SUCCESS);
        ck_assert_uint_eq(got, n);
        memset(m.added + pts[i], 1, n);
        done_pieces++;
        for (size_t j = 0; j <= np; j++) {
            if (pts[j] < len)
                api_model_probe(&m, h, c, pts[j]);
            if (pts[j] > 0)
                api_model_probe(&m, h, c, pts[j] - 1);
        }
        api_model_probe(&m, h, c, len / 3);
    }
    ck_assert_uint_eq(done_pieces, np);
    /* Around the first block boundary and near the end, too. */
    const uint64_t at[] = {1, 65535, 65536, len / 2, len > 3 ? len - 3 : 0};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
        if (at[i] < len)
            api_model_probe(&m, h, c, at[i]);

    /* Everything back, byte-identical, both ways (a second handle has a fresh stream cursor). */
    api_read_back_block(h, c, data, 0, len);
    PEERDIST_CONTENT_HANDLE c2 = api_open_with_ci(h, &tag, &ci);
    api_read_back_stream(h, c2, data, 0, len);
    struct api_read q = api_block_read(h, c2, 0, 0, NULL);
    ck_assert_uint_eq(q.status, ERROR_SUCCESS);
    ck_assert_uint_eq(q.bytes, len);

    /* Flush: missing again, for this handle and a new one. */
    ck_assert_uint_eq(api_flush(h, &tag), ERROR_SUCCESS);
    api_assert_missing(api_block_read(h, c2, 0, 16, one), 0, len);
    PEERDIST_CONTENT_HANDLE c3 = api_open_with_ci(h, &tag, &ci);
    api_assert_missing(api_block_read(h, c3, 0, 16, one), 0, len);
    api_assert_missing(api_stream_read(h, c3, 16, one), 0, len);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c2), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c3), ERROR_SUCCESS);
    api_model_free(&m);
done:
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerUnpublish(h, (DWORD)strlen(id), (PBYTE)id), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    CloseHandle(port);
    api_ci_free(&ci);
    free(data);
}

START_TEST(empty_content_v1)
{
    round_trip(0, 1);
}
END_TEST
START_TEST(empty_content_v2)
{
    round_trip(0, 2);
}
END_TEST
START_TEST(one_byte_v1)
{
    round_trip(1, 1);
}
END_TEST
START_TEST(one_byte_v2)
{
    round_trip(1, 2);
}
END_TEST
START_TEST(odd_size_v1)
{
    round_trip(3 * MiB + 12345, 1);
}
END_TEST
START_TEST(odd_size_v2)
{
    round_trip(5 * MiB + 12345, 2);
}
END_TEST
START_TEST(exactly_32_mib_v1)
{
    round_trip(32 * MiB, 1);
}
END_TEST
START_TEST(hundred_mib_v1)
{
    round_trip(100 * MiB, 1);
}
END_TEST

/*
 * The daemon's commits never checkpoint: checkpoints run on a thread of their own, racing the
 * commits, and under a steady stream of them one runs with the writes held once the WAL
 * passes CHECKPOINT_RESTART_PAGES (4 x 1000 pages, daemon/checkpoint.c), so that the WAL
 * starts over. AddData of one 64 KiB block at a time (each a commit of its own, about 1,000
 * WAL pages per 16 MiB here), 12 rounds of 16 MiB: checkpoints ran, and the WAL file (which
 * keeps the largest size it reached) stayed under twice that bound. With no checkpoint, or
 * with racing checkpoints alone that never let the WAL start over, it would pass it.
 */
#define WAL_PAGES_BOUND (2 * 4 * 1000)
#define WAL_FRAME_BYTES (4096 + 24)

START_TEST(wal_starts_over_under_a_steady_stream_of_adds)
{
    td_stop(&td);
    td_config_append(&td, "log_level = debug\n");
    td_start(&td);
    const size_t len = 16 * MiB;
    uint8_t *data = api_make_content(len, 77);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    struct api_ci ci;
    publish_ci(h, "wal-stream", data, len, 1, &ci);
    const int rounds = 12;
    for (int t = 1; t <= rounds; t++) {
        PEERDIST_CONTENT_TAG tag = api_make_tag((uint8_t)t);
        PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag, &ci);
        for (size_t off = 0; off < len; off += 64 * KiB)
            ck_assert_uint_eq(api_add_data(h, c, off, data + off, 64 * KiB, NULL), ERROR_SUCCESS);
        ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    }
    ck_assert_int_gt(td_log_count(&td, "WAL pages copied to the database"), 0);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", td.db);
    struct stat sb;
    ck_assert_int_eq(stat(wal, &sb), 0);
    ck_assert_msg(sb.st_size < (off_t)WAL_PAGES_BOUND * WAL_FRAME_BYTES,
        "the WAL reached %lld bytes in %d rounds", (long long)sb.st_size, rounds);
    ck_assert_uint_eq(PeerDistServerUnpublish(h, 10, (PBYTE) "wal-stream"), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    api_ci_free(&ci);
    free(data);
}
END_TEST

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The daemon's DaemonInfoReply (peerdist__reply__free_unpacked when done). */
static Peerdist__Reply *daemon_info(void)
{
    int fd = wu_open(td.sock);
    ck_assert_int_ge(fd, 0);
    Peerdist__DaemonInfoRequest dr = PEERDIST__DAEMON_INFO_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_DAEMON_INFO;
    req.daemon_info = &dr;
    Peerdist__Reply *r = wu_call(fd, &req);
    close(fd);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->body_case, PEERDIST__REPLY__BODY_DAEMON_INFO);
    return r;
}

/* The daemon's AddData timing (DaemonInfoReply.add_data); the stages' sum in *stages_us. */
static Peerdist__AddDataTiming add_timing(uint64_t *stages_us)
{
    Peerdist__Reply *r = daemon_info();
    ck_assert_ptr_nonnull(r->daemon_info->add_data);
    Peerdist__AddDataTiming t = *r->daemon_info->add_data;
    peerdist__reply__free_unpacked(r, NULL);
    *stages_us = t.queued_us + t.verify_write_us + t.sync_wait_us + t.sync_us + t.commit_us;
    return t;
}

/*
 * The daemon counts the AddData calls that stored blocks and were answered ERROR_SUCCESS, the
 * bytes they carried, and each stage's time: not a call that only held part of a block, nor
 * one whose block failed its hash; and the stages of the calls it counts add up to no more
 * than the time they took.
 */
START_TEST(adddata_timing_counts_the_calls_that_stored_blocks)
{
    const size_t len = 1 * MiB;
    uint8_t *data = api_make_content(len, 91), *bad = malloc(64 * KiB);
    ck_assert_ptr_nonnull(bad);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    struct api_ci ci;
    publish_ci(h, "timing", data, len, 1, &ci);
    PEERDIST_CONTENT_TAG tag = api_make_tag(91);
    PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag, &ci);
    uint64_t sum0;
    Peerdist__AddDataTiming t0 = add_timing(&sum0);
    double began = now_ms();
    /* Counted: a whole block. */
    ck_assert_uint_eq(api_add_data(h, c, 0, data, 64 * KiB, NULL), ERROR_SUCCESS);
    /* Not counted: half a block, held; counted: the call that completes it. */
    ck_assert_uint_eq(api_add_data(h, c, 64 * KiB, data + 64 * KiB, 32 * KiB, NULL), ERROR_SUCCESS);
    uint64_t sum;
    ck_assert_uint_eq(add_timing(&sum).calls, t0.calls + 1);
    ck_assert_uint_eq(api_add_data(h, c, 96 * KiB, data + 96 * KiB, 32 * KiB, NULL), ERROR_SUCCESS);
    /* Not counted: a block that fails its hash. */
    memcpy(bad, data + 128 * KiB, 64 * KiB);
    bad[100] ^= 1;
    ck_assert_uint_eq(api_add_data(h, c, 128 * KiB, bad, 64 * KiB, NULL), ERROR_INVALID_DATA);
    /* Counted: the other 13 blocks in one call. */
    ck_assert_uint_eq(
        api_add_data(h, c, 192 * KiB, data + 192 * KiB, (DWORD)(len - 192 * KiB), NULL),
        ERROR_SUCCESS);
    double took_us = (now_ms() - began) * 1e3;
    Peerdist__AddDataTiming t = add_timing(&sum);
    ck_assert_uint_eq(t.calls - t0.calls, 3);
    ck_assert_uint_eq(t.bytes - t0.bytes, 64 * KiB + 32 * KiB + (len - 192 * KiB));
    ck_assert_uint_gt(sum, sum0);
    ck_assert_msg((double)(sum - sum0) <= took_us, "stages %llu us, the calls took %.0f us",
        (unsigned long long)(sum - sum0), took_us);
    ck_assert_uint_gt(t.sync_us + t.verify_write_us, t0.sync_us + t0.verify_write_us);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerUnpublish(h, 6, (PBYTE) "timing"), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    api_ci_free(&ci);
    free(bad);
    free(data);
}
END_TEST

/* The daemon's spare files (DaemonInfoReply.spare_files). */
static Peerdist__SpareFiles spare_files(void)
{
    Peerdist__Reply *r = daemon_info();
    ck_assert_ptr_nonnull(r->daemon_info->spare_files);
    Peerdist__SpareFiles sf = *r->daemon_info->spare_files;
    peerdist__reply__free_unpacked(r, NULL);
    return sf;
}

static bool spare_kept(void *arg)
{
    return spare_files().files > *(const uint64_t *)arg;
}

/* Where the first allocated byte of the data file of ci's segment 0 at or after off is
 * (-1: none). */
static off_t data_at_or_after(const struct api_ci *ci, off_t off)
{
    char hex[2 * CI_MAX_DIGEST + 1], path[512];
    for (size_t i = 0; i < ci->info->digest_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", ci->info->segments[0].id[i]);
    snprintf(path, sizeof(path), "%s/data/%.2s/%s", td.dir, hex, hex);
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    off_t at = lseek(fd, off, SEEK_DATA);
    close(fd);
    return at;
}

/*
 * A flushed segment's data file becomes a spare, and the next new segment file of its size is
 * that file renamed into place: the old bytes sit in the slots the new segment has not filled
 * yet. They are never served: reads report those blocks missing, before and after a restart
 * (whose clean stop punches them), and the old content's own blocks are missing too.
 */
START_TEST(spare_files_never_serve_their_old_bytes)
{
    td_stop(&td); /* a pool whatever the filesystem's size (it needs 350 MiB free) */
    td_config_append(&td, "cache_size = 1G\nspare_pool = 64M\n");
    td_start(&td);
    const size_t len = 2 * MiB;
    uint8_t *a = api_make_content(len, 111), *b = api_make_content(len, 112);
    uint8_t *buf = malloc(len);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    struct api_ci ca, cb;
    publish_ci(h, "spare-a", a, len, 1, &ca);
    publish_ci(h, "spare-b", b, len, 1, &cb);
    PEERDIST_CONTENT_TAG tag_a = api_make_tag(111), tag_b = api_make_tag(112);
    PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag_a, &ca);
    ck_assert_uint_eq(api_add_data(h, c, 0, a, MiB, NULL), ERROR_SUCCESS);
    ck_assert_uint_eq(api_add_data(h, c, MiB, a + MiB, MiB, NULL), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    uint64_t files = spare_files().files;
    ck_assert_uint_eq(api_flush(h, &tag_a), ERROR_SUCCESS);
    ck_assert(td_wait_until(spare_kept, &files)); /* reclaim runs after the flush replies */
    Peerdist__SpareFiles s1 = spare_files();

    /* B's first half: its file is A's, renamed into place; A's bytes fill the second half. */
    c = api_open_with_ci(h, &tag_b, &cb);
    ck_assert_uint_eq(api_add_data(h, c, 0, b, MiB, NULL), ERROR_SUCCESS);
    Peerdist__SpareFiles s2 = spare_files();
    ck_assert_uint_eq(s2.taken, s1.taken + 1);
    ck_assert_uint_eq(s2.files, s1.files - 1);
    ck_assert_int_eq(data_at_or_after(&cb, MiB), MiB);
    api_read_back_block(h, c, b, 0, MiB);
    api_assert_missing(api_block_read(h, c, MiB, MiB, buf), MiB, MiB);
    PEERDIST_CONTENT_HANDLE ca_h = api_open_with_ci(h, &tag_a, &ca);
    api_assert_missing(api_block_read(h, ca_h, 0, (DWORD)len, buf), 0, len);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, ca_h), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);

    /* A clean stop punches the old bytes; the new ones stay, and read the same. */
    ck_assert_int_eq(td_stop(&td), 0);
    ck_assert_int_eq(data_at_or_after(&cb, MiB), -1);
    td_start(&td);
    h = api_startup();
    c = api_open_with_ci(h, &tag_b, &cb);
    api_read_back_block(h, c, b, 0, MiB);
    api_assert_missing(api_block_read(h, c, MiB, MiB, buf), MiB, MiB);
    ck_assert_uint_eq(api_add_data(h, c, MiB, b + MiB, MiB, NULL), ERROR_SUCCESS);
    api_read_back_block(h, c, b, 0, len);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    api_ci_free(&ca);
    api_ci_free(&cb);
    free(buf);
    free(a);
    free(b);
}
END_TEST

/*
 * A reader's view of the index stays right while others write: handle c1 reads a segment
 * (the daemon keeps which blocks it holds), then blocks are added by another connection's
 * handle, by c1 itself, and by many AddData calls in flight at once (committed together);
 * every one of them is readable through c1 at once, with the right bytes.
 */
START_TEST(reads_see_blocks_added_meanwhile)
{
    enum { BLOCKS = 84 };
    const size_t len = BLOCKS * 64 * KiB;
    uint8_t *data = api_make_content(len, 4242);
    PEERDIST_INSTANCE_HANDLE h1 = api_startup(), h2 = api_startup();
    struct api_ci ci;
    publish_ci(h1, "reads-see-added", data, len, 1, &ci);
    PEERDIST_CONTENT_TAG t1 = api_make_tag(1), t2 = api_make_tag(2);
    PEERDIST_CONTENT_HANDLE c1 = api_open_with_ci(h1, &t1, &ci);
    PEERDIST_CONTENT_HANDLE c2 = api_open_with_ci(h2, &t2, &ci);
    uint8_t *buf = malloc(64 * KiB);
    DWORD got;
#define BLK(b) ((uint64_t)(b)*64 * KiB)
    ck_assert_uint_eq(api_add_data(h1, c1, 0, data, 10 * 64 * KiB, &got), ERROR_SUCCESS);
    api_read_back_block(h1, c1, data, 0, BLK(10));
    api_assert_missing(api_block_read(h1, c1, BLK(20), 64 * KiB, buf), BLK(20), BLK(BLOCKS - 20));
    /* Another connection's handle adds blocks 20-29. */
    ck_assert_uint_eq(api_add_data(h2, c2, BLK(20), data + BLK(20), 10 * 64 * KiB, &got),
        ERROR_SUCCESS);
    api_read_back_block(h1, c1, data, BLK(20), BLK(30));
    api_assert_missing(api_block_read(h1, c1, BLK(10), 64 * KiB, buf), BLK(10), BLK(10));
    /* c1 itself adds block 10, then c2 block 11. */
    ck_assert_uint_eq(api_add_data(h1, c1, BLK(10), data + BLK(10), 64 * KiB, &got), ERROR_SUCCESS);
    ck_assert_uint_eq(api_add_data(h2, c2, BLK(11), data + BLK(11), 64 * KiB, &got), ERROR_SUCCESS);
    api_read_back_block(h1, c1, data, BLK(10), BLK(12));
    /* Rounds of calls in flight at once, one block each, alternating between c1 and c2 (so
     * one commit may hold both handles' blocks); each round begins with c1 meeting one of its
     * blocks missing, so c1's view of the segment is fresh when they commit. Blocks 12-19,
     * then 30-83 in rounds of 9. */
    OVERLAPPED ov[BLOCKS];
    for (int first = 12; first < BLOCKS; first = first == 12 ? 30 : first + 9) {
        int last = first == 12 ? 19 : first + 8;
        api_assert_missing(api_block_read(h1, c1, BLK(first), 64 * KiB, buf), BLK(first),
            first == 12 ? BLK(8) : BLK(BLOCKS - first));
        for (int b = first; b <= last; b++) {
            memset(&ov[b], 0, sizeof(ov[b]));
            ov[b].Offset = (DWORD)BLK(b);
            ck_assert_uint_eq(PeerDistClientAddData(b % 2 ? h2 : h1, b % 2 ? c2 : c1, 64 * KiB,
                                  data + BLK(b), &ov[b]),
                ERROR_IO_PENDING);
        }
        for (int b = first; b <= last; b++) {
            ck_assert_uint_eq(api_wait(&ov[b], &got), ERROR_SUCCESS);
            ck_assert_uint_eq(got, 64 * KiB);
        }
        api_read_back_block(h1, c1, data, BLK(first), first == 12 ? BLK(30) : BLK(last + 1));
    }
    api_read_back_block(h1, c1, data, BLK(12), len);
    api_read_back_block(h2, c2, data, 0, len);
#undef BLK
    ck_assert_uint_eq(PeerDistClientCloseContent(h1, c1), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistClientCloseContent(h2, c2), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h1), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h2), ERROR_SUCCESS);
    api_ci_free(&ci);
    free(buf);
    free(data);
}
END_TEST

/* ---- across users, restarts and limits ---- */

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
    struct api_ci ci = {0};
    ci.bytes = child_take_ci_as_other_uid(rfd, &ci.len);
    PEERDIST_CONTENT_TAG tag = {{0x55}};
    PEERDIST_INSTANCE_HANDLE h2 = api_startup();
    PEERDIST_CONTENT_HANDLE c2 = api_open_with_ci(h2, &tag, &ci);
    uint8_t buf[64];
    /* Content information is the capability: the bytes root added are readable here. */
    struct api_read r = api_block_read(h2, c2, 100, sizeof(buf), buf);
    if (r.status != ERROR_SUCCESS || memcmp(buf, data + 100, r.bytes))
        _exit(11);
    if (api_flush(h2, &tag) != ERROR_SUCCESS) /* removes only uid 65534's labels: there are none */
        _exit(12);
    _exit(0);
}

/* Another user's flush of the same tag leaves our data; content is readable by both. */
START_TEST(two_uids)
{
    const size_t len = MiB + 7;
    uint8_t *data = api_make_content(len, 5);
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
    struct api_ci ci;
    publish_ci(h, "two-uids", data, len, 1, &ci);
    PEERDIST_CONTENT_TAG tag = {{0x55}};
    PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag, &ci);
    add_back_to_front(h, c, data, len);
    ck_assert_int_eq(write(pfd[1], &ci.len, sizeof(ci.len)), (ssize_t)sizeof(ci.len));
    ck_assert_int_eq(write(pfd[1], ci.bytes, ci.len), (ssize_t)ci.len);
    close(pfd[1]);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    api_read_back_stream(h, c, data, 0, len);
    PeerDistShutdown(h);
    api_ci_free(&ci);
    free(data);
}
END_TEST

/*
 * uid 65534 with the same ranged (partial) list: phase 1 must not read what root verified
 * against its partial list; phase 2, after a full list verified, may. (A full list would
 * itself verify against HoD and promote the blocks: any handle may supply it.)
 */
static void trust_child(int rfd, int wfd, const uint8_t *data)
{
    struct api_ci ci = {0};
    ci.bytes = child_take_ci_as_other_uid(rfd, &ci.len);
    PEERDIST_CONTENT_TAG tag = {{0x77}};
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag, &ci);
    uint8_t buf[64];
    char phase = 0;
    /* Phase 1: block 1 was verified only against root's ranged (partial) list. */
    if (api_block_read(h, c, 65536 + 200, sizeof(buf), buf).status != PEERDIST_ERROR_MISSING_DATA)
        _exit(12);
    if (write(wfd, "1", 1) != 1 || read(rfd, &phase, 1) != 1)
        _exit(13);
    /* Phase 2: a full list has verified against HoD since: the same bytes are shared now. */
    struct api_read r = api_block_read(h, c, 65536 + 200, sizeof(buf), buf);
    if (r.status != ERROR_SUCCESS || memcmp(buf, data + 65536 + 200, r.bytes) != 0)
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
    uint8_t *data = api_make_content(len, 11);
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
    struct api_ci full, part = {0};
    publish_ci(h, "trust", data, len, 1, &full);
    part.bytes = api_get_ci(h, "trust", 65536 + 100, 65536, NULL,
        &part.len); /* inside blocks 1-2 */
    PEERDIST_CONTENT_TAG tag = {{0x66}};
    PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag, &part);
    /* Blocks 1 and 2, whole. */
    ck_assert_uint_eq(api_add_data(h, c, 65536, data + 65536, 2 * 65536, NULL), ERROR_SUCCESS);
    uint8_t buf[64];
    struct api_read r = api_block_read(h, c, 65536 + 200, sizeof(buf), buf);
    ck_assert_uint_eq(r.status, ERROR_SUCCESS);
    ck_assert_int_eq(memcmp(buf, data + 65536 + 200, r.bytes), 0);
    /* Outside its range the ranged handle has nothing to say. */
    ck_assert_uint_eq(api_block_read(h, c, 10, sizeof(buf), buf).status, PEERDIST_ERROR_NO_MORE);
    PeerDistClientCloseContent(h, c);

    /* The other user, holding the same partial list, does not get root's bytes. */
    ck_assert_int_eq(write(to_child[1], &part.len, sizeof(part.len)), (ssize_t)sizeof(part.len));
    ck_assert_int_eq(write(to_child[1], part.bytes, part.len), (ssize_t)part.len);
    char ack;
    ck_assert_int_eq(read(from_child[0], &ack, 1), 1);

    /* Root completes the full list: it verifies against HoD and the blocks become shared. */
    c = api_open_with_ci(h, &tag, &full);
    ck_assert_uint_eq(api_block_read(h, c, 65536 + 200, sizeof(buf), buf).status, ERROR_SUCCESS);
    ck_assert_int_eq(write(to_child[1], "2", 1), 1);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    PeerDistShutdown(h);
    api_ci_free(&full);
    api_ci_free(&part);
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
    uint8_t *data = api_make_content(len, 21);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    struct api_ci ci;
    publish_ci(h, "survive", data, len, 1, &ci);
    PEERDIST_CONTENT_TAG tag = {{0x5a}};
    PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag, &ci);
    ck_assert_uint_eq(api_add_data(h, c, 0, data, 3 * MiB, NULL), ERROR_SUCCESS); /* acknowledged */
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
    c = api_open_with_ci(h, &tag, &ci);
    uint8_t *buf = malloc(MiB);
    size_t readable = 0;
    for (uint64_t off = 0; off < len;) {
        struct api_read r = api_block_read(h, c, off, MiB, buf);
        ck_assert_uint_gt(r.bytes, 0);
        ck_assert_uint_eq(r.offset, off);
        if (r.status == ERROR_SUCCESS) {
            ck_assert_int_eq(memcmp(buf, data + off, r.bytes), 0); /* never wrong bytes */
            readable += r.bytes;
        } else {
            ck_assert_uint_eq(r.status, PEERDIST_ERROR_MISSING_DATA);
            ck_assert(off >= 3 * MiB); /* acknowledged bytes are all there */
        }
        off += r.bytes;
    }
    ck_assert_uint_ge(readable, 3 * MiB);
    PeerDistShutdown(h);
    free(buf);
    api_ci_free(&ci);
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
    uint8_t *data = api_make_content(len, 31);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    struct api_ci ci;
    publish_ci(h, "held", data, len, 1, &ci);
    PEERDIST_CONTENT_TAG tag = {{0x4e}};
    DWORD refused = 0;
    int handle_refused = -1;
    for (int k = 0; k < 5 && !refused; k++) {
        PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag, &ci);
        for (uint32_t b = 0; b < blocks; b++) {
            /* All of each block but its last byte: nothing completes, everything is held. */
            DWORD rc = api_add_data(h, c, (uint64_t)b * 65536, data + (size_t)b * 65536, 65535,
                NULL);
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
    api_ci_free(&ci);
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
    tcase_add_test(tc, empty_content_v2);
    tcase_add_test(tc, one_byte_v1);
    tcase_add_test(tc, one_byte_v2);
    tcase_add_test(tc, odd_size_v1);
    tcase_add_test(tc, odd_size_v2);
    tcase_add_test(tc, exactly_32_mib_v1);
    tcase_add_test(tc, wal_starts_over_under_a_steady_stream_of_adds);
    tcase_add_test(tc, adddata_timing_counts_the_calls_that_stored_blocks);
    tcase_add_test(tc, spare_files_never_serve_their_old_bytes);
    tcase_add_test(tc, hundred_mib_v1);
    tcase_add_test(tc, reads_see_blocks_added_meanwhile);
    tcase_add_test(tc, two_uids);
    tcase_add_test(tc, ranged_blocks_are_shared_only_after_the_full_list);
    tcase_add_test(tc, acknowledged_data_survives_sigkill);
    tcase_add_test(tc, held_bytes_are_bounded_per_connection);
    suite_add_tcase(s, tc);
    return check_run(s);
}
