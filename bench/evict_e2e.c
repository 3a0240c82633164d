/* SPDX-License-Identifier: MIT */
/*
 * evict_e2e.c - eviction end to end, against a running peerdistd (PEERDIST_SOCKET; run it
 * with bench/run-evict.sh): fills the cache with SIZE MiB (32 MiB segments, 1 MiB AddData
 * calls), then lowers cache_size to 64M with a CacheSet (so it must run as an admin) and
 * measures how fast the daemon evicts down to it, while another connection times small calls
 * every millisecond: a 4 KiB read of a cached block (answered on the loop) and an AddData of
 * one 64 KiB block (its commit waits for the write gate the eviction pass closes). Prints the
 * evicted bytes per second and the probe's p50/p99/max beside the same probe's figures
 * measured just before, on the idle daemon. Usage: evict_e2e [-s MiB].
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <peerdist.h>

#include "contentinfo.h"
#include "frame.h"

#define MIB (1024u * 1024)
#define MAX_SAMPLES 200000

static const char *sock_path;
static _Atomic uint64_t next_id = 1;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what) __attribute__((noreturn));

static void die(const char *what)
{
    fprintf(stderr, "evict_e2e: %s\n", what);
    exit(1);
}

static int connect_hello(void)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
        die("cannot connect to PEERDIST_SOCKET");
    return fd;
}

/* One request and its reply (the only one outstanding on fd); dies on a broken connection. */
static Peerdist__Reply *call(int fd, Peerdist__Request *req)
{
    req->id = atomic_fetch_add(&next_id, 1);
    size_t n = frame_size(&req->base);
    uint8_t *buf = malloc(n);
    if (!buf || frame_pack(&req->base, buf) != n)
        die("packing a request");
    for (size_t done = 0; done < n;) {
        ssize_t w = write(fd, buf + done, n - done);
        if (w <= 0)
            die("write");
        done += (size_t)w;
    }
    free(buf);
    uint8_t hdr[4];
    if (recv(fd, hdr, 4, MSG_WAITALL) != 4)
        die("no reply");
    uint32_t len = frame_header_length(hdr);
    uint8_t *rb = malloc(len ? len : 1);
    if (!rb || recv(fd, rb, len, MSG_WAITALL) != (ssize_t)len)
        die("short reply");
    Peerdist__Reply *r = peerdist__reply__unpack(NULL, len, rb);
    free(rb);
    if (!r || r->id != req->id)
        die("bad reply");
    return r;
}

static uint32_t call_status(int fd, Peerdist__Request *req)
{
    Peerdist__Reply *r = call(fd, req);
    uint32_t st = r->status;
    peerdist__reply__free_unpacked(r, NULL);
    return st;
}

static int session(void)
{
    int fd = connect_hello();
    Peerdist__Hello h = PEERDIST__HELLO__INIT;
    h.min_version = h.max_version = 1;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_HELLO;
    req.hello = &h;
    if (call_status(fd, &req) != 0)
        die("Hello refused");
    return fd;
}

struct content {
    uint8_t *data;
    size_t len;
    uint8_t *ci;
    size_t cilen;
};

static void content_make(struct content *c, size_t len, uint64_t seed)
{
    c->len = len;
    if (!(c->data = malloc(len)))
        die("out of memory");
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c->data[i] = (uint8_t)x;
    }
    struct ci_secret ks;
    struct ci_info *ci = NULL;
    struct ci_gen *g = NULL;
    if (ci_secret_from_passphrase(CI_HASH_SHA256, "bench", 5, &ks) != 0 ||
        !(g = ci_gen_new(CI_VERSION_1, &ks)) || ci_gen_feed(g, c->data, len) != 0 ||
        ci_gen_finish(g, &ci) != 0 || ci_serialize(ci, &c->ci, &c->cilen) != 0)
        die("content information");
    ci_gen_free(g);
    ci_info_free(ci);
}

