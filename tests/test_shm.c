/* SPDX-License-Identifier: MIT */
/*
 * test_shm.c - reads through the shared memfd region (proto/README.md, Shared-memory reads)
 * against the real peerdistd: the same bytes as in-frame reads for StreamRead and BlockRead,
 * ranged, unaligned, many in flight, across segments, on the first read after a restart; and
 * a hostile client's descriptors (unsealed, wrong size, not a memfd, extra ones on ordinary
 * frames, offsets out of bounds) refused with a clear error, no crash, no descriptor kept.
 */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <peerdist.h>

#include "api_util.h"
#include "check_run.h"
#include "harness.h"
#include "wire_util.h"

#define REGION (8u * MiB) /* the library's PD_SHM_SIZE */

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

/* Descriptors the daemon holds now. */
static int daemon_fds(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)td.pid);
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Whether the daemon has a memfd called name mapped. */
static bool daemon_maps(const char *name)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)td.pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    bool found = false;
    while (fgets(line, sizeof(line), f))
        found |= strstr(line, name) != NULL;
    fclose(f);
    return found;
}

/* Content published under id and added under tag through the API: its content information. */
static void cache_content(const char *id, const uint8_t *data, size_t len, DWORD version,
    const PEERDIST_CONTENT_TAG *tag, struct api_ci *ci)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    api_publish(h, id, data, len, version, NULL, 0);
    ci->bytes = api_get_ci(h, id, 0, 0, NULL, &ci->len);
    ci->info = NULL;
    PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, tag, ci);
    DWORD got;
    for (size_t off = 0; off < len; off += 4 * MiB) {
        DWORD n = (DWORD)(len - off < 4 * MiB ? len - off : 4 * MiB);
        ck_assert_uint_eq(api_add_data(h, c, off, data + off, n, &got), ERROR_SUCCESS);
    }
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
}

/* BlockReads of odd sizes at odd offsets, some across a segment boundary (V1: 32 MiB). */
static void block_reads(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, const uint8_t *data,
    size_t len)
{
    static const struct {
        uint64_t off;
        DWORD cap;
    } at[] = {{0, 64 * KiB}, {1, 64 * KiB + 1}, {65535, 300 * KiB + 7}, {32 * MiB - 100, MiB},
        {32 * MiB - 3 * 64 * KiB - 5, 2 * MiB}, {5 * MiB + 12345, MiB - 3}, {7, 4 * MiB}};
    uint8_t *buf = malloc(4 * MiB);
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        if (at[i].off >= len)
            continue;
        /* A read may return fewer bytes than asked (a block-run limit): read on until done. */
        uint64_t end = at[i].off + at[i].cap < len ? at[i].off + at[i].cap : len;
        for (uint64_t o = at[i].off; o < end;) {
            struct api_read r = api_block_read(h, c, o, (DWORD)(end - o), buf);
            ck_assert_msg(r.status == ERROR_SUCCESS, "BlockRead at %llu: %u", (unsigned long long)o,
                r.status);
            ck_assert_uint_eq(r.offset, o);
            ck_assert_uint_gt(r.bytes, 0);
            ck_assert_uint_le(r.bytes, end - o);
            ck_assert_msg(memcmp(buf, data + o, r.bytes) == 0, "BlockRead at %llu: wrong bytes",
                (unsigned long long)o);
            o += r.bytes;
        }
    }
    free(buf);
}

