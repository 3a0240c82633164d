/* SPDX-License-Identifier: MIT */
/*
 * test_hostile.c - the real peerdistd against hostile and careless local clients, spoken to in
 * raw frames: oversized, truncated and garbage frames, requests before Hello, unknown handles,
 * frames built to cost memory to decode, clients that never read, never say Hello or never
 * finish a frame, one uid taking every connection slot or the memory budget, a descriptor
 * limit too small for max_connections, the daemon out of descriptors, 10,000 idle
 * connections, and --socket naming a file that is not a socket. Throughout, another client
 * (root) calls GetStatus once a millisecond and must always be answered; its latency is
 * printed (p50, p99, max), never asserted; the children the test forks meanwhile do not hang
 * on a lock that client's thread held. Every test ends with a clean stop and the memory
 * budget balanced. HOSTILE_ONLY=test_name runs one test.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <peerdist.h>

#include "api_util.h"
#include "check_run.h"
#include "contentinfo.h"
#include "frame.h"
#include "harness.h"

static struct test_daemon td;

/* Unprivileged uids the hostile clients run as (the test runs as root). */
#define UID_A 65534
#define UID_B 65533
#define UID_C 65532

/* ---- a raw-frame client (usable in children: no ck_assert) ---- */

enum { RC_EOF = -1, RC_TIMEOUT = -2, RC_BAD = -3 };

static int rc_connect(void)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(td.sock) >= sizeof(sun.sun_path))
        return -1;
    memcpy(sun.sun_path, td.sock, strlen(td.sock) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        close(fd);
        return -1;
    }
    /* The longest honest wait; only a broken daemon makes a read wait this long. */
    struct timeval tv = {TD_WAIT_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static bool rc_write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

static bool rc_send(int fd, const Peerdist__Request *req)
{
    size_t n = frame_size(&req->base);
    uint8_t *buf = malloc(n);
    if (!buf)
        return false;
    frame_pack(&req->base, buf);
    bool ok = rc_write_all(fd, buf, n);
    free(buf);
    return ok;
}

/* Reads one reply (free it with peerdist__reply__free_unpacked): 0, or RC_*. */
static int rc_recv(int fd, Peerdist__Reply **out)
{
    uint8_t hdr[FRAME_HEADER_SIZE];
    ssize_t n = recv(fd, hdr, sizeof(hdr), MSG_WAITALL);
    if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
        return RC_EOF;
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? RC_TIMEOUT : RC_BAD;
    if (n != (ssize_t)sizeof(hdr))
        return RC_EOF;
    uint32_t len = frame_header_length(hdr);
    if (len > FRAME_MAX_PAYLOAD)
        return RC_BAD;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf || recv(fd, buf, len, MSG_WAITALL) != (ssize_t)len) {
        free(buf);
        return RC_BAD;
    }
    *out = peerdist__reply__unpack(NULL, len, buf);
    free(buf);
    return *out ? 0 : RC_BAD;
}

/* Sends req, reads replies up to the one for req->id (notices skipped): its status, or RC_*. */
static long rc_call(int fd, const Peerdist__Request *req, Peerdist__Reply **out)
{
    if (!rc_send(fd, req))
        return RC_EOF;
    for (;;) {
        Peerdist__Reply *r = NULL;
        int rc = rc_recv(fd, &r);
        if (rc != 0)
            return rc;
        if (r->id != req->id) {
            peerdist__reply__free_unpacked(r, NULL);
            continue;
        }
        long status = r->status;
        if (out)
            *out = r;
        else
            peerdist__reply__free_unpacked(r, NULL);
        return status;
    }
}

static long rc_hello(int fd)
{
    Peerdist__Hello h = PEERDIST__HELLO__INIT;
    h.min_version = h.max_version = PD_PROTOCOL_VERSION_MAX;
    h.software = "test_hostile";
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.id = 1;
    req.body_case = PEERDIST__REQUEST__BODY_HELLO;
    req.hello = &h;
    return rc_call(fd, &req, NULL);
}

static long rc_get_status(int fd, uint64_t id)
{
    Peerdist__GetStatusRequest g = PEERDIST__GET_STATUS_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.id = id;
    req.body_case = PEERDIST__REQUEST__BODY_GET_STATUS;
    req.get_status = &g;
    return rc_call(fd, &req, NULL);
}

/* True when the daemon closes fd (EOF within TD_WAIT_MS, whatever it sends first). */
static bool rc_closed_by_daemon(int fd)
{
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
        if (n < 0)
            return false; /* timeout: still open */
    }
}

