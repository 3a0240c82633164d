/* SPDX-License-Identifier: MIT */
/*
 * rpc_bench.c - cost of a libpeerdist call to peerdistd, printed beside a raw
 * Unix-socket round trip measured in the same run: PeerDistGetStatus, one
 * empty-tag flush at a time (event and completion port), and flush throughput
 * with many OVERLAPPEDs in flight, swept over depths beside `redis-benchmark -P`
 * at the same depths (-R SOCK). The daemon is found through PEERDIST_SOCKET.
 */
#include <peerdist.h>

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The baseline message: a small request, about what a framed GetStatus is. */
#define BASELINE_MSG_BYTES 64
#define DEFAULT_REPS 5
#define DEFAULT_ITERS 20000
#define DEFAULT_DEPTH 64
#define DEFAULT_SECONDS 2.0
/* Untimed calls before each timed loop: connect, page faults, lazy threads. */
#define WARMUP_ITERS 200
#define MAX_REPS 101
#define MAX_DEPTH 4096
#define MAX_SWEEP 16
/* The issue's target: flushes at -d depth against redis PING at the same pipeline depth. */
#define TARGET_FLUSH_VS_REDIS 0.35
/* PINGs per redis-benchmark run: REDIS_PINGS_PER_DEPTH x depth, within these bounds. */
#define REDIS_PINGS_PER_DEPTH 20000L
#define REDIS_PINGS_MIN 50000L
#define REDIS_PINGS_MAX 1000000L
/* The project's targets (anchors.md §3.3 is the looser "<= 2x raw RTT" for a sync call). */
#define TARGET_GETSTATUS_RATIO 1.5
#define TARGET_FLUSH_PER_S 50000.0
#define US_PER_S 1e6

struct options {
    int reps;
    long iters;
    int depth;
    double seconds;
    long max_flushes;     /* 0: bounded by seconds only */
    int sweep[MAX_SWEEP]; /* depths of the sweep (-D), -d's depth among them */
    int nsweep;
    const char *redis_sock; /* -R: a redis-server's Unix socket for the baseline, or NULL */
};

/* Medians collected over the repetitions, one array per figure. */
struct results {
    double baseline_us[MAX_REPS];
    double getstatus_us[MAX_REPS];
    double flush_event_us[MAX_REPS];
    double flush_port_us[MAX_REPS];
    double flush_per_s[MAX_REPS];
    double sweep_per_s[MAX_SWEEP][MAX_REPS]; /* flushes/s at each sweep depth */
    double redis_per_s[MAX_SWEEP][MAX_REPS]; /* redis PING/s at the same depths (-R) */
    long completions;                        /* throughput phase, all repetitions */
    long bad_completions;                    /* of those, status != 0 */
    DWORD first_bad_status;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what, DWORD err)
{
    fprintf(stderr, "rpc_bench: %s failed: error %lu\n", what, (unsigned long)err);
    exit(1);
}

static void random_tag(PEERDIST_CONTENT_TAG *tag)
{
    /* Nothing is ever labelled under a random tag, so the flush finds nothing to drop. */
    if (getrandom(tag->Data, sizeof(tag->Data), 0) != (ssize_t)sizeof(tag->Data)) {
        perror("rpc_bench: getrandom");
        exit(1);
    }
}

/* ---- baseline: raw AF_UNIX round trip, our own code ---- */

static int read_full(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const char *buf, size_t n)
{
    return write(fd, buf, n) == (ssize_t)n ? 0 : -1;
}

static void echo_child(int fd, long total)
{
    char buf[BASELINE_MSG_BYTES];
    for (long i = 0; i < total; i++)
        if (read_full(fd, buf, sizeof(buf)) || write_full(fd, buf, sizeof(buf)))
            _exit(1);
    _exit(0);
}

/*
 * Two processes, as the library and the daemon are, so the figure includes
 * the same cross-process wake-up the RPC pays; µs per round trip.
 */