/* StreamRead of everything with `depth` reads of `cap` bytes in flight on a port. */
static void stream_reads_in_flight(PEERDIST_INSTANCE_HANDLE h, const PEERDIST_CONTENT_TAG *tag,
    const struct api_ci *ci, const uint8_t *data, size_t len, int depth, DWORD cap)
{
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    ck_assert_ptr_nonnull(port);
    PEERDIST_CONTENT_HANDLE c = api_open_content(h, tag, port);
    ck_assert_uint_eq(api_feed_ci(h, c, ci), ERROR_SUCCESS);
    /* api_feed_ci's completions went to the port too. */
    for (;;) {
        DWORD n;
        ULONG_PTR key;
        LPOVERLAPPED got;
        if (!GetQueuedCompletionStatus(port, &n, &key, &got, 0) && !got)
            break;
    }
    OVERLAPPED *ov = calloc((size_t)depth, sizeof(*ov));
    uint8_t *bufs = malloc((size_t)depth * cap);
    uint8_t *seen = calloc(len, 1);
    int inflight = 0;
    bool more = true;
    for (int i = 0; i < depth; i++, inflight++)
        ck_assert_uint_eq(PeerDistClientStreamRead(h, c, cap, bufs + (size_t)i * cap,
                              PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, &ov[i]),
            ERROR_IO_PENDING);
    uint64_t total = 0;
    while (inflight > 0) {
        DWORD n;
        ULONG_PTR key;
        LPOVERLAPPED got;
        BOOL ok = GetQueuedCompletionStatus(port, &n, &key, &got, 30000);
        ck_assert_ptr_nonnull(got);
        if (got < ov || got >= ov + depth)
            continue; /* a late completion of api_feed_ci's */
        inflight--;
        int i = (int)(got - ov);
        if (!ok) {
            ck_assert_uint_eq(GetLastError(), PEERDIST_ERROR_NO_MORE);
            more = false;
            continue;
        }
        uint64_t at = (uint64_t)got->OffsetHigh << 32 | got->Offset;
        ck_assert_uint_le(at + n, len);
        ck_assert_msg(memcmp(bufs + (size_t)i * cap, data + at, n) == 0,
            "StreamRead at %llu: wrong bytes", (unsigned long long)at);
        bool twice = false; /* every byte once (plain C: a check per byte would crawl) */
        for (uint64_t k = at; k < at + n; k++) {
            twice |= seen[k];
            seen[k] = 1;
        }
        ck_assert_msg(!twice, "StreamRead at %llu: bytes read twice", (unsigned long long)at);
        total += n;
        if (more) {
            memset(got, 0, sizeof(*got));
            ck_assert_uint_eq(PeerDistClientStreamRead(h, c, cap, bufs + (size_t)i * cap,
                                  PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, got),
                ERROR_IO_PENDING);
            inflight++;
        }
    }
    ck_assert_uint_eq(total, len);
    free(seen);
    free(bufs);
    free(ov);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    CloseHandle(port);
}

static void reads_match(DWORD version, bool shm)
{
    const size_t len = 34 * MiB + 12345; /* two V1 segments, the second partial */
    uint8_t *data = api_make_content(len, 11 + version);
    PEERDIST_CONTENT_TAG tag = api_make_tag((uint8_t)(version + 40));
    struct api_ci ci;
    char id[32];
    snprintf(id, sizeof(id), "shm-v%u", version);
    cache_content(id, data, len, version, &tag, &ci);
    if (!shm)
        setenv("PEERDIST_NO_SHM", "1", 1);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_HANDLE c = api_open_with_ci(h, &tag, &ci);
    block_reads(h, c, data, len);
    api_read_back_stream(h, c, data, 0, len);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    /* 16 in flight: 8 in the region's slots, the rest in-frame meanwhile; odd sizes too. */
    stream_reads_in_flight(h, &tag, &ci, data, len, 16, MiB);
    stream_reads_in_flight(h, &tag, &ci, data, len, 5, 700 * KiB + 3);
    ck_assert_int_eq(daemon_maps("memfd:peerdist-read"), shm);
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    unsetenv("PEERDIST_NO_SHM");

    /* After a restart every block is checked on its first read (a worker), then served. */
    td_stop(&td);
    td_start(&td);
    h = api_startup();
    stream_reads_in_flight(h, &tag, &ci, data, len, 8, MiB);
    c = api_open_with_ci(h, &tag, &ci);
    block_reads(h, c, data, len);
    ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    ck_assert(daemon_maps("memfd:peerdist-read"));
    ck_assert_uint_eq(PeerDistShutdown(h), ERROR_SUCCESS);
    /* The connection closed: the region is unmapped (wait: the close is seen asynchronously). */
    for (int i = 0; i < 3000 && daemon_maps("memfd:peerdist-read"); i++)
        usleep(1000);
    ck_assert(!daemon_maps("memfd:peerdist-read"));
    free(ci.bytes);
    free(data);
}