/* A connection that has said Hello, or -1. */
static int rc_open(void)
{
    int fd = rc_connect();
    if (fd >= 0 && rc_hello(fd) != ERROR_SUCCESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void put_varint(uint8_t **p, uint64_t v)
{
    while (v >= 0x80) {
        *(*p)++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *(*p)++ = (uint8_t)v;
}

/*
 * A request of exactly `size` frame bytes: Request{id, get_status{}} (or no known body: a
 * newer client's request type) and an unknown field 60 of filler bytes, which the daemon must
 * skip (a newer client's field). Free it.
 */
static uint8_t *padded_request(uint64_t id, size_t size, bool get_status)
{
    uint8_t *f = malloc(size), *p = f + FRAME_HEADER_SIZE;
    *p++ = 0x08; /* Request.id, varint */
    put_varint(&p, id);
    if (get_status) {
        *p++ = 0x1a; /* Request.get_status (3), length-delimited, empty */
        *p++ = 0x00;
    }
    *p++ = 0xe2; /* field 60, length-delimited */
    *p++ = 0x03;
    size_t used = (size_t)(p - f) + 4; /* a 4-byte length varint follows */
    size_t fill = size - used;
    *p++ = (uint8_t)(fill | 0x80);
    *p++ = (uint8_t)(fill >> 7 | 0x80);
    *p++ = (uint8_t)(fill >> 14 | 0x80);
    *p++ = (uint8_t)(fill >> 21);
    memset(p, 0x5a, fill);
    uint32_t payload = (uint32_t)(size - FRAME_HEADER_SIZE);
    f[0] = (uint8_t)(payload >> 24);
    f[1] = (uint8_t)(payload >> 16);
    f[2] = (uint8_t)(payload >> 8);
    f[3] = (uint8_t)payload;
    return f;
}

/* The largest frame the daemon takes. */
#define BIG_FRAME (FRAME_HEADER_SIZE + FRAME_MAX_PAYLOAD)

/* ---- the daemon ---- */

/* td_init, then these lines appended to its configuration file, then td_start. */
static void start_daemon(const char *extra_conf)
{
    td_init(&td, "local");
    td_config_append(&td, extra_conf ? extra_conf : "");
    td_start(&td);
}

/* A line of the daemon's /proc status ("VmRSS", "VmHWM") in KiB. */
static long daemon_status_kib(const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)td.pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    long kib = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':')
            kib = strtol(line + fl + 1, NULL, 10);
    fclose(f);
    return kib;
}

/* The connections the daemon reports (DaemonInfoReply.connections), asked on fd. */
static long daemon_connections(int fd)
{
    static uint64_t id = 1000;
    Peerdist__DaemonInfoRequest di = PEERDIST__DAEMON_INFO_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.id = ++id;
    req.body_case = PEERDIST__REQUEST__BODY_DAEMON_INFO;
    req.daemon_info = &di;
    Peerdist__Reply *r = NULL;
    long st = rc_call(fd, &req, &r);
    if (st != 0 || !r || r->body_case != PEERDIST__REPLY__BODY_DAEMON_INFO) {
        if (r)
            peerdist__reply__free_unpacked(r, NULL);
        return -1;
    }
    long n = (long)r->daemon_info->connections;
    peerdist__reply__free_unpacked(r, NULL);
    return n;
}

/* ---- another client: GetStatus once a millisecond, its latency recorded ---- */

#define BY_MAX_SAMPLES (1u << 20)

static struct bystander {
    pthread_t thread;
    atomic_bool running, stop;
    int fd;
    uint32_t *us;
    atomic_size_t n;
    atomic_uint failures;
    long first_failure;
} by;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/*
 * The test forks its hostile clients (spawn_as) while this client's thread runs. A child
 * inherits every lock as it was at the fork, but only the forking thread: glibc's malloc
 * takes its locks around fork(), ASan's allocator (GCC 12's libasan) does not, so a fork
 * while this thread was inside malloc or free left the child one of the allocator's locks
 * held by no one, and the child hung at its first allocation of that size class. So this
 * thread allocates only with by_lock held, which fork() takes first (pthread_atfork in
 * main): in its calls, and while it starts (ASan's start of a thread allocates) and ends,
 * when the test waits for it rather than forking (by_start, by_join).
 */
static pthread_mutex_t by_lock = PTHREAD_MUTEX_INITIALIZER;

static void by_lock_take(void)
{
    pthread_mutex_lock(&by_lock);
}

static void by_lock_give(void)
{
    pthread_mutex_unlock(&by_lock);
}

static void *by_run(void *arg)
{
    uint64_t id = 1;
    bool gone = false; /* its connection: nothing more to measure */
    atomic_store(&by.running, true);
    while (!atomic_load(&by.stop)) {
        if (!gone) {
            by_lock_take();
            double t0 = now_us();
            long st = rc_get_status(by.fd, ++id);
            double dt = now_us() - t0;
            if (st != ERROR_SUCCESS) {
                if (!by.failures++)
                    by.first_failure = st;
                gone = st < 0;
            } else if (by.n < BY_MAX_SAMPLES) {
                by.us[by.n] = (uint32_t)(dt < 4e9 ? dt : 4e9);
                atomic_fetch_add(&by.n, 1);
            }
            by_lock_give();
        }
        usleep(1000); /* the pace of the calls, not a wait for anything */
    }
    return NULL;
}

static bool by_running(void *arg)
{
    return atomic_load(&by.running);
}

static void by_start(void)
{
    memset(&by, 0, sizeof(by));
    by.us = malloc(BY_MAX_SAMPLES * sizeof(*by.us));
    ck_assert_ptr_nonnull(by.us);
    by.fd = rc_open();
    ck_assert_int_ge(by.fd, 0);
    ck_assert_int_eq(pthread_create(&by.thread, NULL, by_run, NULL), 0);
    ck_assert(td_wait_until(by_running, NULL));
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static bool by_answered(void *arg)
{
    return atomic_load(&by.n) > 0 || by.failures > 0;
}

/* Stops the other client, once it had an answer. */
static void by_join(void)
{
    td_wait_until(by_answered, NULL);
    atomic_store(&by.stop, true);
    pthread_join(by.thread, NULL);
    close(by.fd);
}

/* Stops the other client (once it had an answer), prints its latency, and fails if any call
 * of it failed. */
static void by_stop(const char *during)
{
    by_join();
    qsort(by.us, by.n, sizeof(*by.us), cmp_u32);
    if (by.n)
        printf("test_hostile: %s: another client's GetStatus p50 %u us, p99 %u us, max %u us "
               "(%zu calls)\n",
            during, by.us[by.n / 2], by.us[by.n * 99 / 100], by.us[by.n - 1], by.n);
    fflush(stdout);
    free(by.us);
    by.us = NULL;
    ck_assert_msg(by.failures == 0, "%s: another client's GetStatus failed %u times (first: %ld)",
        during, by.failures, by.first_failure);
    ck_assert_uint_gt(by.n, 0);
}

/* ---- hostile clients as other uids, in child processes ---- */

#define MAX_CHILDREN 64
static pid_t children[MAX_CHILDREN];
static int nchildren;

/* Clients as other uids need root: without it, a test that runs them says so and passes. */
#define NEEDS_ROOT()                                                                       \
    do {                                                                                   \
        if (geteuid() != 0) {                                                              \
            printf("test_hostile: %s skipped: its clients run as other uids, which needs " \
                   "root\n",                                                               \
                __func__);                                                                 \
            return;                                                                        \
        }                                                                                  \
    } while (0)

/* Runs fn(arg) as uid in a child process; its exit status is fn's return value. */
static pid_t spawn_as(uid_t uid, int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(uid) != 0 || setuid(uid) != 0)
            _exit(100);
        _exit(fn(arg));
    }
    ck_assert_int_lt(nchildren, MAX_CHILDREN);
    children[nchildren++] = pid;
    return pid;
}

static int child_exit(pid_t pid)
{
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    for (int i = 0; i < nchildren; i++)
        if (children[i] == pid)
            children[i] = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 200 + WTERMSIG(status);
}

/* Memory the test and its children share (results, and flags each side waits on). */
static void *shared_new(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    return p;
}

/* A child's wait for a flag the test sets (polling; the test's own waits are bounded). */
static void child_wait_flag(atomic_int *flag, int value)
{
    while (atomic_load(flag) < value)
        usleep(1000);
}

static bool flag_reached(atomic_int *flag, int value)
{
    return atomic_load(flag) >= value;
}

struct flag_wait {
    atomic_int *flag;
    int value;
};

static bool flag_cond(void *arg)
{
    struct flag_wait *w = arg;
    return flag_reached(w->flag, w->value);
}

static bool wait_flag(atomic_int *flag, int value)
{
    struct flag_wait w = {flag, value};
    return td_wait_until(flag_cond, &w);
}

static void setup(void)
{
    nchildren = 0;
}

/*
 * Every test ends with a clean stop, and with every byte its clients made the daemon hold
 * given back to the memory budget exactly (it logs any difference).
 */
static void teardown(void)
{
    for (int i = 0; i < nchildren; i++)
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
        }
    bool running = td.pid > 0;
    int status = td_stop(&td);
    bool clean = !running || (WIFEXITED(status) && WEXITSTATUS(status) == 0);
    bool balanced = !td_log_contains(&td, "given back");
    td_cleanup(&td);
    ck_assert_msg(clean, "peerdistd did not stop cleanly (status %d)", status);
    ck_assert_msg(balanced, "the memory budget did not balance");
}

/* ---- bad frames: each closes its own connection only ---- */

static bool nothing_unread(void *arg)
{
    return td_unread(&td) == 0;
}

START_TEST(bad_frames_close_only_their_connection)
{
    start_daemon(NULL);
    by_start();
    /* A length header past the 4 MiB cap. */
    int fd = rc_open();
    ck_assert_int_ge(fd, 0);
    uint8_t big[4] = {0x7f, 0xff, 0xff, 0xff};
    ck_assert(rc_write_all(fd, big, 4));
    ck_assert(rc_closed_by_daemon(fd));
    close(fd);
    ck_assert(td_log_contains(&td, "exceeds"));
    /* Garbage that is no protobuf message. */
    fd = rc_open();
    uint8_t garbage[] = {0, 0, 0, 4, 0x0a, 0x7f, 0x01, 0x02};
    ck_assert(rc_write_all(fd, garbage, sizeof(garbage)));
    ck_assert(rc_closed_by_daemon(fd));
    close(fd);
    ck_assert(td_log_contains(&td, "undecodable frame"));
    /* A request before Hello, and a request with the reserved id 0. */
    fd = rc_connect();
    ck_assert_int_eq(rc_get_status(fd, 3), RC_EOF);
    close(fd);
    ck_assert(td_log_contains(&td, "request before Hello"));
    fd = rc_open();
    ck_assert_int_eq(rc_get_status(fd, 0), RC_EOF);
    close(fd);
    ck_assert(td_log_contains(&td, "request id 0"));
    /* Truncated: half a header, and half a frame, then gone. */
    fd = rc_open();
    ck_assert(rc_write_all(fd, "\0\0", 2));
    close(fd);
    fd = rc_open();
    uint8_t half[] = {0, 0, 0, 50, 0x08, 0x01, 0x1a};
    ck_assert(rc_write_all(fd, half, sizeof(half)));
    close(fd);
    /* A frame in two parts, the second once the daemon has read the first: answered once it is
     * whole. */
    fd = rc_open();
    uint8_t *f = padded_request(77, 200, true);
    ck_assert(rc_write_all(fd, f, 100));
    ck_assert(td_wait_until(nothing_unread, NULL));
    ck_assert(rc_write_all(fd, f + 100, 100));
    free(f);
    Peerdist__Reply *r = NULL;
    ck_assert_int_eq(rc_recv(fd, &r), 0);
    ck_assert_uint_eq(r->id, 77);
    ck_assert_uint_eq(r->status, ERROR_SUCCESS);
    peerdist__reply__free_unpacked(r, NULL);
    close(fd);
    fd = rc_open();
    ck_assert_int_eq(rc_get_status(fd, 5), ERROR_SUCCESS);
    close(fd);
    by_stop("bad frames");
}
END_TEST

