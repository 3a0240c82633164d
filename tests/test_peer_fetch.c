/* SPDX-License-Identifier: MIT */
/*
 * test_peer_fetch.c - reads in distributed mode against real daemons, through <peerdist.h>:
 * a read of bytes no peer holds ends PEERDIST_ERROR_MISSING_DATA with the missing range once
 * the discovery window closes (DEFAULT, INFINITE, a short timeout, LOCAL_CACHE_ONLY at once);
 * and two daemons on this host (each on its own peer_port, discovery on this host's
 * multicast-capable interfaces): the bytes published and added on A are read on B, fetched
 * from A, verified, stored on B under the reader's tag (B then reads them from its own cache).
 * The fetch from a peer is skipped with a message when this host has no interface discovery
 * can use (no multicast-capable, non-loopback interface).
 * Then, without multicast, through the daemon's test hook PEERDIST_TEST_PEERS (peers taken as
 * if they had answered the Probes): B fetches from A's real MS-PCCRR server on loopback; a
 * lying peer (a tiny HTTP server in this test answering GETBLKS with a MSG_BLK built by the
 * codec, well encrypted, of the wrong bytes) is distrusted and its block never stored or
 * returned: alone, the read ends MISSING_DATA; next to an honest peer, it completes from that
 * one; a silent peer makes a read with a short timeout end ERROR_TIMEOUT with the range; a
 * peer whose first answer comes after the 2 s request timer is asked again, not distrusted,
 * and an INFINITE read from it alone completes; a read in the first of two segments fetches
 * the second too (read-ahead one segment past the reader's).
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <peerdist.h>

#include "api_util.h"
#include "check_run.h"
#include "contentinfo.h"
#include "harness.h"
#include "pccrr.h"

#define LEN (3 * 65536 + 1000)

static void distributed(struct test_daemon *td, unsigned port)
{
    td_init(td, "distributed");
    FILE *f = fopen(td->conf, "a");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "peer_port = %u\n", port);
    fclose(f);
    td_start(td);
}

static struct api_read block_read(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c,
    uint64_t off, DWORD cap, void *buf, DWORD timeout)
{
    OVERLAPPED ov = {.Offset = (DWORD)off, .OffsetHigh = (DWORD)(off >> 32)};
    struct api_read r;
    r.status = api_wait_pending(PeerDistClientBlockRead(h, c, cap, buf, timeout, &ov), &ov,
        &r.bytes);
    r.offset = (uint64_t)ov.OffsetHigh << 32 | ov.Offset;
    return r;
}

/* Publishes data on the instance's daemon: its content information. */
static uint8_t *publish(PEERDIST_INSTANCE_HANDLE h, const char *id, const uint8_t *data,
    size_t *cilen)
{
    api_publish(h, id, data, LEN, PEERDIST_PUBLICATION_OPTIONS_VERSION_1, NULL, 0);
    return api_get_ci(h, id, 0, 0, NULL, cilen);
}

