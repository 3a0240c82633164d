/* SPDX-License-Identifier: MIT */
/*
 * test_publish.c - PeerDistServer* end to end against the real peerdistd:
 * publish through streams, hand out content information in chunks and
 * ranges, versions, ownership by uid and instance, the server secret file.
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <peerdist.h>

#include "check_run.h"
#include "contentinfo.h"
#include "harness.h"
#include "api_util.h"

#define PASSPHRASE "test-passphrase"

static struct test_daemon td;
static char state_dir[192];

/* ---- fixtures ---- */

static void write_config(void)
{
    FILE *f = fopen(td.conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "[peerdistd]\nmode = local\nlog_level = debug\nstate_dir = %s\n", state_dir);
    fclose(f);
}

static void setup_with_passphrase(void)
{
    td_init(&td, "local");
    snprintf(state_dir, sizeof(state_dir), "%s/state", td.dir);
    ck_assert_int_eq(mkdir(state_dir, 0700), 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/secret", state_dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(PASSPHRASE, f); /* the 15 bytes of the synthetic vectors, no newline */
    fclose(f);
    chmod(path, 0600);
    write_config();
    td_start(&td);
}

static void setup_fresh_state(void)
{
    td_init(&td, "local");
    snprintf(state_dir, sizeof(state_dir), "%s/new/state", td.dir);
    write_config();
    td_start(&td);
}

static void teardown(void)
{
    td_stop(&td);
    /* In a sanitizer build the daemon reports into its log. */
    bool clean = !td_log_contains(&td, "Sanitizer") && !td_log_contains(&td, "runtime error");
    if (!clean)
        fprintf(stderr, "sanitizer report in %s (kept)\n", td.log);
    else
        td_cleanup(&td);
    ck_assert(clean);
}

/* ---- helpers ---- */

/* tests/vectors/README.md: byte[i] = (7*i + 13*(i >> 8)) mod 256. */
static uint8_t *synth(size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(7 * i + 13 * (i >> 8));
    return b;
}

static uint8_t *read_hex(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", PEERDIST_VECTORS_DIR, name);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t cap = 1 << 16, n = 0;
    uint8_t *out = malloc(cap);
    int hi = -1, ch;
    while ((ch = fgetc(f)) != EOF) {
        int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (v < 0)
            continue;
        if (hi < 0) {
            hi = v;
            continue;
        }
        if (n == cap)
            out = realloc(out, cap *= 2);
        out[n++] = (uint8_t)(hi << 4 | v);
        hi = -1;
    }
    fclose(f);
    *len = n;
    return out;
}

static DWORD add(PEERDIST_INSTANCE_HANDLE h, PEERDIST_STREAM_HANDLE s, const uint8_t *p, DWORD n,
    DWORD *accepted)
{
    OVERLAPPED ov = {0};
    DWORD rc = PeerDistServerPublishAddToStream(h, s, n, (PBYTE)p, &ov);
    if (rc != ERROR_IO_PENDING)
        return rc + 100000; /* distinguish synchronous failures */
    return api_wait(&ov, accepted);
}

static DWORD complete(PEERDIST_INSTANCE_HANDLE h, PEERDIST_STREAM_HANDLE s)
{
    OVERLAPPED ov = {0};
    DWORD rc = PeerDistServerPublishCompleteStream(h, s, &ov);
    if (rc != ERROR_IO_PENDING)
        return rc + 100000;
    return api_wait(&ov, NULL);
}

/* Expected content information computed locally from the passphrase. */
static uint8_t *expected_ci(const uint8_t *data, size_t n, enum ci_version v, size_t *len)
{
    struct ci_secret ks;
    ck_assert_int_eq(
        ci_secret_from_passphrase(v == CI_VERSION_1 ? CI_HASH_SHA256 : CI_HASH_SHA512_TRUNC,
            PASSPHRASE, strlen(PASSPHRASE), &ks),
        0);
    struct ci_gen *g = ci_gen_new(v, &ks);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(ci_gen_feed(g, data, n), 0);
    struct ci_info *ci;
    ck_assert_int_eq(ci_gen_finish(g, &ci), 0);
    ci_gen_free(g);
    uint8_t *out;
    ck_assert_int_eq(ci_serialize(ci, &out, len), 0);
    ci_info_free(ci);
    return out;
}

static void assert_bytes(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    ck_assert_uint_eq(an, bn);
    ck_assert_int_eq(memcmp(a, b, an), 0);
}

/* ---- tests ---- */

START_TEST(secret_file_created_0600_with_32_bytes)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/secret", state_dir);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
    ck_assert_int_eq(st.st_size, 32);
    ck_assert_int_eq(stat(state_dir, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0700);
    ck_assert(td_log_contains(&td, path));
    /* A restart reads the same secret: publications hash the same. */
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    uint8_t *data = synth(70000);
    api_publish(h, "x", data, 70000, 1, NULL, 0);
    size_t n1, n2;
    uint8_t *a = api_get_ci(h, "x", 0, 0, NULL, &n1);
    PeerDistShutdown(h);
    td_stop(&td);
    td_start(&td);
    h = api_startup();
    api_publish(h, "x", data, 70000, 1, NULL, 0);
    uint8_t *b = api_get_ci(h, "x", 0, 0, NULL, &n2);
    assert_bytes(a, n1, b, n2);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 32);
    PeerDistShutdown(h);
    free(a);
    free(b);
    free(data);
}
END_TEST