static double bench_baseline(long iters)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
        perror("rpc_bench: socketpair");
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("rpc_bench: fork");
        exit(1);
    }
    if (pid == 0) {
        close(sv[0]);
        echo_child(sv[1], WARMUP_ITERS + iters);
    }
    close(sv[1]);
    char buf[BASELINE_MSG_BYTES] = {0};
    double t0 = 0;
    for (long i = 0; i < WARMUP_ITERS + iters; i++) {
        if (i == WARMUP_ITERS)
            t0 = now_s();
        if (write_full(sv[0], buf, sizeof(buf)) || read_full(sv[0], buf, sizeof(buf))) {
            fprintf(stderr, "rpc_bench: baseline echo failed\n");
            exit(1);
        }
    }
    double us = (now_s() - t0) / (double)iters * US_PER_S;
    close(sv[0]);
    int st;
    waitpid(pid, &st, 0);
    return us;
}

/* ---- the API ---- */

static double bench_getstatus(HANDLE h, long iters)
{
    double t0 = 0;
    for (long i = 0; i < WARMUP_ITERS + iters; i++) {
        if (i == WARMUP_ITERS)
            t0 = now_s();
        PEERDIST_STATUS st;
        DWORD rc = PeerDistGetStatus(h, &st);
        if (rc != ERROR_SUCCESS)
            die("PeerDistGetStatus", rc);
        /* UNAVAILABLE means the library could not ask the daemon: not a round trip. */
        if (st != PEERDIST_STATUS_AVAILABLE) {
            fprintf(stderr,
                "rpc_bench: PeerDistGetStatus says %d, not AVAILABLE: is peerdistd "
                "running at $PEERDIST_SOCKET?\n",
                (int)st);
            exit(1);
        }
    }
    return (now_s() - t0) / (double)iters * US_PER_S;
}

static void issue_flush(HANDLE h, const PEERDIST_CONTENT_TAG *tag, HANDLE port, ULONG_PTR key,
    OVERLAPPED *ov)
{
    HANDLE ev = ov->hEvent;
    memset(ov, 0, sizeof(*ov)); /* Offset must be 0; Internal is the library's */
    ov->hEvent = ev;
    DWORD rc = PeerDistClientFlushContent(h, tag, port, key, ov);
    if (rc != ERROR_IO_PENDING)
        die("PeerDistClientFlushContent (expected ERROR_IO_PENDING 997)", rc);
}

/* One flush at a time, completion signalled on an auto-reset event; µs per flush. */
static double bench_flush_event(HANDLE h, long iters)
{
    PEERDIST_CONTENT_TAG tag;
    random_tag(&tag);
    OVERLAPPED ov = {0};
    ov.hEvent = CreateEvent(NULL, FALSE, FALSE, NULL);
    if (!ov.hEvent)
        die("CreateEvent", GetLastError());
    double t0 = 0;
    for (long i = 0; i < WARMUP_ITERS + iters; i++) {
        if (i == WARMUP_ITERS)
            t0 = now_s();
        issue_flush(h, &tag, NULL, 0, &ov);
        if (WaitForSingleObject(ov.hEvent, INFINITE) != WAIT_OBJECT_0)
            die("WaitForSingleObject", GetLastError());
        if (ov.Internal != ERROR_SUCCESS)
            die("flush completion (event)", (DWORD)ov.Internal);
    }
    double us = (now_s() - t0) / (double)iters * US_PER_S;
    CloseHandle(ov.hEvent);
    return us;
}

static HANDLE new_port(void)
{
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    if (!port)
        die("CreateIoCompletionPort", GetLastError());
    return port;
}

/* Dequeue one packet; its status is the flush's (ov->Internal agrees with it). */
static OVERLAPPED *port_take(HANDLE port, DWORD *status)
{
    DWORD bytes;
    ULONG_PTR key;
    OVERLAPPED *ov = NULL;
    BOOL ok = GetQueuedCompletionStatus(port, &bytes, &key, &ov, INFINITE);
    if (!ov) /* no packet at all: the port itself failed */
        die("GetQueuedCompletionStatus", GetLastError());
    *status = ok ? ERROR_SUCCESS : GetLastError();
    return ov;
}