START_TEST(no_peer_missing)
{
    struct test_daemon td;
    distributed(&td, 47000 + (unsigned)(getpid() % 1000));
    PEERDIST_INSTANCE_HANDLE h;
    DWORD ver;
    ck_assert_uint_eq(PeerDistStartup(1, &h, &ver), ERROR_SUCCESS);
    uint8_t *data = api_make_content(LEN, 7);
    struct api_ci ci = {0};
    ci.bytes = publish(h, "nopeer", data, &ci.len);
    PEERDIST_CONTENT_TAG tag = api_make_tag(1);
    PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag, &ci);
    static uint8_t buf[65536];
    /* Nothing local, no peer: every timeout but LOCAL_CACHE_ONLY asks the LAN first. */
    DWORD timeouts[] = {PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, PEERDIST_READ_TIMEOUT_DEFAULT,
        INFINITE, 3000};
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
        struct api_read r = block_read(h, c, 65536, sizeof(buf), buf, timeouts[i]);
        ck_assert_msg(r.status == PEERDIST_ERROR_MISSING_DATA, "timeout %u: status %u",
            (unsigned)timeouts[i], (unsigned)r.status);
        api_assert_missing(r, 65536, LEN - 65536);
    }
    /* A stream read likewise (DEFAULT), and the cursor moves past the missing range. */
    struct api_read r = api_stream_read(h, c, sizeof(buf), buf);
    ck_assert_uint_eq(r.status, PEERDIST_ERROR_MISSING_DATA);
    /* Bytes added locally are read without asking anyone. */
    DWORD acc;
    ck_assert_uint_eq(api_add_data(h, c, 0, data, 65536, &acc), ERROR_SUCCESS);
    r = block_read(h, c, 0, sizeof(buf), buf, PEERDIST_READ_TIMEOUT_DEFAULT);
    ck_assert_uint_eq(r.status, ERROR_SUCCESS);
    ck_assert_uint_eq(r.bytes, 65536);
    ck_assert_mem_eq(buf, data, 65536);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    api_ci_free(&ci);
    free(data);
    ck_assert_int_eq(td_stop(&td), 0);
    td_cleanup(&td);
}
END_TEST

START_TEST(fetch_from_peer)
{
    struct test_daemon a, b;
    unsigned base = 26000 + (unsigned)(getpid() % 1000) * 2; /* below the ephemeral ports */
    distributed(&a, base);
    if (td_log_contains(&a, "no interface") || td_log_contains(&a, "no usable interface")) {
        printf("SKIP fetch_from_peer: no multicast-capable interface for discovery here\n");
        td_cleanup(&a);
        return;
    }
    uint8_t *data = api_make_content(LEN, 9);
    PEERDIST_INSTANCE_HANDLE ha, hb;
    DWORD ver;
    ck_assert_uint_eq(PeerDistStartup(1, &ha, &ver), ERROR_SUCCESS);
    struct api_ci ci = {0};
    ci.bytes = publish(ha, "fetched", data, &ci.len);
    /* A holds the blocks bound to their segment: it serves them. */
    PEERDIST_CONTENT_TAG tag = api_make_tag(2);
    PEERDIST_CONTENT_HANDLE ca = api_open_with_ci(ha, &tag, &ci);
    DWORD acc;
    ck_assert_uint_eq(api_add_data(ha, ca, 0, data, LEN, &acc), ERROR_SUCCESS);
    distributed(&b, base + 1);
    ck_assert_uint_eq(PeerDistStartup(1, &hb, &ver), ERROR_SUCCESS);
    PEERDIST_CONTENT_HANDLE cb = api_open_with_ci(hb, &tag, &ci);
    static uint8_t buf[LEN];
    struct api_read r = block_read(hb, cb, 0, sizeof(buf), buf, 10000);
    if (r.status == PEERDIST_ERROR_MISSING_DATA && td_log_contains(&b, "cannot build a Probe")) {
        printf("SKIP fetch_from_peer: this build's discovery cannot build Probes yet\n");
    } else if (r.status == PEERDIST_ERROR_MISSING_DATA && td_log_contains(&b, "no peer answered")) {
        printf("SKIP fetch_from_peer: the Probes of B got no ProbeMatch from A on this host "
               "(multicast between two daemons of one host not delivered)\n");
    } else {
        if (r.status != ERROR_SUCCESS) { /* what each daemon said, for the failure */
            char cmd[512];
            snprintf(cmd, sizeof(cmd), "tail -n 30 %s %s", a.log, b.log);
            if (system(cmd) < 0)
                perror("system");
        }
        ck_assert_msg(r.status == ERROR_SUCCESS, "read from a peer: %u", (unsigned)r.status);
        ck_assert_uint_gt(r.bytes, 0);
        ck_assert_mem_eq(buf, data, r.bytes);
        /* Read-ahead to the segment's end, then stored on B as the reader's AddData would:
         * the whole content reads back from B's cache alone. */
        ck_assert_uint_eq(PeerDistClientCloseContent(hb, cb), ERROR_SUCCESS);
        td_stop(&a);
        cb = api_open_with_ci(hb, &tag, &ci);
        for (uint64_t off = 0; off < LEN;) {
            r = block_read(hb, cb, off, sizeof(buf), buf, PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY);
            ck_assert_msg(r.status == ERROR_SUCCESS, "local read at %llu: %u",
                (unsigned long long)off, (unsigned)r.status);
            ck_assert_mem_eq(buf, data + off, r.bytes);
            off += r.bytes;
        }
    }
    PeerDistClientCloseContent(hb, cb);
    PeerDistShutdown(hb);
    api_ci_free(&ci);
    free(data);
    td_cleanup(&a);
    td_cleanup(&b);
}
END_TEST