START_TEST(unreadable_secret_is_a_startup_error)
{
    td_stop(&td);
    char path[256];
    snprintf(path, sizeof(path), "%s/secret", state_dir);
    ck_assert_int_eq(truncate(path, 0), 0); /* empty: not a usable passphrase */
    pid_t pid = fork();
    if (pid == 0) {
        execl(PEERDISTD_PATH, "peerdistd", "--socket", td.sock, "--db", td.db, "--config", td.conf,
            (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 1);
    ck_assert_int_eq(unlink(path), 0); /* a missing file is generated again */
    td_start(&td);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 32);
}
END_TEST

START_TEST(v1_publication_matches_recorded_vector)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    uint8_t *data = synth(300000);
    const size_t pieces[] = {1, 4097, 65535, 100003, 7};
    api_publish(h, "synth300k", data, 300000, 0, pieces, 5);
    size_t vn, n;
    uint8_t *vec = read_hex("synth300k_v1_content_info.hex", &vn);
    uint8_t *got = api_get_ci(h, "synth300k", 0, 0, NULL, &n);
    assert_bytes(got, n, vec, vn);
    /* Through a completion port with a key, in 1000-byte chunks, Offset per chunk. */
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENTINFO_HANDLE ci;
    ck_assert_uint_eq(
        PeerDistServerOpenContentInformation(h, 9, (PBYTE) "synth300k", 0, 0, port, 77, &ci),
        ERROR_SUCCESS);
    uint8_t buf[1000];
    size_t total = 0;
    for (;;) {
        OVERLAPPED ov = {0};
        ck_assert_uint_eq(PeerDistServerRetrieveContentInformation(h, ci, sizeof(buf), buf, &ov),
            ERROR_IO_PENDING);
        DWORD bytes;
        ULONG_PTR key;
        LPOVERLAPPED pov;
        BOOL ok = GetQueuedCompletionStatus(port, &bytes, &key, &pov, 10000);
        ck_assert_ptr_eq(pov, &ov);
        ck_assert_uint_eq(key, 77);
        if (!ok) {
            ck_assert_uint_eq(GetLastError(), PEERDIST_ERROR_NO_MORE);
            break;
        }
        ck_assert_uint_eq(ov.Offset, total);
        ck_assert_int_eq(memcmp(buf, vec + total, bytes), 0);
        total += bytes;
    }
    ck_assert_uint_eq(total, vn);
    ck_assert_uint_eq(PeerDistServerCloseContentInformation(h, ci), ERROR_SUCCESS);
    CloseHandle(port);
    PeerDistShutdown(h);
    free(vec);
    free(got);
    free(data);
}
END_TEST

START_TEST(v1_two_segments_with_large_pieces_match_vector)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    const size_t n = 35664217;
    uint8_t *data = synth(n);
    const size_t pieces[] = {1, 1234567, (3u << 20) + 7, 5000001};
    api_publish(h, "synth35m", data, n, 1, pieces, 4);
    size_t vn, gn;
    uint8_t *vec = read_hex("synth35m_v1_content_info.hex", &vn);
    uint8_t *got = api_get_ci(h, "synth35m", 0, 0, NULL, &gn);
    assert_bytes(got, gn, vec, vn);
    PeerDistShutdown(h);
    free(vec);
    free(got);
    free(data);
}
END_TEST