/* Every kind of handle a request can name, none of which exists: a clear error each, the
 * connection stays. */
START_TEST(unknown_handles_are_refused)
{
    start_daemon(NULL);
    by_start();
    int fd = rc_open();
    ck_assert_int_ge(fd, 0);
    Peerdist__CloseContentRequest cc = PEERDIST__CLOSE_CONTENT_REQUEST__INIT;
    Peerdist__AddContentInfoRequest aci = PEERDIST__ADD_CONTENT_INFO_REQUEST__INIT;
    Peerdist__CompleteContentInfoRequest cci = PEERDIST__COMPLETE_CONTENT_INFO_REQUEST__INIT;
    Peerdist__AddDataRequest ad = PEERDIST__ADD_DATA_REQUEST__INIT;
    Peerdist__ReadRequest rd = PEERDIST__READ_REQUEST__INIT;
    Peerdist__CancelRequest cn = PEERDIST__CANCEL_REQUEST__INIT;
    Peerdist__CloseStreamRequest cs = PEERDIST__CLOSE_STREAM_REQUEST__INIT;
    Peerdist__PublishAddRequest pa = PEERDIST__PUBLISH_ADD_REQUEST__INIT;
    Peerdist__PublishCompleteRequest pc = PEERDIST__PUBLISH_COMPLETE_REQUEST__INIT;
    Peerdist__RetrieveContentInfoRequest rci = PEERDIST__RETRIEVE_CONTENT_INFO_REQUEST__INIT;
    Peerdist__CloseContentInfoRequest cli = PEERDIST__CLOSE_CONTENT_INFO_REQUEST__INIT;
    uint8_t byte = 1;
    cc.handle = aci.handle = cci.handle = ad.handle = rd.handle = cn.handle = 99;
    cs.stream = pa.stream = pc.stream = rci.handle = cli.handle = 99;
    aci.data.data = ad.data.data = pa.data.data = &byte;
    aci.data.len = ad.data.len = pa.data.len = 1;
    rd.max_bytes = rci.max_bytes = 100;
    cn.kind = PEERDIST__HANDLE_KIND__HANDLE_KIND_CONTENT;
    cn.request_id = 5;
    struct {
        int body;
        void *msg;
    } reqs[] = {
        {PEERDIST__REQUEST__BODY_CLOSE_CONTENT, &cc},
        {PEERDIST__REQUEST__BODY_ADD_CONTENT_INFO, &aci},
        {PEERDIST__REQUEST__BODY_COMPLETE_CONTENT_INFO, &cci},
        {PEERDIST__REQUEST__BODY_ADD_DATA, &ad},
        {PEERDIST__REQUEST__BODY_READ, &rd},
        {PEERDIST__REQUEST__BODY_CANCEL, &cn},
        {PEERDIST__REQUEST__BODY_CLOSE_STREAM, &cs},
        {PEERDIST__REQUEST__BODY_PUBLISH_ADD, &pa},
        {PEERDIST__REQUEST__BODY_PUBLISH_COMPLETE, &pc},
        {PEERDIST__REQUEST__BODY_RETRIEVE_CONTENT_INFO, &rci},
        {PEERDIST__REQUEST__BODY_CLOSE_CONTENT_INFO, &cli},
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.id = 10 + i;
        req.body_case = reqs[i].body;
        req.close_content = reqs[i].msg; /* one pointer of the oneof: any member will do */
        ck_assert_msg(rc_call(fd, &req, NULL) == ERROR_INVALID_HANDLE, "request body %d",
            reqs[i].body);
    }
    ck_assert_int_eq(rc_get_status(fd, 50), ERROR_SUCCESS);
    close(fd);
    by_stop("unknown handles");
}
END_TEST

/* ---- what one frame may cost ---- */

/* A newer client's request types: a clear error, the connection kept, whatever their size. */
START_TEST(unknown_request_types_get_not_implemented)
{
    start_daemon(NULL);
    int fd = rc_open();
    ck_assert_int_ge(fd, 0);
    uint8_t small[] = {0, 0, 0, 5, 0x08, 0x07, 0xe2, 0x03, 0x00};
    ck_assert(rc_write_all(fd, small, sizeof(small)));
    Peerdist__Reply *r = NULL;
    ck_assert_int_eq(rc_recv(fd, &r), 0);
    ck_assert_uint_eq(r->id, 7);
    ck_assert_uint_eq(r->status, ERROR_CALL_NOT_IMPLEMENTED);
    peerdist__reply__free_unpacked(r, NULL);
    /* The largest frame there is, one unknown field of it. */
    uint8_t *f = padded_request(8, BIG_FRAME, false);
    ck_assert(rc_write_all(fd, f, BIG_FRAME));
    free(f);
    ck_assert_int_eq(rc_recv(fd, &r), 0);
    ck_assert_uint_eq(r->id, 8);
    ck_assert_uint_eq(r->status, ERROR_CALL_NOT_IMPLEMENTED);
    peerdist__reply__free_unpacked(r, NULL);
    ck_assert_int_eq(rc_get_status(fd, 9), ERROR_SUCCESS);
    close(fd);
}
END_TEST

/* A 4 MiB frame of 1.4 million 3-byte unknown fields: a frame ~30 times its size to decode. */
static uint8_t *many_fields_frame(uint64_t id)
{
    uint8_t *f = malloc(BIG_FRAME), *p = f + FRAME_HEADER_SIZE;
    *p++ = 0x08;
    put_varint(&p, id);
    while (p + 3 <= f + BIG_FRAME) {
        *p++ = 0xe0; /* field 60, varint 0 */
        *p++ = 0x03;
        *p++ = 0x00;
    }
    uint32_t payload = (uint32_t)(p - f - FRAME_HEADER_SIZE);
    f[0] = (uint8_t)(payload >> 24);
    f[1] = (uint8_t)(payload >> 16);
    f[2] = (uint8_t)(payload >> 8);
    f[3] = (uint8_t)payload;
    return f;
}

#define FIELD_SENDERS 4
#define FIELD_FRAMES 6

static void *send_many_fields(void *arg)
{
    uint8_t *f = arg;
    uint32_t len = frame_header_length(f) + FRAME_HEADER_SIZE;
    intptr_t closed = 0;
    for (int i = 0; i < FIELD_FRAMES; i++) {
        int fd = rc_open();
        if (fd < 0)
            break;
        if (rc_write_all(fd, f, len) && rc_closed_by_daemon(fd))
            closed++;
        close(fd);
    }
    return (void *)closed;
}

/*
 * Decoding is bounded by what the frame may allocate: such a frame is refused and its
 * connection closed, the daemon's peak memory stays near where it was, and another client
 * is answered throughout (four senders at once; its latency is printed).
 */
START_TEST(frame_that_costs_memory_to_decode_is_refused)
{
    start_daemon(NULL);
    long hwm_before = daemon_status_kib("VmHWM");
    by_start();
    uint8_t *f = many_fields_frame(7);
    pthread_t t[FIELD_SENDERS];
    for (int i = 0; i < FIELD_SENDERS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, send_many_fields, f), 0);
    intptr_t closed = 0;
    for (int i = 0; i < FIELD_SENDERS; i++) {
        void *n;
        pthread_join(t[i], &n);
        closed += (intptr_t)n;
    }
    free(f);
    by_stop("4 clients sending 4 MiB frames of 1.4 million fields");
    ck_assert_int_eq(closed, FIELD_SENDERS * FIELD_FRAMES);
    ck_assert(td_log_contains(&td, "to decode"));
    long grew = daemon_status_kib("VmHWM") - hwm_before;
    printf("test_hostile: peak memory grew %ld KiB over %d such frames\n", grew,
        FIELD_SENDERS * FIELD_FRAMES);