/* ---- a fake peer: an HTTP/1.1 server on loopback answering GETBLKS ---- */

/* FAKE_LIAR: wrong bytes, well encrypted; FAKE_SILENT: never answers; FAKE_SLOW_ONCE: the
 * right bytes, but its first answer comes after SLOW_ONCE_MS (over the 2 s request timer). */
enum fake_mode { FAKE_LIAR, FAKE_SILENT, FAKE_SLOW_ONCE };
#define SLOW_ONCE_MS 3000
#define FAKE_CONNS_MAX 32
struct fake_peer {
    int lfd;
    unsigned port;
    enum fake_mode mode;
    const struct ci_info *ci;
    const uint8_t *data; /* the content (FAKE_SLOW_ONCE) */
    pthread_t th;
    int requests;
    /* One thread per connection (the daemon opens several at once); each fd is shut down
     * to stop its thread, then joined. */
    pthread_mutex_t mu;
    pthread_t conn_th[FAKE_CONNS_MAX];
    int conn_fd[FAKE_CONNS_MAX];
    int nconns;
    int done; /* the accepting thread returned */
};

struct fake_conn {
    struct fake_peer *fp;
    int fd;
};

static bool read_request(int fd, uint8_t *body, size_t cap, size_t *len)
{
    char head[4096];
    size_t n = 0;
    while (n < sizeof(head) - 1) {
        ssize_t r = read(fd, head + n, 1);
        if (r <= 0)
            return false;
        n++;
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[n] = '\0';
    const char *cl = strcasestr(head, "Content-Length:");
    size_t want = cl ? (size_t)strtoul(cl + 15, NULL, 10) : 0;
    if (want > cap)
        return false;
    for (size_t got = 0; got < want;) {
        ssize_t r = read(fd, body + got, want - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    *len = want;
    return true;
}

static void *fake_conn_run(void *arg)
{
    struct fake_conn *fc = arg;
    struct fake_peer *fp = fc->fp;
    int fd = fc->fd;
    free(fc);
    uint8_t req[1024];
    size_t len;
    uint8_t *out = malloc(PCCRR_RESPONSE_MAX + 4);
    while (out && read_request(fd, req, sizeof(req), &len)) {
        int nth = __atomic_add_fetch(&fp->requests, 1, __ATOMIC_SEQ_CST);
        if (fp->mode == FAKE_SILENT)
            continue; /* never answers */
        struct pccrr_request rq;
        uint32_t block;
        if (pccrr_request_decode(req, len, &rq) != 0 || !pccrr_request_first_block(&rq, &block))
            break;
        const struct ci_segment *seg = &fp->ci->segments[0];
        uint32_t blen = ci_block_length(seg, block);
        uint8_t *bytes = malloc(blen);
        if (fp->mode == FAKE_SLOW_ONCE) {
            memcpy(bytes, fp->data + (size_t)block * seg->block_size, blen);
            if (nth == 1)
                usleep(SLOW_ONCE_MS * 1000);
        } else {
            /* The right segment and index, well encrypted with the segment key: wrong bytes. */
            memset(bytes, 0xA5, blen);
        }
        long n = pccrr_encode_blk(out, PCCRR_RESPONSE_MAX + 4, PCCRR_CRYPTO_AES_128, rq.segment_id,
            rq.segment_id_len, block, 0, seg->secret, fp->ci->digest_len, bytes, blen);
        free(bytes);
        if (n <= 0)
            break;
        char hdr[128];
        int hl = snprintf(hdr, sizeof(hdr),
            "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\nContent-Type: application/octet-stream"
            "\r\n\r\n",
            n);
        if (send(fd, hdr, (size_t)hl, MSG_NOSIGNAL) != hl ||
            send(fd, out, (size_t)n, MSG_NOSIGNAL) != n)
            break;
    }
    free(out);
    shutdown(fd, SHUT_RDWR); /* closed by fake_stop, after the join */
    return NULL;
}

static void *fake_run(void *arg)
{
    struct fake_peer *fp = arg;
    for (;;) {
        int fd = accept(fp->lfd, NULL, NULL);
        if (fd < 0)
            break;
        struct fake_conn *fc = malloc(sizeof(*fc));
        pthread_mutex_lock(&fp->mu);
        bool ok = fc && fp->nconns < FAKE_CONNS_MAX;
        if (ok) {
            fc->fp = fp;
            fc->fd = fd;
            ok = pthread_create(&fp->conn_th[fp->nconns], NULL, fake_conn_run, fc) == 0;
        }
        if (ok)
            fp->conn_fd[fp->nconns++] = fd;
        pthread_mutex_unlock(&fp->mu);
        if (!ok) {
            free(fc);
            close(fd);
        }
    }
    __atomic_store_n(&fp->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void fake_start(struct fake_peer *fp, enum fake_mode mode, const struct ci_info *ci,
    const uint8_t *data)
{
    memset(fp, 0, sizeof(*fp));
    fp->mode = mode;
    fp->ci = ci;
    fp->data = data;
    pthread_mutex_init(&fp->mu, NULL);
    fp->lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fp->lfd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fp->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    ck_assert_int_eq(getsockname(fp->lfd, (struct sockaddr *)&sa, &sl), 0);
    fp->port = ntohs(sa.sin_port);
    ck_assert_int_eq(listen(fp->lfd, 16), 0);
    ck_assert_int_eq(pthread_create(&fp->th, NULL, fake_run, fp), 0);
}

static void fake_stop(struct fake_peer *fp)
{
    /* accept() and read() return: the threads end (no pthread_cancel). */
    shutdown(fp->lfd, SHUT_RDWR);
    while (!__atomic_load_n(&fp->done, __ATOMIC_SEQ_CST))
        usleep(10 * 1000);
    pthread_join(fp->th, NULL);
    for (int i = 0; i < fp->nconns; i++) {
        shutdown(fp->conn_fd[i], SHUT_RDWR);
        pthread_join(fp->conn_th[i], NULL);
        close(fp->conn_fd[i]);
    }
    pthread_mutex_destroy(&fp->mu);
    close(fp->lfd);
}

/* Starts a distributed daemon whose fetches take `peers` as the peers that answered. */
static void distributed_with_peers(struct test_daemon *td, unsigned port, const char *peers)
{
    setenv("PEERDIST_TEST_PEERS", peers, 1);
    distributed(td, port);
    unsetenv("PEERDIST_TEST_PEERS");
}

/* Publishes and adds data on A (which then serves it): the content information, parsed. */
static struct api_ci seeded_peer(struct test_daemon *a, unsigned port, const uint8_t *data,
    PEERDIST_INSTANCE_HANDLE *ha, PEERDIST_CONTENT_HANDLE *ca, const PEERDIST_CONTENT_TAG *tag)
{
    distributed(a, port);
    DWORD ver;
    ck_assert_uint_eq(PeerDistStartup(1, ha, &ver), ERROR_SUCCESS);
    struct api_ci ci = {0};
    ci.bytes = publish(*ha, "seeded", data, &ci.len);
    struct ci_error err;
    ck_assert_uint_eq(ci_parse(ci.bytes, ci.len, &ci.info, &err), ERROR_SUCCESS);
    *ca = api_open_with_ci(*ha, tag, &ci);
    DWORD acc;
    ck_assert_uint_eq(api_add_data(*ha, *ca, 0, data, LEN, &acc), ERROR_SUCCESS);
    return ci;
}

START_TEST(hook_fetch_from_real_peer)
{
    struct test_daemon a, b;
    unsigned base = 24000 + (unsigned)(getpid() % 1000) * 2;
    uint8_t *data = api_make_content(LEN, 11);
    PEERDIST_CONTENT_TAG tag = api_make_tag(3);
    PEERDIST_INSTANCE_HANDLE ha, hb;
    PEERDIST_CONTENT_HANDLE ca, cb;
    struct api_ci ci = seeded_peer(&a, base, data, &ha, &ca, &tag);
    char peers[64];
    snprintf(peers, sizeof(peers), "127.0.0.1:%u", base);
    distributed_with_peers(&b, base + 1, peers);
    DWORD ver;
    ck_assert_uint_eq(PeerDistStartup(1, &hb, &ver), ERROR_SUCCESS);
    cb = api_open_with_ci(hb, &tag, &ci);
    static uint8_t buf[LEN];
    struct api_read r = block_read(hb, cb, 65536 + 5, sizeof(buf), buf, INFINITE);
    if (r.status != ERROR_SUCCESS) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "tail -n 20 %s %s", a.log, b.log);
        if (system(cmd) < 0)
            perror("system");
    }
    ck_assert_msg(r.status == ERROR_SUCCESS, "read from A: %u", (unsigned)r.status);
    ck_assert_uint_eq(r.offset, 65536 + 5);
    ck_assert_uint_gt(r.bytes, 0);
    ck_assert_mem_eq(buf, data + 65536 + 5, r.bytes);
    /* Read-ahead runs to the segment's end, storing every block on B from the read's one:
     * once they are there, A goes and B reads them from its own cache; block 0, before the
     * read's offset, was not fetched. */
    bool all = false;
    for (int i = 0; i < 200 && !all; i++) {
        r = block_read(hb, cb, 65536, 0, NULL, PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY);
        all = r.status == ERROR_SUCCESS && r.bytes == LEN - 65536;
        if (!all)
            usleep(50 * 1000);
    }
    ck_assert_msg(all, "read-ahead did not store the rest of the segment");
    ck_assert_uint_eq(PeerDistClientCloseContent(hb, cb), ERROR_SUCCESS);
    ck_assert_int_eq(td_stop(&a), 0);
    cb = api_open_with_ci(hb, &tag, &ci);
    for (uint64_t off = 65536; off < LEN;) {
        r = block_read(hb, cb, off, sizeof(buf), buf, PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY);
        ck_assert_msg(r.status == ERROR_SUCCESS, "local read at %llu: %u", (unsigned long long)off,
            (unsigned)r.status);
        ck_assert_mem_eq(buf, data + off, r.bytes);
        off += r.bytes;
    }
    r = block_read(hb, cb, 0, sizeof(buf), buf, PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY);
    api_assert_missing(r, 0, 65536);
    /* Stored under the reader's tag, as its AddData would have. */
    ck_assert_int_gt(td_sql(&b, "SELECT count(*) FROM labels"), 0);
    PeerDistClientCloseContent(hb, cb);
    PeerDistShutdown(hb);
    PeerDistShutdown(ha);
    api_ci_free(&ci);
    free(data);
    ck_assert_int_eq(td_stop(&b), 0); /* cleanly: under the sanitizers, nothing leaked */
    td_cleanup(&a);
    td_cleanup(&b);
}
END_TEST

START_TEST(lying_peer_rejected)
{
    struct test_daemon a, b, b2;
    unsigned base = 22000 + (unsigned)(getpid() % 1000) * 2;
    uint8_t *data = api_make_content(LEN, 13);
    PEERDIST_CONTENT_TAG tag = api_make_tag(4);
    PEERDIST_INSTANCE_HANDLE ha, hb;
    PEERDIST_CONTENT_HANDLE ca, cb;
    struct api_ci ci = seeded_peer(&a, base, data, &ha, &ca, &tag);
    struct fake_peer liar;
    fake_start(&liar, FAKE_LIAR, ci.info, NULL);
    char peers[64];
    /* The liar alone: its blocks fail their hash; the read ends MISSING_DATA, nothing stored. */
    snprintf(peers, sizeof(peers), "127.0.0.1:%u", liar.port);
    distributed_with_peers(&b, base + 1, peers);
    DWORD ver;
    ck_assert_uint_eq(PeerDistStartup(1, &hb, &ver), ERROR_SUCCESS);
    cb = api_open_with_ci(hb, &tag, &ci);
    static uint8_t buf[LEN];
    struct api_read r = block_read(hb, cb, 0, sizeof(buf), buf, INFINITE);
    ck_assert_uint_eq(r.status, PEERDIST_ERROR_MISSING_DATA);
    api_assert_missing(r, 0, LEN);
    ck_assert_int_gt(__atomic_load_n(&liar.requests, __ATOMIC_SEQ_CST), 0);
    ck_assert(td_log_contains(&b, "a block failing its hash"));
    ck_assert_int_eq(td_sql(&b, "SELECT count(*) FROM blocks"), 0);
    PeerDistClientCloseContent(hb, cb);
    PeerDistShutdown(hb);
    ck_assert_int_eq(td_stop(&b), 0);
    td_cleanup(&b);
    /* The liar and an honest peer: the read completes with the honest one's bytes. */
    snprintf(peers, sizeof(peers), "127.0.0.1:%u,127.0.0.1:%u", liar.port, base);
    distributed_with_peers(&b2, base + 1, peers);
    ck_assert_uint_eq(PeerDistStartup(1, &hb, &ver), ERROR_SUCCESS);
    cb = api_open_with_ci(hb, &tag, &ci);
    uint64_t off = 0;
    while (off < LEN) {
        r = block_read(hb, cb, off, sizeof(buf), buf, INFINITE);
        ck_assert_msg(r.status == ERROR_SUCCESS, "read at %llu: %u", (unsigned long long)off,
            (unsigned)r.status);
        ck_assert_mem_eq(buf, data + off, r.bytes);
        off += r.bytes;
    }
    PeerDistClientCloseContent(hb, cb);
    PeerDistShutdown(hb);
    PeerDistShutdown(ha);
    fake_stop(&liar);
    api_ci_free(&ci);
    free(data);
    ck_assert_int_eq(td_stop(&b2), 0);
    ck_assert_int_eq(td_stop(&a), 0);
    td_cleanup(&a);
    td_cleanup(&b2);
}
END_TEST

START_TEST(silent_peer_timeout)
{
    struct test_daemon b;
    unsigned base = 20000 + (unsigned)(getpid() % 1000) * 2;
    uint8_t *data = api_make_content(LEN, 17);
    /* The content information from a local daemon; the peer never answers. */
    struct test_daemon a;
    PEERDIST_CONTENT_TAG tag = api_make_tag(5);
    PEERDIST_INSTANCE_HANDLE ha, hb;
    PEERDIST_CONTENT_HANDLE ca, cb;
    struct api_ci ci = seeded_peer(&a, base, data, &ha, &ca, &tag);
    struct fake_peer mute;
    fake_start(&mute, FAKE_SILENT, ci.info, NULL);
    char peers[64];
    snprintf(peers, sizeof(peers), "127.0.0.1:%u", mute.port);
    distributed_with_peers(&b, base + 1, peers);
    DWORD ver;
    ck_assert_uint_eq(PeerDistStartup(1, &hb, &ver), ERROR_SUCCESS);
    cb = api_open_with_ci(hb, &tag, &ci);
    static uint8_t buf[65536];
    /* The deadline (700 ms) passes while the request to the peer is under way (its timer is
     * 2 s): ERROR_TIMEOUT and the missing range. */
    struct api_read r = block_read(hb, cb, 65536, sizeof(buf), buf, 700);
    ck_assert_uint_eq(r.status, ERROR_TIMEOUT);
    ck_assert_uint_eq(r.offset, 65536);
    ck_assert_uint_eq(r.bytes, LEN - 65536);
    /* Closing the handle while a read waits on its fetch: the read completes aborted, the
     * fetch stops (the daemon stays well: it is stopped cleanly below). */
    OVERLAPPED ov = {.Offset = 65536};
    ck_assert_uint_eq(PeerDistClientBlockRead(hb, cb, sizeof(buf), buf, INFINITE, &ov),
        ERROR_IO_PENDING);
    ck_assert_uint_eq(PeerDistClientCloseContent(hb, cb), ERROR_SUCCESS);
    ck_assert_uint_eq(api_wait(&ov, NULL), ERROR_OPERATION_ABORTED);
    cb = api_open_with_ci(hb, &tag, &ci);
    /* INFINITE: the peer's 2 s timer ends the fetch (distrusted): MISSING_DATA. */
    r = block_read(hb, cb, 65536, sizeof(buf), buf, INFINITE);
    ck_assert_uint_eq(r.status, PEERDIST_ERROR_MISSING_DATA);
    ck_assert(td_log_contains(&b, "no answer in time"));
    PeerDistClientCloseContent(hb, cb);
    PeerDistShutdown(hb);
    PeerDistShutdown(ha);
    fake_stop(&mute);
    api_ci_free(&ci);
    free(data);
    ck_assert_int_eq(td_stop(&b), 0);
    ck_assert_int_eq(td_stop(&a), 0);
    td_cleanup(&a);
    td_cleanup(&b);
}
END_TEST

START_TEST(slow_once_peer_not_distrusted)
{
    struct test_daemon a, b;
    unsigned base = 18000 + (unsigned)(getpid() % 1000) * 2;
    uint8_t *data = api_make_content(LEN, 19);
    PEERDIST_CONTENT_TAG tag = api_make_tag(6);
    PEERDIST_INSTANCE_HANDLE ha, hb;
    PEERDIST_CONTENT_HANDLE ca, cb;
    /* A only makes the content information; the one peer is the fake, honest but slow once. */
    struct api_ci ci = seeded_peer(&a, base, data, &ha, &ca, &tag);
    struct fake_peer slow;
    fake_start(&slow, FAKE_SLOW_ONCE, ci.info, data);
    char peers[64];
    snprintf(peers, sizeof(peers), "127.0.0.1:%u", slow.port);
    distributed_with_peers(&b, base + 1, peers);
    DWORD ver;
    ck_assert_uint_eq(PeerDistStartup(1, &hb, &ver), ERROR_SUCCESS);
    cb = api_open_with_ci(hb, &tag, &ci);
    static uint8_t buf[LEN];
    /* Its first answer comes after the 2 s request timer: the block is asked for again, and
     * every INFINITE read completes with the right bytes (the peer is the only one). */
    for (uint64_t off = 0; off < LEN;) {
        struct api_read r = block_read(hb, cb, off, sizeof(buf), buf, INFINITE);
        ck_assert_msg(r.status == ERROR_SUCCESS, "read at %llu: %u", (unsigned long long)off,
            (unsigned)r.status);
        ck_assert_mem_eq(buf, data + off, r.bytes);
        off += r.bytes;
    }
    ck_assert(td_log_contains(&b, "asked again before it is distrusted"));
    ck_assert(!td_log_contains(&b, "distrusted for"));
    PeerDistClientCloseContent(hb, cb);
    PeerDistShutdown(hb);
    PeerDistShutdown(ha);
    fake_stop(&slow);
    api_ci_free(&ci);
    free(data);
    ck_assert_int_eq(td_stop(&b), 0);
    ck_assert_int_eq(td_stop(&a), 0);
    td_cleanup(&a);
    td_cleanup(&b);
}
END_TEST

/* Two segments (32 MiB and 64 KiB): a read in the first starts the second's fetch too. */
#define LEN2 (32 * 1024 * 1024 + 65536)

START_TEST(read_ahead_next_segment)
{
    struct test_daemon a, b;
    unsigned base = 16000 + (unsigned)(getpid() % 1000) * 2;
    uint8_t *data = api_make_content(LEN2, 23);
    PEERDIST_CONTENT_TAG tag = api_make_tag(7);
    PEERDIST_INSTANCE_HANDLE ha, hb;
    distributed(&a, base);
    DWORD ver, acc;
    ck_assert_uint_eq(PeerDistStartup(1, &ha, &ver), ERROR_SUCCESS);
    struct api_ci ci = {0};
    api_publish(ha, "two-segments", data, LEN2, PEERDIST_PUBLICATION_OPTIONS_VERSION_1, NULL, 0);
    ci.bytes = api_get_ci(ha, "two-segments", 0, 0, NULL, &ci.len);
    PEERDIST_CONTENT_HANDLE ca = api_open_with_ci(ha, &tag, &ci);
    for (size_t off = 0; off < LEN2; off += 1 << 20) {
        DWORD n = LEN2 - off < (1u << 20) ? (DWORD)(LEN2 - off) : 1u << 20;
        ck_assert_uint_eq(api_add_data(ha, ca, off, data + off, n, &acc), ERROR_SUCCESS);
    }
    char peers[64];
    snprintf(peers, sizeof(peers), "127.0.0.1:%u", base);
    distributed_with_peers(&b, base + 1, peers);
    ck_assert_uint_eq(PeerDistStartup(1, &hb, &ver), ERROR_SUCCESS);
    PEERDIST_CONTENT_HANDLE cb = api_open_with_ci(hb, &tag, &ci);
    static uint8_t buf[65536];
    /* One block of the first segment, read from A. */
    struct api_read r = block_read(hb, cb, 0, sizeof(buf), buf, INFINITE);
    ck_assert_msg(r.status == ERROR_SUCCESS, "read from A: %u", (unsigned)r.status);
    ck_assert_mem_eq(buf, data, r.bytes);
    /* The first segment's fetch runs to its end, then the second segment's starts without a
     * read there: its block comes into B's cache, and reads from there alone. */
    bool there = false;
    for (int i = 0; i < 600 && !there; i++) {
        r = block_read(hb, cb, 32u << 20, sizeof(buf), buf, PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY);
        there = r.status == ERROR_SUCCESS;
        if (!there)
            usleep(100 * 1000);
    }
    ck_assert_msg(there, "the next segment was not read ahead");
    ck_assert_uint_eq(r.bytes, 65536);
    ck_assert_mem_eq(buf, data + (32u << 20), 65536);
    PeerDistClientCloseContent(hb, cb);
    PeerDistShutdown(hb);
    PeerDistShutdown(ha);
    api_ci_free(&ci);
    free(data);
    ck_assert_int_eq(td_stop(&b), 0);
    ck_assert_int_eq(td_stop(&a), 0);
    td_cleanup(&a);
    td_cleanup(&b);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a fake peer writing to a daemon that hung up */
    Suite *s = suite_create("peer_fetch");
    TCase *tc = tcase_create("reads");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, no_peer_missing);
    tcase_add_test(tc, fetch_from_peer);
    tcase_add_test(tc, hook_fetch_from_real_peer);
    tcase_add_test(tc, lying_peer_rejected);
    tcase_add_test(tc, silent_peer_timeout);
    tcase_add_test(tc, slow_once_peer_not_distrusted);
    tcase_add_test(tc, read_ahead_next_segment);
    suite_add_tcase(s, tc);
    return check_run(s);
}