START_TEST(v2_publication_has_v1_and_v2)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    uint8_t *data = synth(300000);
    const size_t pieces[] = {33333, 1, 70001};
    api_publish(h, "v2", data, 300000, 2, pieces, 3);
    size_t n, en, vn;
    uint8_t *v2 = api_get_ci(h, "v2", 0, 0, NULL,
        &n); /* plain Open: the publication's own version */
    uint8_t *exp2 = expected_ci(data, 300000, CI_VERSION_2, &en);
    assert_bytes(v2, n, exp2, en);
    ck_assert_uint_eq(v2[0], 0x00);
    ck_assert_uint_eq(v2[1], 0x02);
    PEERDIST_RETRIEVAL_OPTIONS ro11 = {sizeof(ro11), 1, 1, 0}, ro12 = {sizeof(ro12), 1, 2, 0};
    uint8_t *v1 = api_get_ci(h, "v2", 0, 0, &ro11, &n);
    uint8_t *vec = read_hex("synth300k_v1_content_info.hex", &vn);
    assert_bytes(v1, n, vec, vn); /* V1 from the same single pass */
    free(v1);
    v1 = api_get_ci(h, "v2", 0, 0, &ro12, &n);
    assert_bytes(v1, n, exp2, en); /* the highest within [1, 2] */
    PeerDistShutdown(h);
    free(v1);
    free(v2);
    free(exp2);
    free(vec);
    free(data);
}
END_TEST

/* Publishes data as version `version` in parts cycling through pieces, and checks each
 * content information the publication has (V1, and V2 for version 2) byte for byte against
 * one single-threaded generator fed the same bytes. */
static void publish_and_compare(PEERDIST_INSTANCE_HANDLE h, const char *id, const uint8_t *data,
    size_t len, DWORD version, const size_t *pieces, size_t n_pieces)
{
    PEERDIST_RETRIEVAL_OPTIONS ro11 = {sizeof(ro11), 1, 1, 0};
    api_publish(h, id, data, len, version, pieces, n_pieces);
    for (DWORD v = 1; v <= version; v++) {
        size_t n, en;
        uint8_t *got = api_get_ci(h, id, 0, 0, v == 1 ? &ro11 : NULL, &n);
        uint8_t *exp = expected_ci(data, len, v == 1 ? CI_VERSION_1 : CI_VERSION_2, &en);
        assert_bytes(got, n, exp, en);
        free(got);
        free(exp);
    }
}

/* A version-2 stream hashes on two lanes: they split the V2 segments (over the ends lane 0
 * finds first) and lane 1 hashes V1; a version-1 stream has one lane. The content
 * information is byte for byte what one thread makes, for sizes around segment limits (odd
 * and even counts of V1 blocks and V2 segments) and parts of many sizes, with runs of zeros
 * that force cuts. */
START_TEST(v2_lanes_match_one_thread)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    const size_t sizes[] = {CI_V2_SEGMENT_MAX * 3 + 1, 3u << 20, (5u << 20) + 7};
    const size_t pieces[] = {1u << 20, 65537, 300007, 16383}; /* 1 MiB: the largest part */
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = sizes[i];
        uint8_t *data = api_make_content(len, (unsigned)i + 1);
        char id[16];
        memset(data + len / 3, 0, len / 4);
        for (DWORD version = 1; version <= 2; version++) {
            snprintf(id, sizeof(id), "lanes%zu.%u", i, (unsigned)version);
            publish_and_compare(h, id, data, len, version, pieces + i % 2, 4 - i % 2);
        }
        free(data);
    }
    PeerDistShutdown(h);
}
END_TEST

/* The lanes over content of three V1 segments (the last partial) and about a thousand V2
 * segments, in parts of odd sizes that the library splits at 1 MiB: V1 and V2 of version 2,
 * and V1 of version 1, are byte for byte what one generator gives. */
START_TEST(lanes_over_several_v1_segments)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    const size_t len = 2 * (size_t)CI_V1_SEGMENT_SIZE + (3u << 20) + 12345;
    const size_t pieces[] = {3000017, 1, 65537, 999983, 1234567};
    uint8_t *data = api_make_content(len, 7);
    memset(data + CI_V1_SEGMENT_SIZE - 100000, 0, 300000); /* forced cuts across a V1 end */
    publish_and_compare(h, "several2", data, len, 2, pieces, 5);
    publish_and_compare(h, "several1", data, len - 65536, 1, pieces + 1, 4);
    PeerDistShutdown(h);
    free(data);
}
END_TEST