START_TEST(shm_reads_match_v1)
{
    reads_match(1, true);
}
END_TEST

START_TEST(shm_reads_match_v2)
{
    reads_match(2, true);
}
END_TEST

START_TEST(in_frame_reads_match)
{
    reads_match(1, false);
}
END_TEST

/* ---- a hostile client ---- */

/* Sends req with the descriptors fds[0, nfds) attached; its reply's status (UINT32_MAX: none). */
static uint32_t send_with_fds(int s, Peerdist__Request *req, const int *fds, int nfds)
{
    static uint64_t next = 1u << 30;
    req->id = next++;
    size_t n = frame_size(&req->base);
    uint8_t *buf = malloc(n);
    ck_assert_uint_eq(frame_pack(&req->base, buf), n);
    char cbuf[CMSG_SPACE(sizeof(int) * 16)];
    memset(cbuf, 0, sizeof(cbuf));
    struct iovec iov = {buf, n};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds) {
        msg.msg_control = cbuf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
    }
    ck_assert_int_eq(sendmsg(s, &msg, 0), (ssize_t)n);
    free(buf);
    for (;;) {
        Peerdist__Reply *r = wu_recv(s);
        if (!r)
            return UINT32_MAX;
        if (r->id != req->id) {
            peerdist__reply__free_unpacked(r, NULL);
            continue;
        }
        uint32_t st = r->status;
        peerdist__reply__free_unpacked(r, NULL);
        return st;
    }
}

static uint32_t attach(int s, uint64_t size, const int *fds, int nfds)
{
    Peerdist__ShmAttachRequest sa = PEERDIST__SHM_ATTACH_REQUEST__INIT;
    sa.size = size;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_SHM_ATTACH;
    req.shm_attach = &sa;
    return send_with_fds(s, &req, fds, nfds);
}

static uint32_t get_status(int s, const int *fds, int nfds)
{
    Peerdist__GetStatusRequest gs = PEERDIST__GET_STATUS_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_GET_STATUS;
    req.get_status = &gs;
    return send_with_fds(s, &req, fds, nfds);
}

/* A memfd of size bytes with the given seals. */
static int memfd(size_t size, int seals)
{
    int fd = memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
    if (seals)
        ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, seals), 0);
    return fd;
}

/* A shm ReadRequest at handle's offset off into the region at shm_off: status, bytes placed. */
static uint32_t shm_read(int s, uint64_t handle, uint64_t off, uint32_t max, uint64_t shm_off,
    uint64_t *placed)
{
    Peerdist__ReadRequest rd = PEERDIST__READ_REQUEST__INIT;
    rd.handle = handle;
    rd.offset = off;
    rd.max_bytes = max;
    rd.timeout_ms = PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY;
    rd.shm = true;
    rd.shm_offset = shm_off;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_READ;
    req.read = &rd;
    Peerdist__Reply *r = wu_call(s, &req);
    ck_assert_ptr_nonnull(r);
    uint32_t st = r->status;
    *placed = r->body_case == PEERDIST__REPLY__BODY_READ ? r->read->shm_length : 0;
    if (r->body_case == PEERDIST__REPLY__BODY_READ)
        ck_assert_uint_eq(r->read->data.len, 0); /* never both */
    peerdist__reply__free_unpacked(r, NULL);
    return st;
}