static uint64_t open_content(int fd, const struct content *c, const uint8_t *tag)
{
    Peerdist__OpenContentRequest o = PEERDIST__OPEN_CONTENT_REQUEST__INIT;
    o.tag.data = (uint8_t *)tag;
    o.tag.len = 16;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_OPEN_CONTENT;
    req.open_content = &o;
    Peerdist__Reply *r = call(fd, &req);
    if (r->status != 0)
        die("OpenContent");
    uint64_t h = r->open_content->handle;
    peerdist__reply__free_unpacked(r, NULL);
    Peerdist__AddContentInfoRequest a = PEERDIST__ADD_CONTENT_INFO_REQUEST__INIT;
    a.handle = h;
    a.data.data = c->ci;
    a.data.len = c->cilen;
    req.body_case = PEERDIST__REQUEST__BODY_ADD_CONTENT_INFO;
    req.add_content_info = &a;
    Peerdist__CompleteContentInfoRequest cc = PEERDIST__COMPLETE_CONTENT_INFO_REQUEST__INIT;
    cc.handle = h;
    if (call_status(fd, &req) != 0)
        die("AddContentInformation");
    req.body_case = PEERDIST__REQUEST__BODY_COMPLETE_CONTENT_INFO;
    req.complete_content_info = &cc;
    if (call_status(fd, &req) != 0)
        die("CompleteContentInformation");
    return h;
}

static void add_data(int fd, uint64_t h, const struct content *c, size_t off, size_t n)
{
    Peerdist__AddDataRequest a = PEERDIST__ADD_DATA_REQUEST__INIT;
    a.handle = h;
    a.offset = off;
    a.data.data = c->data + off;
    a.data.len = n;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_ADD_DATA;
    req.add_data = &a;
    if (call_status(fd, &req) != 0)
        die("AddData");
}

static void read_block(int fd, uint64_t h)
{
    Peerdist__ReadRequest a = PEERDIST__READ_REQUEST__INIT;
    a.handle = h;
    a.max_bytes = 4096;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_READ;
    req.read = &a;
    if (call_status(fd, &req) != 0)
        die("read of the probe's block");
}

static Peerdist__CacheInfoReply *cache_info(int fd, Peerdist__Reply **keep)
{
    Peerdist__CacheInfoRequest ci = PEERDIST__CACHE_INFO_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_CACHE_INFO;
    req.cache_info = &ci;
    *keep = call(fd, &req);
    if ((*keep)->status != 0 || !(*keep)->cache_info)
        die("CacheInfo");
    return (*keep)->cache_info;
}

static void cache_set(int fd, const char *size, bool reset)
{
    Peerdist__CacheSetRequest cs = PEERDIST__CACHE_SET_REQUEST__INIT;
    cs.cache_size = (char *)size;
    cs.max_age = "";
    cs.reset = reset;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_CACHE_SET;
    req.cache_set = &cs;
    if (call_status(fd, &req) != 0)
        die("CacheSet refused (run as root or a member of group peerdist)");
}

/* The probe: a read and an AddData every millisecond, each timed. */
struct probe {
    atomic_bool stop, measure;
    double lat[MAX_SAMPLES];
    atomic_int n;
};

static void *probe_main(void *arg)
{
    struct probe *p = arg;
    static const uint8_t tag[16] = {0x9b};
    struct content small;
    content_make(&small, 64 * 1024, 99);
    int fd = session();
    uint64_t h = open_content(fd, &small, tag);
    add_data(fd, h, &small, 0, small.len);
    while (!atomic_load(&p->stop)) {
        double t0 = now_ms();
        read_block(fd, h);
        double t1 = now_ms();
        add_data(fd, h, &small, 0, small.len);
        double t2 = now_ms();
        int n = atomic_load(&p->n);
        if (atomic_load(&p->measure) && n + 2 <= MAX_SAMPLES) {
            p->lat[n] = t1 - t0;
            p->lat[n + 1] = t2 - t1;
            atomic_store(&p->n, n + 2);
        }
        usleep(1000);
    }
    close(fd);
    free(small.data);
    free(small.ci);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void percentiles(double *v, int n, double *p50, double *p99, double *max)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    *p50 = n ? v[n / 2] : -1;
    *p99 = n ? v[(int)(n * 0.99)] : -1;
    *max = n ? v[n - 1] : -1;
}