START_TEST(version_selection_and_option_checks)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    uint8_t *data = synth(1000);
    api_publish(h, "v1", data, 1000, 1, NULL, 0);
    PEERDIST_CONTENTINFO_HANDLE ci;
    PEERDIST_RETRIEVAL_OPTIONS ro22 = {sizeof(ro22), 2, 2, 0};
    ck_assert_uint_eq(api_open_ci(h, "v1", 0, 0, &ro22, &ci),
        PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED);
    PEERDIST_RETRIEVAL_OPTIONS bad[] = {{15, 1, 2, 0},
        {sizeof(PEERDIST_RETRIEVAL_OPTIONS), 1, 2, 1},
        {sizeof(PEERDIST_RETRIEVAL_OPTIONS), 2, 1, 0},
        {sizeof(PEERDIST_RETRIEVAL_OPTIONS), 0, 1, 0},
        {sizeof(PEERDIST_RETRIEVAL_OPTIONS), 1, 3, 0}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_uint_eq(api_open_ci(h, "v1", 0, 0, &bad[i], &ci), ERROR_INVALID_PARAMETER);
    size_t n, en;
    PEERDIST_RETRIEVAL_OPTIONS ro12 = {sizeof(ro12), 1, 2, 0};
    uint8_t *got = api_get_ci(h, "v1", 0, 0, &ro12, &n);
    uint8_t *exp = expected_ci(data, 1000, CI_VERSION_1, &en);
    assert_bytes(got, n, exp, en);
    /* Publication options. */
    PEERDIST_STREAM_HANDLE s;
    PEERDIST_PUBLICATION_OPTIONS po3 = {3, 0}, pof = {1, 1};
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 1, (PBYTE) "o", 0, &po3, NULL, 0, &s),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 1, (PBYTE) "o", 0, &pof, NULL, 0, &s),
        ERROR_INVALID_PARAMETER);
    PeerDistShutdown(h);
    free(got);
    free(exp);
    free(data);
}
END_TEST

START_TEST(ranges)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    uint8_t *data = synth(300000);
    api_publish(h, "r", data, 300000, 2, NULL, 0);
    size_t vn;
    uint8_t *vec = read_hex("synth300k_v1_content_info.hex", &vn);
    struct ci_info *full;
    struct ci_error err;
    ck_assert_uint_eq(ci_parse(vec, vn, &full, &err), ERROR_SUCCESS);
    PEERDIST_RETRIEVAL_OPTIONS ro11 = {sizeof(ro11), 1, 1, 0};
    const uint64_t r[][2] = {{70000, 100000}, {0, 1}, {299999, 1}, {65536, 65536}};
    for (size_t i = 0; i < 4; i++) {
        struct ci_info *want;
        ck_assert_int_eq(ci_range(full, r[i][0], r[i][1], &want), 0);
        uint8_t *wb;
        size_t wn, n;
        ck_assert_int_eq(ci_serialize(want, &wb, &wn), 0);
        uint8_t *got = api_get_ci(h, "r", r[i][0], r[i][1], &ro11, &n);
        assert_bytes(got, n, wb, wn);
        free(got);
        free(wb);
        ci_info_free(want);
    }
    /* V2 ranged content information parses and describes the range. */
    size_t n;
    uint8_t *v2 = api_get_ci(h, "r", 70000, 100000, NULL, &n);
    struct ci_info *pv2;
    ck_assert_uint_eq(ci_parse(v2, n, &pv2, &err), ERROR_SUCCESS);
    ck_assert_int_eq(pv2->version, CI_VERSION_2);
    ck_assert_uint_eq(pv2->v2_range_length, 100000);
    ci_info_free(pv2);
    free(v2);
    /* (0, whole length) is whole content. */
    uint8_t *whole = api_get_ci(h, "r", 0, 300000, &ro11, &n);
    assert_bytes(whole, n, vec, vn);
    free(whole);
    PEERDIST_CONTENTINFO_HANDLE ci;
    ck_assert_uint_eq(api_open_ci(h, "r", 299999, 2, NULL, &ci), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(api_open_ci(h, "r", 300000, 1, NULL, &ci), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(api_open_ci(h, "r", 5, 0, NULL, &ci), ERROR_INVALID_PARAMETER);
    ci_info_free(full);
    free(vec);
    free(data);
    PeerDistShutdown(h);
}
END_TEST

START_TEST(already_exists_and_unpublish)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    uint8_t *data = synth(5000);
    api_publish(h, "dup", data, 5000, 1, NULL, 0);
    PEERDIST_STREAM_HANDLE s;
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 3, (PBYTE) "dup", 0, NULL, NULL, 0, &s),
        PEERDIST_ERROR_ALREADY_EXISTS);
    /* In progress counts too. */
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 4, (PBYTE) "prog", 0, NULL, NULL, 0, &s),
        ERROR_SUCCESS);
    PEERDIST_STREAM_HANDLE s2;
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 4, (PBYTE) "prog", 0, NULL, NULL, 0, &s2),
        PEERDIST_ERROR_ALREADY_EXISTS);
    PEERDIST_CONTENTINFO_HANDLE ci;
    ck_assert_uint_eq(api_open_ci(h, "prog", 0, 0, NULL, &ci), ERROR_NOT_FOUND); /* not complete */
    ck_assert_uint_eq(PeerDistServerCloseStreamHandle(h, s), ERROR_SUCCESS);
    /* Closing a stream that never completed discards it: the id is free again. */
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 4, (PBYTE) "prog", 0, NULL, NULL, 0, &s),
        ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerCloseStreamHandle(h, s), ERROR_SUCCESS);
    /* A handle opened before Unpublish keeps working; later opens fail. */
    ck_assert_uint_eq(api_open_ci(h, "dup", 0, 0, NULL, &ci), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerUnpublish(h, 3, (PBYTE) "dup"), ERROR_SUCCESS);
    PEERDIST_CONTENTINFO_HANDLE ci2;
    ck_assert_uint_eq(api_open_ci(h, "dup", 0, 0, NULL, &ci2), ERROR_NOT_FOUND);
    ck_assert_uint_eq(PeerDistServerUnpublish(h, 3, (PBYTE) "dup"), ERROR_NOT_FOUND);
    size_t n, en;
    uint8_t *got = api_retrieve_ci(h, ci, 100, &n);
    uint8_t *exp = expected_ci(data, 5000, CI_VERSION_1, &en);
    assert_bytes(got, n, exp, en);
    ck_assert_uint_eq(PeerDistServerCloseContentInformation(h, ci), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerCloseContentInformation(h, ci), ERROR_INVALID_HANDLE);
    api_publish(h, "dup", data, 5000, 1, NULL, 0); /* publishable again */
    ck_assert(td_log_contains(&td, "refused"));
    PeerDistShutdown(h);
    free(got);
    free(exp);
    free(data);
}
END_TEST