#ifndef PEERDIST_SANITIZE /* ASan's quarantine and shadow memory keep freed memory resident */
    ck_assert_int_lt(grew, 64 * 1024);
#endif
    int fd = rc_open();
    ck_assert_int_eq(rc_get_status(fd, 2), ERROR_SUCCESS);
    close(fd);
}
END_TEST

/* ---- clients that never read ---- */

struct never_read {
    int conns;
    atomic_int stopped; /* connections the daemon stopped reading */
    atomic_int asks;    /* the child's socket is full: has the daemon stopped reading it? */
    atomic_int answers; /* the test's answers (td_loop_idle needs the daemon's uid or root) */
    atomic_int idle;
    atomic_int done; /* the test has measured: exit */
    long sent;
};

/* One uid, many connections, each sending DaemonInfo requests and never reading a reply. */
static int never_read_child(void *arg)
{
    struct never_read *nr = arg;
    Peerdist__DaemonInfoRequest di = PEERDIST__DAEMON_INFO_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_DAEMON_INFO;
    req.daemon_info = &di;
    static uint8_t burst[64 * 1024];
    size_t n = 0;
    for (req.id = 1; n + frame_size(&req.base) <= sizeof(burst); req.id++)
        n += frame_pack(&req.base, burst + n);
    for (int i = 0; i < nr->conns; i++) {
        int fd = rc_open();
        if (fd < 0)
            return 1;
        fcntl(fd, F_SETFL, O_NONBLOCK);
        /* Until the socket is full and the daemon's loop sleeps with our requests unread. */
        bool stopped = false;
        size_t off = 0;
        while (!stopped) {
            ssize_t w = write(fd, burst + off, n - off);
            if (w > 0) {
                nr->sent += w;
                off = (off + (size_t)w) % n;
                continue;
            }
            if (errno != EAGAIN)
                return 2;
            struct pollfd room = {.fd = fd, .events = POLLOUT};
            if (poll(&room, 1, 1) != 0)
                continue;
            int ask = atomic_fetch_add(&nr->asks, 1) + 1;
            child_wait_flag(&nr->answers, ask);
            stopped = atomic_load(&nr->idle);
        }
        atomic_fetch_add(&nr->stopped, 1);
    }
    child_wait_flag(&nr->done, 1);
    return 0;
}

static bool never_read_asks(void *arg)
{
    struct never_read *nr = arg;
    return atomic_load(&nr->asks) > atomic_load(&nr->answers) ||
        atomic_load(&nr->stopped) == nr->conns;
}

/*
 * The replies a uid's clients leave unread count against the memory budget: 16 connections
 * that never read stop being read once their uid holds its share (half of a 64 MiB budget),
 * not at 4 MiB each (64 MiB).
 */
START_TEST(clients_that_never_read_are_bounded_per_uid)
{
    NEEDS_ROOT();
    start_daemon("memory_budget = 64M\n");
    long rss_before = daemon_status_kib("VmRSS");
    by_start();
    struct never_read *nr = shared_new(sizeof(*nr));
    nr->conns = 16;
    pid_t pid = spawn_as(UID_A, never_read_child, nr);
    /* Each time the child's socket is full: is the daemon's loop asleep with it unread? */
    while (atomic_load(&nr->stopped) < nr->conns) {
        ck_assert_msg(td_wait_until(never_read_asks, nr), "the child neither asks nor is done");
        if (atomic_load(&nr->asks) > atomic_load(&nr->answers)) {
            atomic_store(&nr->idle, td_loop_idle(&td));
            atomic_fetch_add(&nr->answers, 1);
        }
        ck_assert_msg(nr->sent < 64L * 1024 * 1024 * nr->conns, "the daemon kept reading");
    }
    long grew = daemon_status_kib("VmRSS") - rss_before;
    printf("test_hostile: 16 connections that never read: %ld bytes sent, daemon RSS +%ld KiB\n",
        nr->sent, grew);
    ck_assert(td_log_contains(&td, "not reading"));
#ifndef PEERDIST_SANITIZE
    ck_assert_int_lt(grew, 56 * 1024);
#endif
    /* Other clients are served, and can be sent replies. */
    int fd = rc_open();
    ck_assert_int_ge(daemon_connections(fd), 17);
    close(fd);
    atomic_store(&nr->done, 1);
    ck_assert_int_eq(child_exit(pid), 0);
    by_stop("16 connections that never read");
}
END_TEST

/* ---- connections that never say Hello ---- */

/*
 * A connection must complete its Hello within hello_timeout and may not stay silent before it
 * for hello_idle_timeout: a silent one and one that drips a byte at a time are closed, with a
 * log line each; one that said Hello stays.
 */
START_TEST(connections_without_hello_are_closed)
{
    start_daemon("hello_timeout = 2\nhello_idle_timeout = 1\n");
    by_start();
    int ok = rc_open();
    ck_assert_int_ge(ok, 0);
    int silent = rc_connect();
    int drip = rc_connect();
    uint8_t hello[128];
    Peerdist__Hello h = PEERDIST__HELLO__INIT;
    h.software = "a client that takes its time, one byte at a time";
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.id = 1;
    req.body_case = PEERDIST__REQUEST__BODY_HELLO;
    req.hello = &h;
    ck_assert_uint_le(frame_size(&req.base), sizeof(hello));
    size_t n = frame_pack(&req.base, hello);
    /* One byte every 400 ms, never the last one (~25 s in all): never silent for a second,
     * never done. */
    bool drip_closed = false;
    for (size_t i = 0; !drip_closed; i++) {
        ck_assert_msg(i + 1 < n, "a dripping Hello was never cut off");
        drip_closed = write(drip, hello + i, 1) != 1;
        struct pollfd p = {.fd = drip, .events = POLLIN};
        if (!drip_closed && poll(&p, 1, 400) == 1)
            drip_closed = rc_closed_by_daemon(drip);
    }
    ck_assert(rc_closed_by_daemon(silent));
    ck_assert(td_log_contains(&td, "no Hello within 2 s"));
    ck_assert(td_log_contains(&td, "silent for 1 s"));
    ck_assert_int_eq(rc_get_status(ok, 9), ERROR_SUCCESS);
    close(ok);
    close(silent);
    close(drip);
    by_stop("connections without Hello");
}
END_TEST

/* ---- connection slots ---- */

struct slots {
    int conns;          /* to open */
    bool hello;         /* say Hello on each */
    atomic_int ok;      /* accepted (Hello answered 0, or open when no Hello is sent) */
    atomic_int refused; /* Hello answered ERROR_REQ_NOT_ACCEP, then closed */
    atomic_int dropped; /* closed without an answer */
    atomic_int other;
    atomic_int done;
    atomic_int finished;
};

static int slots_child(void *arg)
{
    struct slots *s = arg;
    int *fds = calloc((size_t)s->conns, sizeof(int));
    for (int i = 0; i < s->conns; i++) {
        int fd = fds[i] = rc_connect();
        if (fd < 0) {
            atomic_fetch_add(&s->other, 1);
            continue;
        }
        if (!s->hello) {
            /* Open and silent: closed at once if the daemon refused it. */
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 0) == 1 && rc_closed_by_daemon(fd))
                atomic_fetch_add(&s->dropped, 1);
            else
                atomic_fetch_add(&s->ok, 1);
            continue;
        }
        long st = rc_hello(fd);
        if (st == ERROR_SUCCESS) {
            atomic_fetch_add(&s->ok, 1);
        } else if (st == ERROR_REQ_NOT_ACCEP && rc_closed_by_daemon(fd)) {
            atomic_fetch_add(&s->refused, 1);
        } else if (st == RC_EOF) {
            atomic_fetch_add(&s->dropped, 1);
        } else {
            atomic_fetch_add(&s->other, 1);
        }
    }
    atomic_store(&s->finished, 1);
    child_wait_flag(&s->done, 1);
    return 0;
}