START_TEST(hostile_descriptors)
{
    const size_t len = 3 * MiB + 5;
    uint8_t *data = api_make_content(len, 99);
    PEERDIST_CONTENT_TAG tag = api_make_tag(7);
    struct api_ci ci;
    cache_content("hostile", data, len, 1, &tag, &ci);

    int s = wu_open(td.sock);
    ck_assert_int_ge(s, 0);
    int base = daemon_fds();
    const int seals = F_SEAL_SHRINK | F_SEAL_GROW;

    /* A shm read before any region: refused. */
    uint64_t h = wu_open_ci(s, tag.Data, ci.bytes, ci.len), placed;
    ck_assert_uint_ne(h, 0);
    ck_assert_uint_eq(shm_read(s, h, 0, MiB, 0, &placed), ERROR_INVALID_PARAMETER);

    /* Attach without a descriptor; unsealed; sealed against shrinking only; not a memfd
     * (a pipe, a regular file); too small; too large; a size the request misstates. */
    ck_assert_uint_eq(attach(s, REGION, NULL, 0), ERROR_INVALID_PARAMETER);
    /* Refusals are logged at most 5 a second: a pause before each whose line is checked. */
    sleep(1);
    int fd = memfd(REGION, 0);
    ck_assert_uint_eq(attach(s, REGION, &fd, 1), ERROR_INVALID_PARAMETER);
    ck_assert(td_log_contains(&td, "not sealed against shrinking and growing"));
    close(fd);
    fd = memfd(REGION, F_SEAL_SHRINK);
    ck_assert_uint_eq(attach(s, REGION, &fd, 1), ERROR_INVALID_PARAMETER);
    close(fd);
    /* Not shared memory (a pipe, a regular file): never closed on the loop, where a file of a
     * FUSE mount its sender serves could hold it; the connection is closed instead. */
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_uint_eq(attach(s, REGION, p, 1), UINT32_MAX);
    ck_assert(td_log_contains(&td, "sent a descriptor that is not a memfd"));
    close(s);
    char path[256];
    snprintf(path, sizeof(path), "%s/regular", td.dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ck_assert_int_eq(ftruncate(fd, REGION), 0);
    s = wu_open(td.sock);
    ck_assert_int_ge(s, 0);
    ck_assert_uint_eq(attach(s, REGION, &fd, 1), UINT32_MAX);
    close(fd);
    close(s);
    s = wu_open(td.sock);
    ck_assert_int_ge(s, 0);
    /* ... on an ordinary frame too. */
    ck_assert_uint_eq(get_status(s, p, 2), UINT32_MAX);
    close(s);
    s = wu_open(td.sock);
    ck_assert_int_ge(s, 0);
    h = wu_open_ci(s, tag.Data, ci.bytes, ci.len);
    ck_assert_uint_ne(h, 0);
    for (int i = 0; i < 3000 && daemon_fds() != base; i++)
        usleep(1000); /* the closer thread has closed them */
    ck_assert_int_eq(daemon_fds(), base);
    fd = memfd(4096, seals);
    ck_assert_uint_eq(attach(s, 4096, &fd, 1), ERROR_INVALID_PARAMETER);
    close(fd);
    fd = memfd(64 * MiB, seals);
    ck_assert_uint_eq(attach(s, 64 * MiB, &fd, 1), ERROR_INVALID_PARAMETER);
    close(fd);
    fd = memfd(REGION, seals);
    sleep(1);
    ck_assert_uint_eq(attach(s, REGION * 2, &fd, 1), ERROR_INVALID_PARAMETER);
    ck_assert(td_log_contains(&td, "shared read region refused: size"));
    close(fd);
    /* Sealed against writing: the daemon cannot map it for writing. */
    fd = memfd(REGION, seals | F_SEAL_WRITE);
    ck_assert_uint_eq(attach(s, REGION, &fd, 1), ERROR_INVALID_PARAMETER);
    close(fd);

    /* Shared-memory descriptors on ordinary frames: answered as ever, closed. Too many in one
     * message. */
    sleep(1);
    int extra[2] = {memfd(4096, 0), memfd(REGION, seals)};
    ck_assert_uint_eq(get_status(s, extra, 2), ERROR_SUCCESS);
    int many[12];
    for (int i = 0; i < 12; i++)
        many[i] = extra[i % 2];
    ck_assert_uint_eq(get_status(s, many, 12), ERROR_SUCCESS);
    ck_assert(td_log_contains(&td, "a descriptor sent with a request that takes none"));
    ck_assert_int_eq(daemon_fds(), base);

    /* A good region, then a second: refused; two descriptors with one attach: one taken. */
    fd = memfd(REGION, seals | F_SEAL_SEAL);
    int two[2] = {fd, extra[0]};
    ck_assert_uint_eq(attach(s, REGION, two, 2), ERROR_SUCCESS);
    sleep(1);
    ck_assert_uint_eq(attach(s, REGION, &fd, 1), ERROR_INVALID_PARAMETER);
    ck_assert(td_log_contains(&td, "a region is already attached"));
    ck_assert_int_eq(daemon_fds(), base); /* mapped, its descriptor closed */
    uint8_t *m = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);

    /* Offsets out of bounds: refused, nothing written. Reads in bounds: the right bytes,
     * whatever the client wrote there before. */
    memset(m, 0xAA, REGION);
    sleep(1);
    ck_assert_uint_eq(shm_read(s, h, 0, MiB, REGION - MiB + 1, &placed), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(shm_read(s, h, 0, 1, REGION, &placed), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(shm_read(s, h, 0, MiB, UINT64_MAX - 10, &placed), ERROR_INVALID_PARAMETER);
    ck_assert(td_log_contains(&td, "a shm read of"));
    size_t changed = 0;
    for (size_t i = 0; i < REGION; i++)
        changed += m[i] != 0xAA;
    ck_assert_uint_eq(changed, 0);
    ck_assert_uint_eq(shm_read(s, h, 12345, MiB, REGION - MiB, &placed), ERROR_SUCCESS);
    ck_assert_uint_gt(placed, 0);
    ck_assert(memcmp(m + REGION - MiB, data + 12345, placed) == 0);
    ck_assert_uint_eq(shm_read(s, h, len - 5, MiB, 3, &placed), ERROR_SUCCESS);
    ck_assert_uint_eq(placed, 5);
    ck_assert(memcmp(m + 3, data + len - 5, 5) == 0);
    ck_assert_uint_eq(m[8], 0xAA);
    /* A shm read past the content: NO_MORE, as in-frame. */
    ck_assert_uint_eq(shm_read(s, h, len, MiB, 0, &placed), PEERDIST_ERROR_NO_MORE);

    /* Unmapped when the connection closes; nothing kept; the daemon still serves. */
    ck_assert(daemon_maps("memfd:hostile"));
    close(s);
    close(p[0]);
    close(p[1]);
    close(extra[0]);
    close(extra[1]);
    s = wu_open(td.sock);
    ck_assert_int_ge(s, 0);
    ck_assert_uint_eq(get_status(s, NULL, 0), ERROR_SUCCESS);
    ck_assert_int_eq(daemon_fds(), base);
    ck_assert(!daemon_maps("memfd:hostile"));
    close(s);
    munmap(m, REGION);
    close(fd);
    free(ci.bytes);
    free(data);
}
END_TEST

/* A descriptor arriving with the bytes of a frame that is then dropped for memory, or with a
 * frame cut off by the connection's close: closed too. */
START_TEST(descriptors_of_partial_frames_are_closed)
{
    int s = wu_open(td.sock);
    ck_assert_int_ge(s, 0);
    int base = daemon_fds();
    int p[2] = {memfd(4096, 0), -1};
    /* Half a frame, with a descriptor; then the connection goes away. */
    uint8_t half[3] = {0, 0, 0};
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof(cbuf));
    struct iovec iov = {half, sizeof(half)};
    struct msghdr msg = {.msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = cbuf,
        .msg_controllen = sizeof(cbuf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &p[0], sizeof(int));
    ck_assert_int_eq(sendmsg(s, &msg, 0), 3);
    /* The daemon holds it while the frame is incomplete (at most SERVER_RX_FDS_MAX) ... */
    for (int i = 0; i < 3000 && daemon_fds() != base + 1; i++)
        usleep(1000);
    ck_assert_int_eq(daemon_fds(), base + 1);
    close(s);
    /* ... and closes it with the connection. */
    for (int i = 0; i < 3000 && daemon_fds() != base - 1; i++)
        usleep(1000);
    ck_assert_int_eq(daemon_fds(), base - 1);
    close(p[0]);
    /* Half a frame with a descriptor that is not shared memory: the connection is closed at
     * once, the descriptor closed off the loop. */
    s = wu_open(td.sock);
    ck_assert_int_ge(s, 0);
    base = daemon_fds();
    int q[2];
    ck_assert_int_eq(pipe(q), 0);
    memcpy(CMSG_DATA(cm), &q[0], sizeof(int));
    ck_assert_int_eq(sendmsg(s, &msg, 0), 3);
    uint8_t b;
    ck_assert_int_le(read(s, &b, 1), 0); /* closed by the daemon */
    for (int i = 0; i < 3000 && daemon_fds() != base - 1; i++)
        usleep(1000);
    ck_assert_int_eq(daemon_fds(), base - 1);
    close(s);
    close(q[0]);
    close(q[1]);
}
END_TEST

/* Counts the daemon's mappings of memfds called name. */
static int daemon_map_count(const char *name)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)td.pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, name) != NULL;
    fclose(f);
    return n;
}