/* The end of the daemon's log line for each connection it closes. */
#define CLOSED_LINE ") closed"

struct closes {
    int before;
};

static bool one_more_close(void *arg)
{
    return td_log_count(&td, CLOSED_LINE) > ((struct closes *)arg)->before;
}

START_TEST(publications_go_with_their_instance)
{
    PEERDIST_INSTANCE_HANDLE a = api_startup(), b = api_startup();
    uint8_t *data = synth(1000);
    api_publish(a, "mine", data, 1000, 1, NULL, 0);
    PEERDIST_CONTENTINFO_HANDLE ci;
    ck_assert_uint_eq(api_open_ci(b, "mine", 0, 0, NULL, &ci), ERROR_SUCCESS); /* same uid */
    ck_assert_uint_eq(PeerDistServerCloseContentInformation(b, ci), ERROR_SUCCESS);
    /* A handle of instance a is not valid with instance b. */
    ck_assert_uint_eq(api_open_ci(a, "mine", 0, 0, NULL, &ci), ERROR_SUCCESS);
    uint8_t buf[16];
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(PeerDistServerRetrieveContentInformation(b, ci, 16, buf, &ov),
        ERROR_INVALID_HANDLE);
    /* The daemon drops a's publications when it sees a's connection close, which Shutdown
     * does not wait for: wait for the daemon's line saying so, then b must not find them. */
    struct closes seen = {td_log_count(&td, CLOSED_LINE)};
    ck_assert_uint_eq(PeerDistShutdown(a), ERROR_SUCCESS);
    ck_assert_msg(td_wait_until(one_more_close, &seen),
        "the daemon never saw a's connection close");
    ck_assert_uint_eq(api_open_ci(b, "mine", 0, 0, NULL, &ci), ERROR_NOT_FOUND);
    PeerDistShutdown(b);
    free(data);
}
END_TEST

START_TEST(another_uid_has_its_own_publications)
{
    /*
     * The child is forked before this process starts the library's thread: it allocates (it
     * calls the library), and a fork while that thread was inside malloc or free left the
     * child one of ASan's allocator locks held by no one (GCC 12's libasan takes none around
     * fork(); glibc's malloc does). It waits for the publication on a pipe.
     */
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(go[1]);
        char published;
        if (read(go[0], &published, 1) != 1)
            _exit(9); /* the parent failed before publishing */
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(10);
        PEERDIST_INSTANCE_HANDLE o;
        if (PeerDistStartup(PEERDIST_VERSION, &o, NULL) != ERROR_SUCCESS)
            _exit(11);
        PEERDIST_CONTENTINFO_HANDLE ci;
        if (PeerDistServerOpenContentInformation(o, 11, (PBYTE) "shared-name", 0, 0, NULL, 0,
                &ci) != ERROR_NOT_FOUND)
            _exit(12);
        if (PeerDistServerUnpublish(o, 11, (PBYTE) "shared-name") != ERROR_NOT_FOUND)
            _exit(13);
        PEERDIST_STREAM_HANDLE s;
        if (PeerDistServerPublishStream(o, 11, (PBYTE) "shared-name", 0, NULL, NULL, 0, &s) !=
            ERROR_SUCCESS)
            _exit(14);
        _exit(0);
    }
    close(go[0]);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    uint8_t *data = synth(1000);
    api_publish(h, "shared-name", data, 1000, 1, NULL, 0);
    ck_assert_int_eq(write(go[1], "p", 1), 1);
    close(go[1]);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    PEERDIST_CONTENTINFO_HANDLE ci;
    ck_assert_uint_eq(api_open_ci(h, "shared-name", 0, 0, NULL, &ci), ERROR_SUCCESS);
    PeerDistShutdown(h);
    free(data);
}
END_TEST