/*
 * One unprivileged uid gets max_connections_per_uid (256) connections; the rest get their Hello
 * answered ERROR_REQ_NOT_ACCEP and are closed, with a (rate-limited) log line. Another uid and
 * root still connect. 1,100 connections without Hello take no more.
 */
START_TEST(one_uid_cannot_take_every_slot)
{
    NEEDS_ROOT();
    start_daemon(NULL);
    by_start();
    struct slots *a = shared_new(sizeof(*a));
    a->conns = 300;
    a->hello = true;
    double t0 = now_us();
    pid_t pa = spawn_as(UID_A, slots_child, a);
    ck_assert(wait_flag(&a->finished, 1));
    double seconds = (now_us() - t0) / 1e6;
    ck_assert_int_eq(a->ok, 256);
    ck_assert_int_eq(a->refused, 44);
    ck_assert_int_eq(a->dropped + a->other, 0);
    /* Logged, at most 5 lines a second (one per refusal would be 44). */
    int lines = td_log_count(&td, "max_connections_per_uid");
    printf("test_hostile: 44 refusals in %.1f s: %d log lines\n", seconds, lines);
    ck_assert_int_ge(lines, 1);
    ck_assert_int_le(lines, 5 * ((int)seconds + 2));
    /* The same uid again, 1,100 connections and no Hello: none more accepted. */
    struct slots *a2 = shared_new(sizeof(*a2));
    a2->conns = 1100;
    pid_t pa2 = spawn_as(UID_A, slots_child, a2);
    ck_assert(wait_flag(&a2->finished, 1));
    int fd = rc_open();
    long conns = daemon_connections(fd);
    ck_assert_int_eq(conns, 256 + 2); /* uid A's, the other client's, this one */
    /* Another uid, and root. */
    struct slots *b = shared_new(sizeof(*b));
    b->conns = 10;
    b->hello = true;
    pid_t pb = spawn_as(UID_B, slots_child, b);
    ck_assert(wait_flag(&b->finished, 1));
    ck_assert_int_eq(b->ok, 10);
    ck_assert_int_eq(rc_get_status(fd, 5), ERROR_SUCCESS);
    close(fd);
    atomic_store(&a->done, 1);
    atomic_store(&a2->done, 1);
    atomic_store(&b->done, 1);
    ck_assert_int_eq(child_exit(pa), 0);
    ck_assert_int_eq(child_exit(pa2), 0);
    ck_assert_int_eq(child_exit(pb), 0);
    by_stop("one uid taking connection slots");
}
END_TEST

/*
 * max_connections 40 keeps 10 for root and group peerdist: unprivileged uids get 30 (the other
 * client, root, has one of them), root the rest; past max_connections root too is refused
 * with a clear error.
 */
START_TEST(root_keeps_a_reserve)
{
    NEEDS_ROOT();
    start_daemon("max_connections = 40\n");
    by_start(); /* root: one connection */
    struct slots *a = shared_new(sizeof(*a)), *b = shared_new(sizeof(*b));
    a->conns = b->conns = 20;
    a->hello = b->hello = true;
    pid_t pa = spawn_as(UID_A, slots_child, a);
    ck_assert(wait_flag(&a->finished, 1));
    pid_t pb = spawn_as(UID_B, slots_child, b);
    ck_assert(wait_flag(&b->finished, 1));
    ck_assert_int_eq(a->ok + b->ok, 29); /* 30 but the reserve's 10, the other client's 1 */
    ck_assert_int_eq(a->refused + b->refused, 11);
    int fds[10];
    for (int i = 0; i < 10; i++) {
        fds[i] = rc_connect();
        ck_assert_int_eq(rc_hello(fds[i]), ERROR_SUCCESS);
    }
    int last = rc_connect();
    ck_assert_int_eq(rc_hello(last), ERROR_REQ_NOT_ACCEP);
    ck_assert(rc_closed_by_daemon(last));
    close(last);
    ck_assert(td_log_contains(&td, "max_connections"));
    for (int i = 0; i < 10; i++)
        close(fds[i]);
    atomic_store(&a->done, 1);
    atomic_store(&b->done, 1);
    ck_assert_int_eq(child_exit(pa), 0);
    ck_assert_int_eq(child_exit(pb), 0);
    by_stop("a full daemon");
}
END_TEST

/* td_start with RLIMIT_NOFILE set to n (soft and hard) for the daemon only. */
static void start_daemon_nofile(rlim_t n)
{
    td_init(&td, "local");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct rlimit rl = {n, n};
        int fd = open(td.log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || dup2(fd, 2) < 0 || dup2(fd, 1) < 0 || setrlimit(RLIMIT_NOFILE, &rl) != 0)
            _exit(126);
        execl(PEERDISTD_PATH, "peerdistd", "--socket", td.sock, "--db", td.db, "--config", td.conf,
            (char *)NULL);
        _exit(127);
    }
    td.pid = pid;
    int fd = -1;
    for (int i = 0; i < TD_WAIT_MS && (fd = rc_connect()) < 0; i++) {
        ck_assert_msg(waitpid(pid, NULL, WNOHANG) == 0, "peerdistd exited at start-up");
        usleep(1000);
    }
    ck_assert_int_ge(fd, 0);
    close(fd);
}

/*
 * With 256 descriptors, max_connections (1024) is lowered to what they allow, with a log line;
 * the connection past it is answered ERROR_REQ_NOT_ACCEP, not left hanging.
 */
START_TEST(max_connections_fits_the_descriptor_limit)
{
    start_daemon_nofile(256);
    ck_assert(td_log_contains(&td, "max_connections 1024 lowered to 168"));
    by_start();
    int fds[200], n = 0;
    long st;
    for (;;) {
        ck_assert_int_lt(n, 200);
        fds[n] = rc_connect();
        ck_assert_int_ge(fds[n], 0);
        st = rc_hello(fds[n]);
        if (st != ERROR_SUCCESS)
            break;
        n++;
    }
    ck_assert_int_eq(st, ERROR_REQ_NOT_ACCEP);
    ck_assert_int_eq(n + 1, 168); /* with the other client's */
    for (int i = 0; i <= n; i++)
        close(fds[i]);
    by_stop("a daemon with 256 descriptors");
}
END_TEST

static int open_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    int n = 0;
    FILE *p;
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "ls %s | wc -l", path);
    ck_assert_ptr_nonnull(p = popen(cmd, "r"));
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static bool accept_logged_twice(void *arg)
{
    return td_log_count(&td, "accept: Too many open files") >= 2;
}

/*
 * Out of descriptors, the daemon stops accepting and tries again a second later, one log line
 * each time, instead of spinning on accept; once descriptors are free, waiting clients are
 * served.
 */
START_TEST(out_of_descriptors_pauses_accepting)
{
    start_daemon(NULL);
    by_start();
    struct rlimit was, low;
    ck_assert_int_eq(prlimit(td.pid, RLIMIT_NOFILE, NULL, &was), 0);
    low.rlim_cur = (rlim_t)open_fds(td.pid) + 2;
    low.rlim_max = was.rlim_max;
    ck_assert_int_eq(prlimit(td.pid, RLIMIT_NOFILE, &low, NULL), 0);
    int fds[6];
    for (int i = 0; i < 6; i++) {
        fds[i] = rc_connect();
        ck_assert_int_ge(fds[i], 0);
    }
    double t0 = now_us();
    ck_assert(td_wait_until(accept_logged_twice, NULL));
    double seconds = (now_us() - t0) / 1e6;
    int lines = td_log_count(&td, "accept: Too many open files");
    printf("test_hostile: out of descriptors for %.1f s: %d log lines\n", seconds, lines);
    ck_assert_int_le(lines, (int)seconds + 3);
    ck_assert_int_eq(prlimit(td.pid, RLIMIT_NOFILE, &was, NULL), 0);
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(rc_hello(fds[i]), ERROR_SUCCESS);
        close(fds[i]);
    }
    by_stop("a daemon out of descriptors");
}
END_TEST

/* ---- forking beside the other client ---- */