/*
 * A daemon that declines the region (here: the uid's memory share, half of a 24 MiB budget,
 * already holds the first instance's region; an older daemon answers 120 the same way): the
 * library reads in-frame on that connection, and the bytes are the same.
 */
START_TEST(declined_region_reads_in_frame)
{
    td_stop(&td);
    td_config_append(&td, "memory_budget = 24M\n");
    td_start(&td);
    const size_t len = 5 * MiB + 3;
    uint8_t *data = api_make_content(len, 5);
    PEERDIST_CONTENT_TAG tag = api_make_tag(9);
    struct api_ci ci;
    cache_content("declined", data, len, 1, &tag, &ci);
    PEERDIST_INSTANCE_HANDLE a = api_startup(), b = api_startup();
    PEERDIST_CONTENT_HANDLE ca = api_open_with_ci(a, &tag, &ci);
    api_read_back_stream(a, ca, data, 0, len);
    ck_assert_int_eq(daemon_map_count("memfd:peerdist-read"), 1);
    PEERDIST_CONTENT_HANDLE cb = api_open_with_ci(b, &tag, &ci);
    api_read_back_stream(b, cb, data, 0, len);
    block_reads(b, cb, data, len);
    ck_assert_int_eq(daemon_map_count("memfd:peerdist-read"), 1); /* b's was declined */
    ck_assert(td_log_contains(&td, "a shared read region"));      /* the budget's refusal */
    ck_assert_uint_eq(PeerDistClientCloseContent(b, cb), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistClientCloseContent(a, ca), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(b), ERROR_SUCCESS);
    ck_assert_uint_eq(PeerDistShutdown(a), ERROR_SUCCESS);
    free(ci.bytes);
    free(data);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("shm");
    TCase *tc = tcase_create("shm");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, shm_reads_match_v1);
    tcase_add_test(tc, shm_reads_match_v2);
    tcase_add_test(tc, in_frame_reads_match);
    tcase_add_test(tc, hostile_descriptors);
    tcase_add_test(tc, descriptors_of_partial_frames_are_closed);
    tcase_add_test(tc, declined_region_reads_in_frame);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return check_run(suite());
}