START_TEST(empty_and_one_byte_content)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    uint8_t one = 0x5a;
    for (DWORD v = 1; v <= 2; v++) {
        char id0[8], id1[8];
        snprintf(id0, sizeof(id0), "e%u", v);
        snprintf(id1, sizeof(id1), "o%u", v);
        api_publish(h, id0, NULL, 0, v, NULL, 0);
        api_publish(h, id1, &one, 1, v, NULL, 0);
        size_t n, en;
        enum ci_version cv = v == 1 ? CI_VERSION_1 : CI_VERSION_2;
        uint8_t *got = api_get_ci(h, id0, 0, 0, NULL, &n);
        uint8_t *exp = expected_ci(NULL, 0, cv, &en);
        assert_bytes(got, n, exp, en);
        free(got);
        free(exp);
        got = api_get_ci(h, id1, 0, 0, NULL, &n);
        exp = expected_ci(&one, 1, cv, &en);
        assert_bytes(got, n, exp, en);
        free(got);
        free(exp);
        PEERDIST_CONTENTINFO_HANDLE ci;
        ck_assert_uint_eq(api_open_ci(h, id0, 0, 1, NULL, &ci), ERROR_INVALID_PARAMETER);
    }
    PeerDistShutdown(h);
}
END_TEST

START_TEST(declared_length_rules)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    uint8_t *data = synth(20);
    PEERDIST_STREAM_HANDLE s;
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 1, (PBYTE) "L", 10, NULL, NULL, 0, &s),
        ERROR_SUCCESS);
    DWORD got;
    ck_assert_uint_eq(add(h, s, data, 11, &got), PEERDIST_ERROR_OUT_OF_BOUNDS);
    ck_assert_uint_eq(add(h, s, data, 5, &got), ERROR_SUCCESS);
    ck_assert_uint_eq(got, 5);
    ck_assert_uint_eq(complete(h, s), ERROR_INVALID_PARAMETER); /* 5 of 10 */
    ck_assert_uint_eq(add(h, s, data + 5, 6, &got), PEERDIST_ERROR_OUT_OF_BOUNDS);
    ck_assert_uint_eq(add(h, s, data + 5, 5, &got), ERROR_SUCCESS);
    ck_assert_uint_eq(complete(h, s), ERROR_SUCCESS);
    ck_assert_uint_eq(complete(h, s), PEERDIST_ERROR_ALREADY_COMPLETED);
    ck_assert_uint_eq(add(h, s, data, 1, &got), PEERDIST_ERROR_ALREADY_COMPLETED);
    ck_assert_uint_eq(PeerDistServerCloseStreamHandle(h, s), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerCloseStreamHandle(h, s), ERROR_INVALID_HANDLE);
    size_t n, en;
    uint8_t *ci = api_get_ci(h, "L", 0, 0, NULL, &n);
    uint8_t *exp = expected_ci(data, 10, CI_VERSION_1, &en);
    assert_bytes(ci, n, exp, en); /* closing after completion keeps the publication */
    PeerDistShutdown(h);
    free(ci);
    free(exp);
    free(data);
}
END_TEST