/* Before by_lock, under ASan, about one fork in 50 right after by_start hung its child (one
 * run of 200 forks almost always did); glibc's malloc is safe across fork(), so elsewhere a
 * few forks do. */
#ifdef PEERDIST_SANITIZE
#define FORKS 200
#else
#define FORKS 20
#endif

/* Allocations and frees of many sizes, many of each: a child that inherited an allocator lock
 * another thread of the test held at the fork waits for it here for ever. */
static int allocating_child(void)
{
    static void *p[512];
    for (size_t n = 16; n <= 64 * KiB; n += n / 4) {
        size_t k = 256 * KiB / n < 64 ? 64 : 256 * KiB / n > 512 ? 512 : 256 * KiB / n;
        for (size_t i = 0; i < k; i++)
            if (!(p[i] = malloc(n)))
                return 1;
        for (size_t i = 0; i < k; i++)
            free(p[i]);
    }
    return 0;
}

struct exited {
    pid_t pid;
    int status;
};

static bool child_exited(void *arg)
{
    struct exited *e = arg;
    return waitpid(e->pid, &e->status, WNOHANG) == e->pid;
}

/*
 * Every test forks its hostile clients while the other client's thread calls (by_run): a
 * child forked while that thread was inside malloc or free still allocates (by_lock), where
 * under ASan it hung for ever on the allocator lock it inherited held.
 */
START_TEST(children_forked_beside_the_other_client_can_allocate)
{
    start_daemon(NULL);
    for (int i = 0; i < FORKS; i++) {
        /* A thread just started allocates from the shared allocator for each size it needs
         * (later, mostly from its own cache): forks at that moment are the ones at risk. */
        by_start();
        fflush(NULL);
        struct exited e = {fork(), -1};
        ck_assert_int_ge(e.pid, 0);
        if (e.pid == 0)
            _exit(allocating_child());
        bool exited = td_wait_until(child_exited, &e);
        if (!exited) {
            kill(e.pid, SIGKILL);
            waitpid(e.pid, NULL, 0);
        }
        ck_assert_msg(exited, "child %d of %d did not finish its allocations", i + 1, FORKS);
        ck_assert(WIFEXITED(e.status));
        ck_assert_int_eq(WEXITSTATUS(e.status), 0);
        by_join();
        ck_assert_uint_eq(by.failures, 0);
        free(by.us);
        by.us = NULL;
    }
}
END_TEST

/* ---- the memory budget ---- */

struct greedy {
    size_t stop_at;
    bool then_publish;  /* once refused: fill the rest in 32 KiB pieces, then publish */
    atomic_int holding; /* set once refused (or stop_at reached) */
    atomic_int release;
    size_t accepted;
    int refused;
    long error;
    long publish_status; /* of a 32 KiB PublishAddToStream part, the uid at its share */
};

/* Once the uid is at its share: a stream takes no part (the memory budget counts the bytes
 * queued for hashing too). */
static long greedy_publish(int fd, uint64_t *id)
{
    Peerdist__PublishStreamRequest ps = PEERDIST__PUBLISH_STREAM_REQUEST__INIT;
    ps.content_id.data = (uint8_t *)"greedy";
    ps.content_id.len = 6;
    ps.version = 1;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.id = ++*id;
    req.body_case = PEERDIST__REQUEST__BODY_PUBLISH_STREAM;
    req.publish_stream = &ps;
    Peerdist__Reply *r = NULL;
    long st = rc_call(fd, &req, &r);
    if (st != ERROR_SUCCESS)
        return 1000 + st;
    static uint8_t part[32 * 1024];
    Peerdist__PublishAddRequest pa = PEERDIST__PUBLISH_ADD_REQUEST__INIT;
    pa.stream = r->publish_stream->stream;
    peerdist__reply__free_unpacked(r, NULL);
    pa.data.data = part;
    pa.data.len = sizeof(part);
    req.id = ++*id;
    req.body_case = PEERDIST__REQUEST__BODY_PUBLISH_ADD;
    req.publish_add = &pa;
    return rc_call(fd, &req, NULL);
}

#define GREEDY_CONNS 4
#define GREEDY_HANDLES 4

/* Content information fed 1 MiB at a time over 4 connections, 4 handles each, until refused. */
static int greedy_child(void *arg)
{
    struct greedy *g = arg;
    int fds[GREEDY_CONNS];
    uint64_t handles[GREEDY_CONNS][GREEDY_HANDLES], id = 10;
    uint8_t *chunk = calloc(1, MiB), *first = calloc(1, MiB);
    /* A V1 header (version 1.0, SHA-256): the rest is only judged at Complete. */
    const uint8_t v1[] = {0x00, 0x01, 0x0c, 0x80, 0x00, 0x00};
    memcpy(first, v1, sizeof(v1));
    for (int c = 0; c < GREEDY_CONNS; c++) {
        if ((fds[c] = rc_open()) < 0)
            return 1;
        for (int k = 0; k < GREEDY_HANDLES; k++) {
            uint8_t tag[16] = {(uint8_t)c, (uint8_t)k};
            Peerdist__OpenContentRequest oc = PEERDIST__OPEN_CONTENT_REQUEST__INIT;
            oc.tag.data = tag;
            oc.tag.len = sizeof(tag);
            Peerdist__Request req = PEERDIST__REQUEST__INIT;
            req.id = ++id;
            req.body_case = PEERDIST__REQUEST__BODY_OPEN_CONTENT;
            req.open_content = &oc;
            Peerdist__Reply *r = NULL;
            if (rc_call(fds[c], &req, &r) != ERROR_SUCCESS)
                return 2;
            handles[c][k] = r->open_content->handle;
            peerdist__reply__free_unpacked(r, NULL);
        }
    }
    for (int round = 0; !g->refused && g->accepted < g->stop_at; round++) {
        for (int c = 0; c < GREEDY_CONNS && !g->refused && g->accepted < g->stop_at; c++) {
            for (int k = 0; k < GREEDY_HANDLES && !g->refused; k++) {
                Peerdist__AddContentInfoRequest a = PEERDIST__ADD_CONTENT_INFO_REQUEST__INIT;
                a.handle = handles[c][k];
                a.data.data = round == 0 ? first : chunk;
                a.data.len = MiB;
                Peerdist__Request req = PEERDIST__REQUEST__INIT;
                req.id = ++id;
                req.body_case = PEERDIST__REQUEST__BODY_ADD_CONTENT_INFO;
                req.add_content_info = &a;
                long st = rc_call(fds[c], &req, NULL);
                if (st == ERROR_SUCCESS)
                    g->accepted += MiB;
                else if (st == ERROR_NOT_ENOUGH_MEMORY)
                    g->refused = 1;
                else
                    return g->error = st, 3;
            }
        }
    }
    for (int k = 0; g->then_publish && k < GREEDY_HANDLES; k++) {
        for (long st = ERROR_SUCCESS; st == ERROR_SUCCESS;) {
            Peerdist__AddContentInfoRequest a = PEERDIST__ADD_CONTENT_INFO_REQUEST__INIT;
            a.handle = handles[0][k];
            a.data.data = chunk;
            a.data.len = 32 * 1024;
            Peerdist__Request req = PEERDIST__REQUEST__INIT;
            req.id = ++id;
            req.body_case = PEERDIST__REQUEST__BODY_ADD_CONTENT_INFO;
            req.add_content_info = &a;
            st = rc_call(fds[0], &req, NULL);
            if (st == ERROR_SUCCESS)
                g->accepted += a.data.len;
            else if (st != ERROR_NOT_ENOUGH_MEMORY)
                return g->error = st, 4;
        }
    }
    if (g->then_publish)
        g->publish_status = greedy_publish(fds[1], &id);
    atomic_store(&g->holding, 1);
    child_wait_flag(&g->release, 1);
    return 0;
}

/*
 * memory_budget 64 MiB: a uid feeding content information is refused
 * (ERROR_NOT_ENOUGH_MEMORY) at half of it, a second uid at half of what is left; a third
 * client is not refused anything, and what a uid held is returned when it goes.
 */