int main(int argc, char **argv)
{
    int mib = 1024, ch;
    while ((ch = getopt(argc, argv, "s:")) != -1) {
        if (ch == 's')
            mib = atoi(optarg);
        else
            return 2;
    }
    if (optind != argc || mib < 128 || mib % 32) {
        fprintf(stderr, "usage: evict_e2e [-s MiB (a multiple of 32, at least 128)]\n");
        return 2;
    }
    if (!(sock_path = getenv("PEERDIST_SOCKET")))
        die("PEERDIST_SOCKET is not set");
    int fd = session();
    static const uint8_t tag[16] = {0xe2, 0xe};
    /* The fill: one 32 MiB segment per content, so eviction takes them one by one. */
    for (int s = 0; s < mib / 32; s++) {
        struct content c;
        content_make(&c, 32 * MIB, 1000 + (uint64_t)s);
        uint64_t h = open_content(fd, &c, tag);
        for (size_t off = 0; off < c.len; off += MIB)
            add_data(fd, h, &c, off, MIB);
        free(c.data);
        free(c.ci);
    }
    Peerdist__Reply *keep;
    uint64_t stored0 = cache_info(fd, &keep)->stored_bytes;
    uint64_t evicted0 = keep->cache_info->evicted_size_bytes;
    peerdist__reply__free_unpacked(keep, NULL);

    static struct probe pr;
    pthread_t th;
    if (pthread_create(&th, NULL, probe_main, &pr) != 0)
        die("pthread_create");
    usleep(200 * 1000);
    /* The baseline: the same probe on the idle daemon, for as long as eviction will take
     * at most (a second). */
    atomic_store(&pr.measure, true);
    usleep(1000 * 1000);
    atomic_store(&pr.measure, false);
    int nidle = atomic_load(&pr.n);
    static double idle[MAX_SAMPLES];
    memcpy(idle, pr.lat, sizeof(double) * (size_t)nidle);
    atomic_store(&pr.n, 0);

    atomic_store(&pr.measure, true);
    double t0 = now_ms();
    if (getenv("EVICT_E2E_FLUSH")) {
        /* For comparison: a flush of the same bytes (the same reclaim behind it). */
        Peerdist__FlushRequest f = PEERDIST__FLUSH_REQUEST__INIT;
        f.tag.data = (uint8_t *)tag;
        f.tag.len = 16;
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.body_case = PEERDIST__REQUEST__BODY_FLUSH;
        req.flush = &f;
        if (call_status(fd, &req) != 0)
            die("Flush");
    }
    cache_set(fd, "64M", false);
    uint64_t stored = stored0;
    while (stored > 64ull * MIB) {
        usleep(2000);
        stored = cache_info(fd, &keep)->stored_bytes;
        peerdist__reply__free_unpacked(keep, NULL);
    }
    double t = now_ms() - t0;
    usleep(100 * 1000); /* and 100 ms after */
    atomic_store(&pr.measure, false);
    atomic_store(&pr.stop, true);
    pthread_join(th, NULL);
    uint64_t evicted = cache_info(fd, &keep)->evicted_size_bytes - evicted0;
    peerdist__reply__free_unpacked(keep, NULL);
    cache_set(fd, "", true);
    close(fd);

    if (getenv("EVICT_E2E_DEBUG"))
        for (int i = 0; i < atomic_load(&pr.n); i++)
            if (pr.lat[i] > 5)
                fprintf(stderr, "slow %s: %.2f ms at sample %d\n", i % 2 ? "AddData" : "read",
                    pr.lat[i], i);
    double i50, i99, imax, e50, e99, emax;
    percentiles(idle, nidle, &i50, &i99, &imax);
    percentiles(pr.lat, atomic_load(&pr.n), &e50, &e99, &emax);
    printf("filled_mib=%d evicted_mib=%.0f evict_s=%.3f evicted_mib_per_s=%.0f\n", mib,
        (double)evicted / MIB, t / 1e3, (double)evicted / MIB / (t / 1e3));
    printf("probe (4 KiB read + 64 KiB AddData, each timed) idle: p50=%.2fms p99=%.2fms "
           "max=%.2fms (%d calls)\n",
        i50, i99, imax, nidle);
    printf("probe during eviction: p50=%.2fms p99=%.2fms max=%.2fms (%d calls)  target "
           "p99<=10 %s\n",
        e50, e99, emax, atomic_load(&pr.n), e99 <= 10 ? "MET" : "MISSED");
    printf("SUMMARY evict_e2e evicted_mib_per_s=%.0f probe_p99_ms=%.2f idle_p99_ms=%.2f\n",
        (double)evicted / MIB / (t / 1e3), e99, i99);
    return 0;
}