START_TEST(synchronous_errors)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_STREAM_HANDLE s;
    PEERDIST_CONTENTINFO_HANDLE ci;
    OVERLAPPED ov = {0};
    BYTE buf[16] = {0};
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 0, (PBYTE) "x", 0, NULL, NULL, 0, &s),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 1, NULL, 0, NULL, NULL, 0, &s),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 1, (PBYTE) "x", 0, NULL, NULL, 0, NULL),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 1, (PBYTE) "x", 0, NULL, (HANDLE)12345, 0, &s),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(
        PeerDistServerPublishStream((HANDLE)12345, 1, (PBYTE) "x", 0, NULL, NULL, 0, &s),
        ERROR_INVALID_HANDLE);
    ck_assert_uint_eq(PeerDistServerUnpublish(h, 0, (PBYTE) "x"), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistServerUnpublish(h, 7, (PBYTE) "unknown"), ERROR_NOT_FOUND);
    ck_assert_uint_eq(api_open_ci(h, "unknown", 0, 0, NULL, &ci), ERROR_NOT_FOUND);
    ck_assert_uint_eq(PeerDistServerCancelAsyncOperation(h, 1, (PBYTE) "x", &ov),
        PEERDIST_ERROR_OPERATION_NOTFOUND);
    ck_assert_uint_eq(PeerDistServerCancelAsyncOperation(h, 1, (PBYTE) "x", NULL),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistServerPublishAddToStream(h, (HANDLE)12345, 1, buf, &ov),
        ERROR_INVALID_HANDLE);
    ck_assert_uint_eq(PeerDistServerCloseStreamHandle(h, (HANDLE)12345), ERROR_INVALID_HANDLE);
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 1, (PBYTE) "x", 0, NULL, NULL, 0, &s),
        ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerPublishAddToStream(h, s, 0, buf, &ov), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistServerPublishAddToStream(h, s, 1, NULL, &ov),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistServerPublishAddToStream(h, s, 1, buf, NULL),
        ERROR_INVALID_PARAMETER);
    ov.Offset = 1;
    ck_assert_uint_eq(PeerDistServerPublishAddToStream(h, s, 1, buf, &ov), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistServerPublishCompleteStream(h, s, &ov), ERROR_INVALID_PARAMETER);
    ov.Offset = 0;
    /* A stream handle is not a content-information handle. */
    ck_assert_uint_eq(PeerDistServerRetrieveContentInformation(h, s, 16, buf, &ov),
        ERROR_INVALID_HANDLE);
    ck_assert_uint_eq(PeerDistServerCloseContentInformation(h, s), ERROR_INVALID_HANDLE);
    /* One AddToStream at a time (the daemon paused, so the first one stays pending). */
    size_t first = 1000;
    uint8_t *data = synth(first);
    OVERLAPPED ov1 = {0}, ov2 = {0};
    td_pause(&td);
    ck_assert_uint_eq(PeerDistServerPublishAddToStream(h, s, (DWORD)first, data, &ov1),
        ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistServerPublishAddToStream(h, s, 1, buf, &ov2),
        ERROR_INVALID_PARAMETER);
    ck_assert(!HasOverlappedIoCompleted(&ov1));
    td_resume(&td);
    DWORD got;
    ck_assert_uint_eq(api_wait(&ov1, &got), ERROR_SUCCESS);
    ck_assert_uint_eq(got, first);
    ck_assert_uint_eq(PeerDistServerPublishAddToStream(h, s, 1, buf, &ov2), ERROR_IO_PENDING);
    ck_assert_uint_eq(api_wait(&ov2, &got), ERROR_SUCCESS);
    ck_assert_uint_eq(complete(h, s), ERROR_SUCCESS);
    ck_assert_uint_eq(api_open_ci(h, "x", 0, 0, NULL, &ci), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerRetrieveContentInformation(h, ci, 0, buf, &ov),
        ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(PeerDistServerRetrieveContentInformation(h, ci, 16, NULL, &ov),
        ERROR_INVALID_PARAMETER);
    ov.OffsetHigh = 1;
    ck_assert_uint_eq(PeerDistServerRetrieveContentInformation(h, ci, 16, buf, &ov),
        ERROR_INVALID_PARAMETER);
    PeerDistShutdown(h);
    free(data);
}
END_TEST

/* A cancel either aborts (completion delivered before it returns) or finds nothing. */
START_TEST(cancel_and_close_with_work_pending)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    size_t big = 48u << 20;
    uint8_t *data = synth(big);
    PEERDIST_STREAM_HANDLE s;
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 1, (PBYTE) "c", 0, NULL, NULL, 0, &s),
        ERROR_SUCCESS);
    OVERLAPPED ov = {0};
    ck_assert_uint_eq(PeerDistServerPublishAddToStream(h, s, (DWORD)big, data, &ov),
        ERROR_IO_PENDING);
    DWORD rc = PeerDistServerCancelAsyncOperation(h, 1, (PBYTE) "c", &ov);
    DWORD got;
    if (rc == ERROR_SUCCESS) {
        ck_assert(HasOverlappedIoCompleted(&ov));
        ck_assert_uint_eq(api_wait(&ov, &got), ERROR_OPERATION_ABORTED);
    } else {
        ck_assert_uint_eq(rc, PEERDIST_ERROR_OPERATION_NOTFOUND);
        ck_assert_uint_eq(api_wait(&ov, &got), ERROR_SUCCESS);
    }
    ck_assert_uint_eq(PeerDistServerCancelAsyncOperation(h, 1, (PBYTE) "c", &ov),
        PEERDIST_ERROR_OPERATION_NOTFOUND);
    /* Close with an add pending: it completes exactly once, through the port. */
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_STREAM_HANDLE s2;
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 2, (PBYTE) "c2", 0, NULL, port, 5, &s2),
        ERROR_SUCCESS);
    OVERLAPPED ov2 = {0};
    ck_assert_uint_eq(PeerDistServerPublishAddToStream(h, s2, (DWORD)big, data, &ov2),
        ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistServerCloseStreamHandle(h, s2), ERROR_SUCCESS);
    ULONG_PTR key;
    LPOVERLAPPED pov;
    BOOL ok = GetQueuedCompletionStatus(port, &got, &key, &pov, 10000);
    ck_assert_ptr_eq(pov, &ov2);
    ck_assert_uint_eq(key, 5);
    ck_assert(ok || GetLastError() == ERROR_OPERATION_ABORTED);
    ck_assert(!GetQueuedCompletionStatus(port, &got, &key, &pov, 200));
    ck_assert_ptr_null(pov);
    PEERDIST_CONTENTINFO_HANDLE ci;
    ck_assert_uint_eq(api_open_ci(h, "c2", 0, 0, NULL, &ci), ERROR_NOT_FOUND); /* discarded */
    ck_assert_uint_eq(PeerDistServerCloseStreamHandle(h, s), ERROR_SUCCESS);
    CloseHandle(port);
    PeerDistShutdown(h);
    free(data);
}
END_TEST