START_TEST(content_information_is_bounded_per_uid)
{
    NEEDS_ROOT();
    start_daemon("memory_budget = 64M\n");
    by_start();
    struct greedy *a = shared_new(sizeof(*a)), *b = shared_new(sizeof(*b)),
                  *c = shared_new(sizeof(*c));
    a->stop_at = b->stop_at = c->stop_at = 48 * MiB;
    a->then_publish = true;
    pid_t pa = spawn_as(UID_A, greedy_child, a);
    ck_assert(wait_flag(&a->holding, 1));
    printf("test_hostile: uid A fed %zu KiB of content information before "
           "ERROR_NOT_ENOUGH_MEMORY\n",
        a->accepted / KiB);
    ck_assert_msg(a->refused, "uid A fed %zu MiB and was not refused", a->accepted / MiB);
    ck_assert_int_eq(a->error, 0);
    ck_assert_uint_ge(a->accepted, 30 * MiB);
    ck_assert_uint_le(a->accepted, 32 * MiB);
    ck_assert_int_eq(a->publish_status, ERROR_NOT_ENOUGH_MEMORY);
    ck_assert(td_log_contains(&td, "memory budget"));
    pid_t pb = spawn_as(UID_B, greedy_child, b);
    ck_assert(wait_flag(&b->holding, 1));
    printf("test_hostile: then uid B fed %zu MiB\n", b->accepted / MiB);
    ck_assert(b->refused);
    ck_assert_uint_ge(b->accepted, 10 * MiB);
    ck_assert_uint_le(b->accepted, 16 * MiB);
    /* Root, through the library: a content handle, its content information, AddData. */
    size_t len = 200 * KiB;
    uint8_t *data = api_make_content(len, 3);
    struct api_ci ci;
    struct ci_secret ks;
    ck_assert_int_eq(ci_secret_from_passphrase(CI_HASH_SHA256, "k", 1, &ks), 0);
    struct ci_gen *gen = ci_gen_new(CI_VERSION_1, &ks);
    ck_assert_int_eq(ci_gen_feed(gen, data, len), 0);
    ck_assert_int_eq(ci_gen_finish(gen, &ci.info), 0);
    ci_gen_free(gen);
    ck_assert_int_eq(ci_serialize(ci.info, &ci.bytes, &ci.len), 0);
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    PEERDIST_CONTENT_TAG tag = api_make_tag(9);
    PEERDIST_CONTENT_HANDLE ch = api_open_with_ci(h, &tag, &ci);
    DWORD accepted;
    ck_assert_uint_eq(api_add_data(h, ch, 0, data, (DWORD)len, &accepted), ERROR_SUCCESS);
    ck_assert_uint_eq(accepted, len);
    PeerDistClientCloseContent(h, ch);
    /* And publishes, and reads the content information back. */
    api_publish(h, "root's", data, len, 2, NULL, 0);
    size_t cilen;
    free(api_get_ci(h, "root's", 0, 0, NULL, &cilen));
    ck_assert_uint_gt(cilen, 0);
    PeerDistShutdown(h);
    api_ci_free(&ci);
    free(data);
    /* uid A goes: its half comes back, and a third uid gets half of what B leaves. */
    atomic_store(&a->release, 1);
    ck_assert_int_eq(child_exit(pa), 0);
    pid_t pc = spawn_as(UID_C, greedy_child, c);
    ck_assert(wait_flag(&c->holding, 1));
    printf("test_hostile: after uid A left, uid C fed %zu MiB\n", c->accepted / MiB);
    ck_assert(c->refused);
    ck_assert_uint_ge(c->accepted, 20 * MiB);
    atomic_store(&b->release, 1);
    atomic_store(&c->release, 1);
    ck_assert_int_eq(child_exit(pb), 0);
    ck_assert_int_eq(child_exit(pc), 0);
    by_stop("uids taking the memory budget");
}
END_TEST

#define PARTIAL_CONNS 10

struct partial {
    atomic_int in; /* every partial frame is with the daemon */
    atomic_int go; /* finish them */
    atomic_int done;
    long extra_status; /* the 11th connection's whole frame */
    int ok, refused;
    long other;
};

/* 10 connections each send all but the last byte of a 4 MiB frame, an 11th a whole one. */
static int partial_child(void *arg)
{
    struct partial *p = arg;
    int fds[PARTIAL_CONNS + 1];
    for (int i = 0; i <= PARTIAL_CONNS; i++)
        if ((fds[i] = rc_open()) < 0)
            return 1;
    uint8_t *f[PARTIAL_CONNS + 1];
    for (int i = 0; i <= PARTIAL_CONNS; i++)
        f[i] = padded_request(100 + i, BIG_FRAME, true);
    for (int i = 0; i < PARTIAL_CONNS; i++)
        if (!rc_write_all(fds[i], f[i], BIG_FRAME - 1))
            return 2;
    for (int waited = 0; td_unread(&td) > 0; waited++) { /* the daemon has read them all */
        if (waited > TD_WAIT_MS)
            return 3;
        usleep(1000);
    }
    if (!rc_write_all(fds[PARTIAL_CONNS], f[PARTIAL_CONNS], BIG_FRAME))
        return 4;
    Peerdist__Reply *r = NULL;
    p->extra_status = rc_recv(fds[PARTIAL_CONNS], &r) == 0 ? (long)r->status : -1;
    atomic_store(&p->in, 1);
    child_wait_flag(&p->go, 1);
    for (int i = 0; i < PARTIAL_CONNS; i++) {
        if (!rc_write_all(fds[i], f[i] + BIG_FRAME - 1, 1) || rc_recv(fds[i], &r) != 0)
            return 5;
        if (r->status == ERROR_SUCCESS && r->body_case == PEERDIST__REPLY__BODY_GET_STATUS)
            p->ok++;
        else if (r->status == ERROR_NOT_ENOUGH_MEMORY && r->id == (uint64_t)(100 + i))
            p->refused++;
        else
            p->other = r->status;
    }
    atomic_store(&p->done, 1);
    return 0;
}

/*
 * Frames still arriving count against the memory budget: past its uid's share, a large frame
 * is read and dropped and answered ERROR_NOT_ENOUGH_MEMORY, its connection kept; root's 4 MiB
 * frame meanwhile is served.
 */
START_TEST(partial_frames_are_bounded_per_uid)
{
    NEEDS_ROOT();
    start_daemon("memory_budget = 64M\n");
    by_start();
    struct partial *p = shared_new(sizeof(*p));
    pid_t pid = spawn_as(UID_A, partial_child, p);
    ck_assert(wait_flag(&p->in, 1));
    ck_assert_int_eq(p->extra_status, ERROR_NOT_ENOUGH_MEMORY);
    int fd = rc_open();
    uint8_t *f = padded_request(5, BIG_FRAME, true);
    ck_assert(rc_write_all(fd, f, BIG_FRAME));
    free(f);
    Peerdist__Reply *r = NULL;
    ck_assert_int_eq(rc_recv(fd, &r), 0);
    ck_assert_uint_eq(r->status, ERROR_SUCCESS);
    ck_assert_int_eq(r->body_case, PEERDIST__REPLY__BODY_GET_STATUS);
    peerdist__reply__free_unpacked(r, NULL);
    close(fd);
    atomic_store(&p->go, 1);
    ck_assert_int_eq(child_exit(pid), 0);
    printf("test_hostile: 10 partial 4 MiB frames of one uid: %d served, %d refused\n", p->ok,
        p->refused);
    ck_assert_int_eq(p->other, 0);
    ck_assert_int_ge(p->ok, 6);
    ck_assert_int_le(p->ok, 7);
    ck_assert_int_eq(p->ok + p->refused, PARTIAL_CONNS);
    ck_assert(td_log_contains(&td, "memory budget"));
    by_stop("partial frames");
}
END_TEST

/* ---- 10,000 idle connections ---- */

#define IDLE_UIDS 40
#define IDLE_PER_UID 250
#define IDLE_SILENT 50 /* of each uid's connections, never say Hello */