/* One flush at a time, completion dequeued from a port; µs per flush. */
static double bench_flush_port(HANDLE h, long iters)
{
    PEERDIST_CONTENT_TAG tag;
    random_tag(&tag);
    HANDLE port = new_port();
    OVERLAPPED ov = {0};
    double t0 = 0;
    for (long i = 0; i < WARMUP_ITERS + iters; i++) {
        if (i == WARMUP_ITERS)
            t0 = now_s();
        issue_flush(h, &tag, port, 0, &ov);
        DWORD status;
        if (port_take(port, &status) != &ov)
            die("GetQueuedCompletionStatus (foreign OVERLAPPED)", 0);
        if (status != ERROR_SUCCESS || ov.Internal != ERROR_SUCCESS)
            die("flush completion (port)", status ? status : (DWORD)ov.Internal);
    }
    double us = (now_s() - t0) / (double)iters * US_PER_S;
    CloseHandle(port);
    return us;
}

/*
 * `depth` flushes always in flight from one instance: each completion
 * reissues its slot at once until the time or count budget is spent, then the
 * rest drain. Flushes per second, counted over issue-to-last-completion.
 */
static double bench_flush_throughput(HANDLE h, const struct options *o, int depth,
    struct results *res)
{
    OVERLAPPED *ovs = calloc((size_t)depth, sizeof(*ovs));
    PEERDIST_CONTENT_TAG *tags = calloc((size_t)depth, sizeof(*tags));
    if (!ovs || !tags) {
        fprintf(stderr, "rpc_bench: out of memory\n");
        exit(1);
    }
    HANDLE port = new_port();
    for (int i = 0; i < depth; i++)
        random_tag(&tags[i]);

    double t0 = now_s(), deadline = t0 + o->seconds;
    long issued = 0, done = 0;
    for (int i = 0; i < depth; i++, issued++)
        issue_flush(h, &tags[i], port, (ULONG_PTR)i, &ovs[i]);
    bool refill = true;
    while (done < issued) {
        DWORD status;
        OVERLAPPED *ov = port_take(port, &status);
        done++;
        if (status != ERROR_SUCCESS || ov->Internal != ERROR_SUCCESS) {
            if (res->bad_completions++ == 0)
                res->first_bad_status = status ? status : (DWORD)ov->Internal;
        }
        if (refill && ((o->max_flushes && issued >= o->max_flushes) || now_s() >= deadline))
            refill = false;
        if (refill) {
            size_t slot = (size_t)(ov - ovs);
            issue_flush(h, &tags[slot], port, (ULONG_PTR)slot, ov);
            issued++;
        }
    }
    double per_s = (double)done / (now_s() - t0);
    res->completions += done;
    CloseHandle(port);
    free(tags);
    free(ovs);
    return per_s;
}

/* ---- baseline: redis-benchmark PING at the same pipeline depth ---- */

/*
 * `redis-benchmark -s SOCK -c 1 -P depth -t ping -n N -q`: the higher of its PING_INLINE and
 * PING_MBULK requests per second (the stricter baseline), or -1 if it could not run.
 */
static double bench_redis_once(const char *sock, int depth)
{
    long n = REDIS_PINGS_PER_DEPTH * depth;
    n = n < REDIS_PINGS_MIN ? REDIS_PINGS_MIN : n > REDIS_PINGS_MAX ? REDIS_PINGS_MAX : n;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "redis-benchmark -s '%s' -c 1 -P %d -t ping -n %ld -q 2>&1", sock,
        depth, n);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    /* -q still draws progress with \r: each result line starts after the last \r. */
    static char line[1 << 16];
    double best = -1;
    while (fgets(line, sizeof(line), f)) {
        char *start = strrchr(line, '\r');
        start = start ? start + 1 : line;
        char *colon = strstr(start, "PING_");
        double v;
        if (colon && (colon = strchr(colon, ':')) &&
            sscanf(colon + 1, " %lf requests per second", &v) == 1 && v > best)
            best = v;
    }
    int st = pclose(f);
    if (st != 0)
        fprintf(stderr, "redis-benchmark -P %d: exit status %d; last line: %s", depth, st, line);
    return st == 0 ? best : -1;
}