START_TEST(handles_from_before_a_restart_are_invalidated)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    uint8_t *data = synth(1000);
    api_publish(h, "keep", data, 1000, 1, NULL, 0);
    PEERDIST_STREAM_HANDLE s;
    PEERDIST_CONTENTINFO_HANDLE ci;
    ck_assert_uint_eq(PeerDistServerPublishStream(h, 1, (PBYTE) "s", 0, NULL, NULL, 0, &s),
        ERROR_SUCCESS);
    ck_assert_uint_eq(api_open_ci(h, "keep", 0, 0, NULL, &ci), ERROR_SUCCESS);
    td_stop(&td);
    OVERLAPPED ov = {0};
    BYTE buf[16] = {0};
    /* Unavailable: synchronously, or as the completion if the loss was not seen yet. */
    DWORD rc = PeerDistServerPublishAddToStream(h, s, 1, buf, &ov);
    if (rc == ERROR_IO_PENDING)
        rc = api_wait(&ov, NULL);
    ck_assert_uint_eq(rc, PEERDIST_ERROR_SERVICE_UNAVAILABLE);
    memset(&ov, 0, sizeof(ov));
    td_start(&td);
    ck_assert_uint_eq(PeerDistServerPublishAddToStream(h, s, 1, buf, &ov),
        PEERDIST_ERROR_INVALIDATED);
    ck_assert_uint_eq(PeerDistServerRetrieveContentInformation(h, ci, 16, buf, &ov),
        PEERDIST_ERROR_INVALIDATED);
    ck_assert_uint_eq(PeerDistServerCloseStreamHandle(h, s), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistServerCloseContentInformation(h, ci), ERROR_SUCCESS);
    /* The publication went with the old connection. */
    ck_assert_uint_eq(api_open_ci(h, "keep", 0, 0, NULL, &ci), ERROR_NOT_FOUND);
    PeerDistShutdown(h);
    free(data);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("publish");
    TCase *tc = tcase_create("publish");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup_with_passphrase, teardown);
    tcase_add_test(tc, v1_publication_matches_recorded_vector);
    tcase_add_test(tc, v1_two_segments_with_large_pieces_match_vector);
    tcase_add_test(tc, v2_publication_has_v1_and_v2);
    tcase_add_test(tc, v2_lanes_match_one_thread);
    tcase_add_test(tc, lanes_over_several_v1_segments);
    tcase_add_test(tc, version_selection_and_option_checks);
    tcase_add_test(tc, ranges);
    tcase_add_test(tc, already_exists_and_unpublish);
    tcase_add_test(tc, publications_go_with_their_instance);
    tcase_add_test(tc, another_uid_has_its_own_publications);
    tcase_add_test(tc, empty_and_one_byte_content);
    tcase_add_test(tc, declared_length_rules);
    tcase_add_test(tc, synchronous_errors);
    tcase_add_test(tc, cancel_and_close_with_work_pending);
    tcase_add_test(tc, handles_from_before_a_restart_are_invalidated);
    tcase_add_test(tc, unreadable_secret_is_a_startup_error);
    suite_add_tcase(s, tc);
    TCase *fresh = tcase_create("secret");
    tcase_set_timeout(fresh, 60);
    tcase_add_checked_fixture(fresh, setup_fresh_state, teardown);
    tcase_add_test(fresh, secret_file_created_0600_with_32_bytes);
    suite_add_tcase(s, fresh);
    return check_run(s);
}