struct idle {
    atomic_int ready;         /* children with every connection open */
    atomic_int silent_closed; /* children whose silent connections the daemon closed */
    atomic_int done;
    atomic_int failed;
};

static int idle_child(void *arg)
{
    struct idle *s = arg;
    int fds[IDLE_PER_UID];
    for (int i = 0; i < IDLE_PER_UID; i++) {
        bool silent = i >= IDLE_PER_UID - IDLE_SILENT; /* last, so their clocks start last */
        fds[i] = silent ? rc_connect() : rc_open();
        if (fds[i] < 0) {
            atomic_fetch_add(&s->failed, 1);
            return 1;
        }
    }
    atomic_fetch_add(&s->ready, 1);
    for (int i = IDLE_PER_UID - IDLE_SILENT; i < IDLE_PER_UID; i++)
        if (!rc_closed_by_daemon(fds[i]))
            return 2;
    atomic_fetch_add(&s->silent_closed, 1);
    child_wait_flag(&s->done, 1);
    return 0;
}

struct conns_at_least {
    int fd;
    long n;
};

static bool conns_reached(void *arg)
{
    struct conns_at_least *c = arg;
    return daemon_connections(c->fd) >= c->n;
}

static bool conns_exactly(void *arg)
{
    struct conns_at_least *c = arg;
    return daemon_connections(c->fd) == c->n;
}

/*
 * 10,000 idle connections from 40 uids (2,000 of them never say Hello): the daemon holds them,
 * a new uid and root still connect, the silent ones are closed at their deadline, and another
 * client is answered throughout.
 */
START_TEST(ten_thousand_idle_connections)
{
    NEEDS_ROOT();
    /*
     * The daemon raises its soft descriptor limit as far as the hard one allows: raise that if
     * we may (root without CAP_SYS_RESOURCE, in a container, may not); with less, as many
     * uids as it leaves room for, said in the output.
     */
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max < 12500) {
        struct rlimit more = {12500, 12500};
        if (setrlimit(RLIMIT_NOFILE, &more) == 0)
            rl = more;
    }
    /* Unprivileged slots: the limit, less 128 the daemon keeps, less 16 kept for root. */
    long room = (long)rl.rlim_max - 128 - 16 - IDLE_PER_UID;
    int nuids = room / IDLE_PER_UID < IDLE_UIDS ? (int)(room / IDLE_PER_UID) : IDLE_UIDS;
    ck_assert_msg(nuids > 0, "RLIMIT_NOFILE %llu is too low", (unsigned long long)rl.rlim_max);
    start_daemon("max_connections = 12000\nhello_timeout = 5\nhello_idle_timeout = 4\n");
    long rss_before = daemon_status_kib("VmRSS");
    by_start();
    struct idle *s = shared_new(sizeof(*s));
    double t0 = now_us();
    pid_t pids[IDLE_UIDS];
    for (int i = 0; i < nuids; i++)
        pids[i] = spawn_as(20001 + i, idle_child, s);
    ck_assert_msg(wait_flag(&s->ready, nuids), "%d of %d uids connected (%d failed)", (int)s->ready,
        nuids, (int)s->failed);
    int fd = rc_open();
    ck_assert_int_ge(fd, 0);
    struct conns_at_least want = {fd, nuids * IDLE_PER_UID + 2};
    ck_assert(td_wait_until(conns_reached, &want));
    printf("test_hostile: %d connections open after %.1f s; daemon RSS %ld KiB (%ld before)\n",
        nuids * IDLE_PER_UID, (now_us() - t0) / 1e6, daemon_status_kib("VmRSS"), rss_before);
    struct slots *b = shared_new(sizeof(*b));
    b->conns = 1;
    b->hello = true;
    pid_t pb = spawn_as(UID_B, slots_child, b);
    ck_assert(wait_flag(&b->finished, 1));
    ck_assert_int_eq(b->ok, 1);
    atomic_store(&b->done, 1);
    ck_assert_int_eq(child_exit(pb), 0);
    /* The silent ones go at their deadline. */
    ck_assert(wait_flag(&s->silent_closed, nuids));
    struct conns_at_least after = {fd, nuids * (IDLE_PER_UID - IDLE_SILENT) + 2};
    ck_assert(td_wait_until(conns_exactly, &after));
    atomic_store(&s->done, 1);
    for (int i = 0; i < nuids; i++)
        ck_assert_int_eq(child_exit(pids[i]), 0);
    close(fd);
    char during[64];
    snprintf(during, sizeof(during), "%d idle connections", nuids * IDLE_PER_UID);
    by_stop(during);
}
END_TEST

/* ---- --socket and files that are not sockets ---- */

/* Runs peerdistd --socket path to its exit (it must exit: path is in the way). */
static int run_daemon_on(const char *path)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(td.log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 2);
        dup2(fd, 1);
        execl(PEERDISTD_PATH, "peerdistd", "--socket", path, "--db", td.db, "--config", td.conf,
            (char *)NULL);
        _exit(127);
    }
    for (int ms = 0; ms < TD_WAIT_MS; ms++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        usleep(1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ck_abort_msg("peerdistd started on %s", path);
    return -1;
}

/* Only a stale socket is ever removed: a regular file, a symlink or a directory in the
 * socket's place stops the daemon, untouched; a stale socket is replaced. */
START_TEST(socket_path_that_is_not_a_socket_is_left_alone)
{
    td_init(&td, "local");
    char file[96], link[96], dir[96], stale[96];
    snprintf(file, sizeof(file), "%s/precious.txt", td.dir);
    snprintf(link, sizeof(link), "%s/link", td.dir);
    snprintf(dir, sizeof(dir), "%s/adir", td.dir);
    snprintf(stale, sizeof(stale), "%s/stale.sock", td.dir);
    FILE *f = fopen(file, "w");
    fputs("precious", f);
    fclose(f);
    ck_assert_int_eq(symlink(file, link), 0);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_eq(run_daemon_on(file), 1);
    ck_assert_int_eq(run_daemon_on(link), 1);
    ck_assert_int_eq(run_daemon_on(dir), 1);
    struct stat st;
    ck_assert_int_eq(stat(file, &st), 0);
    ck_assert_int_eq(st.st_size, 8);
    ck_assert_int_eq(lstat(link, &st), 0);
    ck_assert(S_ISLNK(st.st_mode));
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert(td_log_contains(&td, "is not a socket"));
    /* A socket nobody listens on any more is replaced. */
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    ck_assert_uint_lt(strlen(stale), sizeof(sun.sun_path));
    memcpy(sun.sun_path, stale, strlen(stale) + 1);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(s);
    memcpy(td.sock, stale, strlen(stale) + 1);
    td_start(&td);
    int fd = rc_open();
    ck_assert_int_ge(fd, 0);
    close(fd);
}
END_TEST

/* HOSTILE_ONLY=name runs that test alone. */
#define ADD(name)                                  \
    do {                                           \
        const char *only = getenv("HOSTILE_ONLY"); \
        if (!only || strcmp(only, #name) == 0)     \
            tcase_add_test(tc, name);              \
    } while (0)

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a write to a connection the daemon closed fails, not kills */
    pthread_atfork(by_lock_take, by_lock_give, by_lock_give); /* by_run: between its calls */
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("hostile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    ADD(bad_frames_close_only_their_connection);
    ADD(unknown_handles_are_refused);
    ADD(unknown_request_types_get_not_implemented);
    ADD(frame_that_costs_memory_to_decode_is_refused);
    ADD(clients_that_never_read_are_bounded_per_uid);
    ADD(connections_without_hello_are_closed);
    ADD(one_uid_cannot_take_every_slot);
    ADD(root_keeps_a_reserve);
    ADD(max_connections_fits_the_descriptor_limit);
    ADD(out_of_descriptors_pauses_accepting);
    ADD(children_forked_beside_the_other_client_can_allocate);
    ADD(content_information_is_bounded_per_uid);
    ADD(partial_frames_are_bounded_per_uid);
    ADD(ten_thousand_idle_connections);
    ADD(socket_path_that_is_not_a_socket_is_left_alone);
    suite_add_tcase(s, tc);
    return check_run(s);
}