/* A run that failed (now and then one does, at depth 256) is tried again, once. */
static double bench_redis(const char *sock, int depth)
{
    double v = bench_redis_once(sock, depth);
    return v > 0 ? v : bench_redis_once(sock, depth);
}

/* ---- reporting ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double s[MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof(*s));
    qsort(s, (size_t)n, sizeof(*s), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double minimum(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

static double maximum(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

static void print_runs(const double *v, int n, const char *fmt)
{
    printf("(runs:");
    for (int i = 0; i < n; i++) {
        putchar(' ');
        printf(fmt, v[i]);
    }
    printf(")");
}

/* One latency figure beside the baseline; returns its ratio to the baseline. */
static double print_latency(const char *name, const double *v, int n, double base, double target)
{
    double m = median(v, n), ratio = m / base;
    printf("%s median=%.1f ", name, m);
    print_runs(v, n, "%.1f");
    printf(" baseline_uds_rtt_us median=%.1f ratio=%.2f", base, ratio);
    if (target > 0)
        printf(" target<=%.1f %s", target, ratio <= target ? "MET" : "MISSED");
    printf("\n");
    return ratio;
}

static void report(const struct options *o, const struct results *r)
{
    int n = o->reps;
    double base = median(r->baseline_us, n);
    printf("baseline_uds_rtt_us median=%.1f ", base);
    print_runs(r->baseline_us, n, "%.1f");
    printf(" msg=%dB socketpair+fork\n", BASELINE_MSG_BYTES);
    double gs = print_latency("getstatus_rtt_us", r->getstatus_us, n, base, TARGET_GETSTATUS_RATIO);
    double fe = print_latency("flush_event_us", r->flush_event_us, n, base, 0);
    double fp = print_latency("flush_port_us", r->flush_port_us, n, base, 0);

    double tput = median(r->flush_per_s, n);
    bool all_ok = r->bad_completions == 0;
    printf("flush_throughput_per_s median=%.0f ", tput);
    print_runs(r->flush_per_s, n, "%.0f");
    printf(" depth=%d baseline_uds_roundtrips_per_s=%.0f ratio=%.2f completions=%ld "
           "all_status_zero=%s target>=%.0f %s\n",
        o->depth, US_PER_S / base, tput * base / US_PER_S, r->completions, all_ok ? "yes" : "NO",
        TARGET_FLUSH_PER_S, tput >= TARGET_FLUSH_PER_S ? "MET" : "MISSED");
    if (!all_ok)
        printf("flush_throughput bad_completions=%ld first_status=%lu\n", r->bad_completions,
            (unsigned long)r->first_bad_status);

    /* The sweep: one line per depth, for plots (throughput against depth). */
    bool have_redis = o->redis_sock != NULL;
    for (int d = 0; d < o->nsweep && have_redis; d++)
        have_redis = minimum(r->redis_per_s[d], n) > 0;
    double redis_main = -1, redis_main_min = -1, redis_main_max = -1;
    for (int d = 0; d < o->nsweep; d++) {
        const double *pv = r->sweep_per_s[d], *rv = r->redis_per_s[d];
        double pm = median(pv, n);
        printf("DEPTH flush depth=%d peerdist_per_s=%.0f peerdist_per_s_min=%.0f "
               "peerdist_per_s_max=%.0f raw_rtt_per_s=%.0f",
            o->sweep[d], pm, minimum(pv, n), maximum(pv, n), US_PER_S / base);
        if (have_redis) {
            double rm = median(rv, n);
            printf(" redis_per_s=%.0f redis_per_s_min=%.0f redis_per_s_max=%.0f vs_redis=%.3f", rm,
                minimum(rv, n), maximum(rv, n), pm / rm);
            if (o->sweep[d] == o->depth) {
                redis_main = rm;
                redis_main_min = minimum(rv, n);
                redis_main_max = maximum(rv, n);
            }
        }
        printf("\n");
    }
    if (o->redis_sock && !have_redis)
        printf("redis baseline: redis-benchmark -s %s failed; no redis figures\n", o->redis_sock);
    if (redis_main > 0)
        printf("flush_vs_redis depth=%d peerdist_per_s=%.0f redis_per_s=%.0f ratio=%.3f "
               "target>=%.2f %s\n",
            o->depth, tput, redis_main, tput / redis_main, TARGET_FLUSH_VS_REDIS,
            tput / redis_main >= TARGET_FLUSH_VS_REDIS ? "MET" : "MISSED");

    printf("SUMMARY rpc_bench reps=%d iters=%ld depth=%d baseline_uds_rtt_us=%.1f "
           "getstatus_rtt_us=%.1f getstatus_ratio=%.2f flush_event_us=%.1f flush_event_ratio=%.2f "
           "flush_port_us=%.1f flush_port_ratio=%.2f flush_per_s=%.0f flush_all_status_zero=%d "
           "getstatus_target_met=%d flush_target_met=%d",
        n, o->iters, o->depth, base, median(r->getstatus_us, n), gs, median(r->flush_event_us, n),
        fe, median(r->flush_port_us, n), fp, tput, all_ok, gs <= TARGET_GETSTATUS_RATIO,
        tput >= TARGET_FLUSH_PER_S);
    printf(" baseline_uds_rtt_us_min=%.1f baseline_uds_rtt_us_max=%.1f raw_rtt_per_s=%.0f "
           "getstatus_rtt_us_min=%.1f getstatus_rtt_us_max=%.1f flush_event_us_min=%.1f "
           "flush_event_us_max=%.1f flush_port_us_min=%.1f flush_port_us_max=%.1f "
           "flush_per_s_min=%.0f flush_per_s_max=%.0f flush_event_target_met=%d "
           "flush_port_target_met=%d",
        minimum(r->baseline_us, n), maximum(r->baseline_us, n), US_PER_S / base,
        minimum(r->getstatus_us, n), maximum(r->getstatus_us, n), minimum(r->flush_event_us, n),
        maximum(r->flush_event_us, n), minimum(r->flush_port_us, n), maximum(r->flush_port_us, n),
        minimum(r->flush_per_s, n), maximum(r->flush_per_s, n), fe <= TARGET_GETSTATUS_RATIO,
        fp <= TARGET_GETSTATUS_RATIO);
    for (int d = 0; d < o->nsweep; d++)
        printf(" flush_per_s_d%d=%.0f", o->sweep[d], median(r->sweep_per_s[d], n));
    if (have_redis) {
        for (int d = 0; d < o->nsweep; d++)
            printf(" redis_per_s_d%d=%.0f", o->sweep[d], median(r->redis_per_s[d], n));
        printf(" redis_ping_per_s=%.0f redis_ping_per_s_min=%.0f redis_ping_per_s_max=%.0f "
               "flush_vs_redis=%.3f flush_vs_redis_target_met=%d",
            redis_main, redis_main_min, redis_main_max, tput / redis_main,
            tput / redis_main >= TARGET_FLUSH_VS_REDIS);
    } else {
        printf(" redis=skipped");
    }
    printf("\n");
}

/* ---- main ---- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: rpc_bench [-r REPS] [-n ITERS] [-d DEPTH] [-t SECONDS] [-m MAX_FLUSHES]\n"
        "                 [-D D1,D2,...] [-R REDIS_SOCKET]\n"
        "  -r REPS         repetitions, each figure is the median (default %d, max %d)\n"
        "  -n ITERS        round trips per latency figure per repetition (default %d)\n"
        "  -d DEPTH        flushes in flight for the throughput figure (default %d)\n"
        "  -t SECONDS      throughput phase length per repetition (default %.0f)\n"
        "  -m MAX_FLUSHES  also stop the throughput phase after this many (default: no limit)\n"
        "  -D DEPTHS       depth sweep of the throughput figure, comma-separated (default\n"
        "                  1,4,16,64,256; -d's depth is added if missing)\n"
        "  -R SOCKET       a redis-server's Unix socket: redis-benchmark -P at each depth is\n"
        "                  the baseline, run in each repetition (default: none)\n"
        "The daemon socket comes from $PEERDIST_SOCKET. Exit 1 on an API failure;\n"
        "a missed target is reported, not an error.\n",
        DEFAULT_REPS, MAX_REPS, DEFAULT_ITERS, DEFAULT_DEPTH, DEFAULT_SECONDS);
}

static void parse_options(int argc, char **argv, struct options *o)
{
    *o = (struct options){.reps = DEFAULT_REPS,
        .iters = DEFAULT_ITERS,
        .depth = DEFAULT_DEPTH,
        .seconds = DEFAULT_SECONDS};
    const char *sweep = "1,4,16,64,256";
    int c;
    while ((c = getopt(argc, argv, "r:n:d:t:m:D:R:h")) != -1) {
        switch (c) {
        case 'r': o->reps = atoi(optarg); break;
        case 'n': o->iters = atol(optarg); break;
        case 'd': o->depth = atoi(optarg); break;
        case 't': o->seconds = atof(optarg); break;
        case 'm': o->max_flushes = atol(optarg); break;
        case 'D': sweep = optarg; break;
        case 'R': o->redis_sock = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (o->reps < 1 || o->reps > MAX_REPS || o->iters < 1 || o->depth < 1 || o->depth > MAX_DEPTH ||
        o->seconds <= 0 || o->max_flushes < 0) {
        usage(stderr);
        exit(2);
    }
    bool has_main = false;
    for (const char *p = sweep; *p;) {
        char *end;
        long d = strtol(p, &end, 10);
        if (end == p || d < 1 || d > MAX_DEPTH || o->nsweep == MAX_SWEEP - 1 ||
            (*end && *end != ',')) {
            usage(stderr);
            exit(2);
        }
        has_main |= d == o->depth;
        o->sweep[o->nsweep++] = (int)d;
        p = *end ? end + 1 : end;
    }
    if (!has_main)
        o->sweep[o->nsweep++] = o->depth;
}

int main(int argc, char **argv)
{
    struct options o;
    parse_options(argc, argv, &o);
    static struct results res;

    HANDLE h;
    DWORD rc = PeerDistStartup(PEERDIST_VERSION, &h, NULL);
    if (rc != ERROR_SUCCESS)
        die("PeerDistStartup", rc);
    /*
     * Each repetition runs every figure once, baseline first, so the baseline
     * and the API see the same noisy moments of a shared VM (figures drift
     * ±30 % over minutes here); the medians then compare like with like.
     */
    for (int r = 0; r < o.reps; r++) {
        res.baseline_us[r] = bench_baseline(o.iters);
        res.getstatus_us[r] = bench_getstatus(h, o.iters);
        res.flush_event_us[r] = bench_flush_event(h, o.iters);
        res.flush_port_us[r] = bench_flush_port(h, o.iters);
        for (int d = 0; d < o.nsweep; d++) {
            if (o.redis_sock)
                res.redis_per_s[d][r] = bench_redis(o.redis_sock, o.sweep[d]);
            res.sweep_per_s[d][r] = bench_flush_throughput(h, &o, o.sweep[d], &res);
            if (o.sweep[d] == o.depth)
                res.flush_per_s[r] = res.sweep_per_s[d][r];
            fprintf(stderr, "rep %d/%d: depth %d: %.0f flushes/s, redis %.0f PING/s\n", r + 1,
                o.reps, o.sweep[d], res.sweep_per_s[d][r],
                o.redis_sock ? res.redis_per_s[d][r] : 0);
        }
        fprintf(stderr,
            "rep %d/%d: baseline %.1f us, getstatus %.1f us, flush event %.1f us, "
            "port %.1f us, %.0f flushes/s at depth %d\n",
            r + 1, o.reps, res.baseline_us[r], res.getstatus_us[r], res.flush_event_us[r],
            res.flush_port_us[r], res.flush_per_s[r], o.depth);
    }
    rc = PeerDistShutdown(h);
    if (rc != ERROR_SUCCESS)
        die("PeerDistShutdown", rc);
    report(&o, &res);
    return res.bad_completions ? 1 : 0;
}
