// SPDX-License-Identifier: MIT
/*
 * clients_bench.c - many connected clients at once: N instances (PeerDistStartup) spread over
 * U processes, each setresuid to its own unprivileged uid, each instance doing one
 * PeerDistGetStatus and one small-tag PeerDistClientFlushContent every second (spread over the
 * second), R of them also streaming reads of a cached file; prints the daemon's RSS and the
 * p99 of the small calls beside the same calls' p99 from one client on the idle daemon.
 * Run as root against a daemon at $PEERDIST_SOCKET (bench/run-clients.sh starts one).
 */
#include <peerdist.h>

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MiB (1024u * 1024)
#define CHUNK MiB
#define MAX_READ_DEPTH 16
#define WINDOWS 3 /* the run is cut in WINDOWS parts: medians of WINDOWS p99s */
#define MAX_PROCS 64
#define DRIVERS 10 /* threads per process making the small calls, each for every 10th client */
#define CI_MAX (4 * MiB)
#define CONTENT_ID "clients-bench"

enum kind { K_STATUS, K_FLUSH };

struct sample {
    float ms;
    float at; /* seconds since the start */
    uint8_t kind;
};

/* Shared between the parent and its children (MAP_SHARED before the forks). */
struct shared {
    atomic_int ready, go, done;
    double start; /* CLOCK_MONOTONIC seconds: the first second of the run */
    atomic_long errors, late, read_bytes, refused, connected;
    atomic_uint first_error;
    size_t ci_len;
    uint8_t ci[CI_MAX];
    atomic_size_t nsamples[MAX_PROCS + 1]; /* [MAX_PROCS]: the idle baseline */
};

struct options {
    int clients, uids, seconds, readers, idle_seconds, base_uid, content_mib, read_rate, depth;
    pid_t daemon;
};

static struct shared *sh;
static struct sample *samples; /* per process: cap samples each */
static size_t cap;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
    struct timespec ts = {(time_t)t, (long)((t - (double)(time_t)t) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void die(const char *what, DWORD e)
{
    fprintf(stderr, "clients_bench: %s: error %lu\n", what, (unsigned long)e);
    exit(1);
}

static void note_error(DWORD e)
{
    unsigned zero = 0;
    atomic_fetch_add(&sh->errors, 1);
    atomic_compare_exchange_strong(&sh->first_error, &zero, (unsigned)e);
}

static DWORD wait_ov(DWORD rc, OVERLAPPED *ov, DWORD *n)
{
    DWORD got = 0;
    if (rc != ERROR_IO_PENDING)
        return rc;
    BOOL ok = PeerDistGetOverlappedResult(ov, &got, TRUE);
    if (n)
        *n = got;
    return ok ? ERROR_SUCCESS : GetLastError();
}

/* VmRSS or VmHWM of pid in KiB, -1 if unknown. */
static long proc_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = atol(line + n + 1);
    if (f)
        fclose(f);
    return v;
}

static void become(uid_t uid)
{
    if (setgroups(0, NULL) != 0 || setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0)
        die("setresuid (run as root)", (DWORD)errno);
}

/* ---- the cached file: published and added by root, read by the readers of every uid ---- */

static void setup_content(int mib, const PEERDIST_CONTENT_TAG *tag)
{
    size_t len = (size_t)mib * MiB;
    uint8_t *data = malloc(len);
    if (!data)
        die("malloc", 0);
    for (size_t i = 0; i < len; i += 8) {
        uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull;
        memcpy(data + i, &x, 8);
    }
    PEERDIST_INSTANCE_HANDLE h;
    if (PeerDistStartup(PEERDIST_VERSION, &h, NULL) != ERROR_SUCCESS)
        die("Startup (is peerdistd running at $PEERDIST_SOCKET?)", 0);
    PeerDistServerUnpublish(h, (DWORD)strlen(CONTENT_ID), (PBYTE)CONTENT_ID);
    PEERDIST_PUBLICATION_OPTIONS po = {1, 0};
    PEERDIST_STREAM_HANDLE s;
    DWORD rc = PeerDistServerPublishStream(h, (DWORD)strlen(CONTENT_ID), (PBYTE)CONTENT_ID, len,
        &po, NULL, 0, &s);
    if (rc)
        die("PublishStream", rc);
    for (size_t off = 0; off < len; off += CHUNK) {
        OVERLAPPED ov = {0};
        if ((rc = wait_ov(PeerDistServerPublishAddToStream(h, s, CHUNK, data + off, &ov), &ov,
                 NULL)))
            die("PublishAddToStream", rc);
    }
    OVERLAPPED ov = {0};
    if ((rc = wait_ov(PeerDistServerPublishCompleteStream(h, s, &ov), &ov, NULL)))
        die("PublishCompleteStream", rc);
    PeerDistServerCloseStreamHandle(h, s);
    PEERDIST_CONTENTINFO_HANDLE cih;
    if ((rc = PeerDistServerOpenContentInformation(h, (DWORD)strlen(CONTENT_ID), (PBYTE)CONTENT_ID,
             0, 0, NULL, 0, &cih)))
        die("OpenContentInformation", rc);
    size_t n = 0;
    for (;;) {
        OVERLAPPED rov = {0};
        DWORD got = 0;
        DWORD want = CI_MAX - n < 65536 ? (DWORD)(CI_MAX - n) : 65536;
        rc = wait_ov(PeerDistServerRetrieveContentInformation(h, cih, want, sh->ci + n, &rov), &rov,
            &got);
        if (rc == PEERDIST_ERROR_NO_MORE)
            break;
        if (rc || want == 0)
            die("RetrieveContentInformation", rc);
        n += got;
    }
    PeerDistServerCloseContentInformation(h, cih);
    sh->ci_len = n;

    PEERDIST_CONTENT_HANDLE c;
    if ((rc = PeerDistClientOpenContent(h, tag, NULL, 0, &c)))
        die("OpenContent", rc);
    memset(&ov, 0, sizeof(ov));
    if ((rc = wait_ov(PeerDistClientAddContentInformation(h, c, (DWORD)n, sh->ci, &ov), &ov, NULL)))
        die("AddContentInformation", rc);
    memset(&ov, 0, sizeof(ov));
    if ((rc = wait_ov(PeerDistClientCompleteContentInformation(h, c, &ov), &ov, NULL)))
        die("CompleteContentInformation", rc);
    for (size_t off = 0; off < len; off += CHUNK) {
        memset(&ov, 0, sizeof(ov));
        ov.Offset = (DWORD)off;
        ov.OffsetHigh = (DWORD)((uint64_t)off >> 32);
        if ((rc = wait_ov(PeerDistClientAddData(h, c, CHUNK, data + off, &ov), &ov, NULL)))
            die("AddData", rc);
    }
    PeerDistClientCloseContent(h, c);
    PeerDistShutdown(h);
    free(data);
}

static void cleanup_content(const PEERDIST_CONTENT_TAG *tag)
{
    PEERDIST_INSTANCE_HANDLE h;
    if (PeerDistStartup(PEERDIST_VERSION, &h, NULL) != ERROR_SUCCESS)
        return;
    OVERLAPPED ov = {0};
    wait_ov(PeerDistClientFlushContent(h, tag, NULL, 0, &ov), &ov, NULL);
    PeerDistServerUnpublish(h, (DWORD)strlen(CONTENT_ID), (PBYTE)CONTENT_ID);
    PeerDistShutdown(h);
}

/* ---- one client's small calls ---- */

static void record(int proc, enum kind k, double t0, double t1)
{
    size_t i = atomic_fetch_add(&sh->nsamples[proc], 1);
    if (i >= cap) {
        atomic_store(&sh->nsamples[proc], cap);
        return;
    }
    samples[(size_t)proc * cap + i] = (struct sample){(float)((t1 - t0) * 1e3),
        (float)(t0 - sh->start), (uint8_t)k};
}

/* One GetStatus, then one flush of the client's (empty, small) tag waited on its event. */
static void small_calls(int proc, PEERDIST_INSTANCE_HANDLE h, const PEERDIST_CONTENT_TAG *tag,
    HANDLE ev)
{
    PEERDIST_STATUS st;
    double t0 = now_s();
    DWORD rc = PeerDistGetStatus(h, &st);
    double t1 = now_s();
    if (rc != ERROR_SUCCESS || st != PEERDIST_STATUS_AVAILABLE)
        note_error(rc ? rc : (DWORD)st + 1000);
    else
        record(proc, K_STATUS, t0, t1);
    OVERLAPPED ov = {0};
    ov.hEvent = ev;
    t0 = now_s();
    rc = PeerDistClientFlushContent(h, tag, NULL, 0, &ov);
    if (rc == ERROR_IO_PENDING) {
        if (WaitForSingleObject(ev, 60000) != WAIT_OBJECT_0)
            rc = GetLastError() ? GetLastError() : WAIT_TIMEOUT;
        else
            rc = (DWORD)ov.Internal;
    }
    t1 = now_s();
    if (rc != ERROR_SUCCESS)
        note_error(rc);
    else
        record(proc, K_FLUSH, t0, t1);
}

/* ---- a reader: StreamRead of the cached file, again and again, depth reads in flight ---- */

struct reader {
    PEERDIST_INSTANCE_HANDLE h;
    size_t len;
    double end;
    int rate;  /* MiB/s, 0: as fast as it goes */
    int depth; /* reads in flight */
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    PEERDIST_CONTENT_TAG tag;
    getrandom(&tag, sizeof(tag), 0);
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    uint8_t *buf = malloc((size_t)MAX_READ_DEPTH * CHUNK);
    double t0 = now_s(), mib = 0;
    while (now_s() < r->end) {
        PEERDIST_CONTENT_HANDLE c;
        DWORD rc = PeerDistClientOpenContent(r->h, &tag, port, 0, &c);
        OVERLAPPED ov = {0};
        if (!rc)
            rc = wait_ov(
                PeerDistClientAddContentInformation(r->h, c, (DWORD)sh->ci_len, sh->ci, &ov), &ov,
                NULL);
        memset(&ov, 0, sizeof(ov));
        if (!rc)
            rc = wait_ov(PeerDistClientCompleteContentInformation(r->h, c, &ov), &ov, NULL);
        if (rc) {
            note_error(rc);
            break;
        }
        for (int i = 0; i < 2; i++) { /* those two completions went to the port too */
            DWORD n;
            ULONG_PTR key;
            LPOVERLAPPED got;
            GetQueuedCompletionStatus(port, &n, &key, &got, 1000);
        }
        OVERLAPPED rov[MAX_READ_DEPTH];
        size_t issued = 0;
        int in_flight = 0;
        for (int i = 0; i < r->depth && issued < r->len; i++, issued += CHUNK) {
            memset(&rov[i], 0, sizeof(rov[i]));
            rc = PeerDistClientStreamRead(r->h, c, CHUNK, buf + (size_t)i * CHUNK,
                PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, &rov[i]);
            if (rc != ERROR_IO_PENDING) {
                note_error(rc);
                break;
            }
            in_flight++;
        }
        while (in_flight > 0) {
            DWORD n;
            ULONG_PTR key;
            LPOVERLAPPED got;
            if (!GetQueuedCompletionStatus(port, &n, &key, &got, 60000)) {
                note_error(GetLastError());
                if (!got)
                    break;
            }
            in_flight--;
            atomic_fetch_add(&sh->read_bytes, (long)n);
            mib += (double)n / MiB;
            if (issued >= r->len || now_s() >= r->end)
                continue;
            if (r->rate > 0)
                sleep_until(t0 + mib / r->rate);
            int i = (int)(got - rov);
            memset(&rov[i], 0, sizeof(rov[i]));
            rc = PeerDistClientStreamRead(r->h, c, CHUNK, buf + (size_t)i * CHUNK,
                PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, &rov[i]);
            if (rc != ERROR_IO_PENDING) {
                note_error(rc);
                continue;
            }
            issued += CHUNK;
            in_flight++;
        }
        PeerDistClientCloseContent(r->h, c);
    }
    free(buf);
    CloseHandle(port);
    return NULL;
}

/* ---- the processes ---- */

/* One driver thread of a process: clients first, first + step, ... on their own moments. */
struct driver {
    const struct options *o;
    int proc, n, first, step;
    PEERDIST_INSTANCE_HANDLE *h;
    PEERDIST_CONTENT_TAG *tags;
};

static void *driver_main(void *arg)
{
    struct driver *d = arg;
    const struct options *o = d->o;
    HANDLE ev = CreateEvent(NULL, FALSE, FALSE, NULL);
    double start = sh->start;
    for (int s = 0; s < o->seconds; s++)
        for (int i = d->first; i < d->n; i += d->step) {
            /* client i of process proc: its own moment of each second */
            double at = start + s + (double)(i * o->uids + d->proc) / (double)(d->n * o->uids);
            if (now_s() > at + 0.5)
                atomic_fetch_add(&sh->late, 1);
            sleep_until(at);
            if (d->h[i])
                small_calls(d->proc, d->h[i], &d->tags[i], ev);
        }
    CloseHandle(ev);
    return NULL;
}

/* One uid's clients: connect them all, wait for the start, run, disconnect. */
static void child_main(const struct options *o, int proc)
{
    become((uid_t)(o->base_uid + proc));
    int n = o->clients / o->uids + (proc < o->clients % o->uids);
    PEERDIST_INSTANCE_HANDLE *h = calloc((size_t)n, sizeof(*h));
    PEERDIST_CONTENT_TAG *tags = calloc((size_t)n, sizeof(*tags));
    getrandom(tags, sizeof(*tags) * (size_t)n, 0);
    for (int i = 0; i < n; i++) {
        DWORD rc = PeerDistStartup(PEERDIST_VERSION, &h[i], NULL);
        if (rc != ERROR_SUCCESS) {
            h[i] = NULL;
            atomic_fetch_add(&sh->refused, 1);
            note_error(rc);
        } else {
            atomic_fetch_add(&sh->connected, 1);
        }
    }
    atomic_fetch_add(&sh->ready, 1);
    while (!atomic_load(&sh->go))
        usleep(1000);
    pthread_t th, dth[DRIVERS];
    struct reader rd = {h[0], (size_t)o->content_mib * MiB, sh->start + o->seconds, o->read_rate,
        o->depth};
    bool reading = proc < o->readers && h[0];
    if (reading && pthread_create(&th, NULL, reader_main, &rd) != 0)
        die("pthread_create", 0);
    struct driver d[DRIVERS];
    for (int t = 0; t < DRIVERS; t++) {
        d[t] = (struct driver){o, proc, n, t, DRIVERS, h, tags};
        if (pthread_create(&dth[t], NULL, driver_main, &d[t]) != 0)
            die("pthread_create", 0);
    }
    for (int t = 0; t < DRIVERS; t++)
        pthread_join(dth[t], NULL);
    if (reading)
        pthread_join(th, NULL);
    for (int i = 0; i < n; i++)
        if (h[i])
            PeerDistShutdown(h[i]);
    _exit(0);
}

/* The baseline: one client on the idle daemon, the same two calls, 100 times a second. */
static void idle_main(const struct options *o)
{
    become((uid_t)o->base_uid);
    PEERDIST_INSTANCE_HANDLE h;
    if (PeerDistStartup(PEERDIST_VERSION, &h, NULL) != ERROR_SUCCESS)
        _exit(1);
    PEERDIST_CONTENT_TAG tag;
    getrandom(&tag, sizeof(tag), 0);
    HANDLE ev = CreateEvent(NULL, FALSE, FALSE, NULL);
    double start = now_s();
    sh->start = start;
    for (int k = 0; k < o->idle_seconds * 100; k++) {
        sleep_until(start + k / 100.0);
        small_calls(MAX_PROCS, h, &tag, ev);
    }
    CloseHandle(ev);
    PeerDistShutdown(h);
    _exit(0);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* p99 (ms) of the samples of procs [p0, p1) of kind k (-1: both) starting in [from, to). */
static double p99(int p0, int p1, int k, double from, double to, long *count)
{
    size_t total = 0;
    for (int p = p0; p < p1; p++)
        total += sh->nsamples[p];
    float *v = malloc(sizeof(float) * (total ? total : 1));
    size_t n = 0;
    for (int p = p0; p < p1; p++)
        for (size_t i = 0; i < sh->nsamples[p]; i++) {
            const struct sample *s = &samples[(size_t)p * cap + i];
            if ((k < 0 || s->kind == k) && s->at >= from && s->at < to)
                v[n++] = s->ms;
        }
    qsort(v, n, sizeof(float), cmp_float);
    double r = n ? v[(size_t)((double)n * 0.99)] : -1;
    if (count)
        *count = (long)n;
    free(v);
    return r;
}

/* Median, min and max of the WINDOWS windows' p99s over [0, secs). */
static void windowed(int p0, int p1, int k, double secs, double out[3])
{
    double w[WINDOWS];
    for (int i = 0; i < WINDOWS; i++)
        w[i] = p99(p0, p1, k, secs * i / WINDOWS, secs * (i + 1) / WINDOWS, NULL);
    qsort(w, WINDOWS, sizeof(double), cmp_double);
    out[0] = w[WINDOWS / 2];
    out[1] = w[0];
    out[2] = w[WINDOWS - 1];
}

static void usage(void)
{
    fprintf(stderr,
        "usage: clients_bench [-n CLIENTS] [-u UIDS] [-b BASE_UID] [-t SECONDS] [-R READERS]\n"
        "                     [-i IDLE_SECONDS] [-s CONTENT_MiB] [-B READ_MiB_S] [-D DEPTH]\n"
        "                     -p DAEMON_PID\n"
        "  defaults: 1000 clients over 10 uids from 60001, 30 s, 10 readers of a 64 MiB file\n"
        "  each as fast as it goes (-B: at most READ_MiB_S each), 2 reads of 1 MiB in flight\n"
        "  each (-D, at most 16),\n"
        "  6 s of the idle baseline. Run as root; PEERDIST_SOCKET names the daemon.\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct options o = {.clients = 1000,
        .uids = 10,
        .seconds = 30,
        .readers = 10,
        .idle_seconds = 6,
        .base_uid = 60001,
        .content_mib = 64,
        .depth = 2};
    int ch;
    while ((ch = getopt(argc, argv, "n:u:b:t:R:i:s:B:D:p:h")) != -1) {
        switch (ch) {
        case 'n': o.clients = atoi(optarg); break;
        case 'u': o.uids = atoi(optarg); break;
        case 'b': o.base_uid = atoi(optarg); break;
        case 't': o.seconds = atoi(optarg); break;
        case 'R': o.readers = atoi(optarg); break;
        case 'i': o.idle_seconds = atoi(optarg); break;
        case 's': o.content_mib = atoi(optarg); break;
        case 'B': o.read_rate = atoi(optarg); break;
        case 'D': o.depth = atoi(optarg); break;
        case 'p': o.daemon = (pid_t)atoi(optarg); break;
        default: usage();
        }
    }
    if (optind != argc || o.uids < 1 || o.uids > MAX_PROCS || o.clients < o.uids ||
        o.seconds < WINDOWS || o.idle_seconds < WINDOWS || o.readers > o.uids || o.readers < 0 ||
        o.base_uid < 1 || o.content_mib < 1 || o.daemon <= 0 || o.depth < 1 ||
        o.depth > MAX_READ_DEPTH)
        usage();
    if (geteuid() != 0) {
        fprintf(stderr, "clients_bench: run as root (each process takes its own uid)\n");
        return 2;
    }
    size_t per_proc = (size_t)(o.clients / o.uids + 1);
    size_t idle_n = (size_t)o.idle_seconds * 100 * 2;
    cap = per_proc * (size_t)o.seconds * 2 + 64;
    if (cap < idle_n + 64)
        cap = idle_n + 64;
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    samples = mmap(NULL, sizeof(struct sample) * cap * (MAX_PROCS + 1), PROT_READ | PROT_WRITE,
        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED || samples == MAP_FAILED)
        die("mmap", (DWORD)errno);
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Every use of the library is in a child: the parent stays single-threaded for its forks. */
    PEERDIST_CONTENT_TAG tag;
    getrandom(&tag, sizeof(tag), 0);
    long rss_start = proc_kib(o.daemon, "VmRSS");
    pid_t pid = fork();
    if (pid == 0) {
        setup_content(o.content_mib, &tag);
        _exit(0);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        die("setting up the cached file", 0);
    long rss_cached = proc_kib(o.daemon, "VmRSS");

    /* The baseline first: one client, the idle daemon. */
    if ((pid = fork()) == 0)
        idle_main(&o);
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        die("the idle baseline client", 0);
    double idle[3], idle_status[3], idle_flush[3];
    windowed(MAX_PROCS, MAX_PROCS + 1, -1, o.idle_seconds, idle);
    windowed(MAX_PROCS, MAX_PROCS + 1, K_STATUS, o.idle_seconds, idle_status);
    windowed(MAX_PROCS, MAX_PROCS + 1, K_FLUSH, o.idle_seconds, idle_flush);
    long idle_errors = atomic_exchange(&sh->errors, 0);
    printf("idle baseline: 1 client, %d s, GetStatus + flush 100 times a second: p99 %.3f ms "
           "(%.3f..%.3f over %d windows; GetStatus %.3f, flush %.3f) errors=%ld\n",
        o.idle_seconds, idle[0], idle[1], idle[2], WINDOWS, idle_status[0], idle_flush[0],
        idle_errors);

    /* The crowd. */
    pid_t kids[MAX_PROCS];
    double t_connect = now_s();
    for (int p = 0; p < o.uids; p++) {
        if ((kids[p] = fork()) == 0)
            child_main(&o, p);
        if (kids[p] < 0)
            die("fork", (DWORD)errno);
    }
    while (atomic_load(&sh->ready) < o.uids) {
        usleep(10000);
        if (now_s() - t_connect > 300)
            die("clients not connected after 300 s", 0);
    }
    t_connect = now_s() - t_connect;
    long rss_connected = proc_kib(o.daemon, "VmRSS");
    printf("connected: %ld of %d clients from %d uids (%d..%d) in %.1f s, %ld refused (first "
           "error %u); daemon VmRSS %ld KiB (before: %ld KiB, with the cached file set up: %ld "
           "KiB)\n",
        atomic_load(&sh->connected), o.clients, o.uids, o.base_uid, o.base_uid + o.uids - 1,
        t_connect, atomic_load(&sh->refused), atomic_load(&sh->first_error), rss_connected,
        rss_start, rss_cached);
    long connect_errors = atomic_exchange(&sh->errors, 0);
    atomic_store(&sh->first_error, 0);

    sh->start = now_s() + 0.2;
    atomic_store(&sh->go, 1);
    long rss_max = 0, anon_max = 0, shmem_max = 0, own_max = 0;
    double end = sh->start + o.seconds;
    while (now_s() < end + 1) {
        long v = proc_kib(o.daemon, "VmRSS");
        rss_max = v > rss_max ? v : rss_max;
        /* RssShmem: the readers' shared regions (memfds the clients own) the daemon has
         * written into, counted in its VmRSS too; RssAnon: the daemon's own heap. */
        long a = proc_kib(o.daemon, "RssAnon"), m = proc_kib(o.daemon, "RssShmem");
        anon_max = a > anon_max ? a : anon_max;
        shmem_max = m > shmem_max ? m : shmem_max;
        own_max = v - m > own_max ? v - m : own_max; /* VmRSS less the clients' regions */
        usleep(250000);
    }
    for (int p = 0; p < o.uids; p++)
        if (waitpid(kids[p], &status, 0) != kids[p] || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            fprintf(stderr, "clients_bench: the process of uid %d failed (status %d)\n",
                o.base_uid + p, status);
    long rss_after = proc_kib(o.daemon, "VmRSS"), hwm = proc_kib(o.daemon, "VmHWM");

    double all[3], st[3], fl[3];
    long n_status, n_flush;
    windowed(0, o.uids, -1, o.seconds, all);
    windowed(0, o.uids, K_STATUS, o.seconds, st);
    windowed(0, o.uids, K_FLUSH, o.seconds, fl);
    p99(0, o.uids, K_STATUS, 0, o.seconds, &n_status);
    p99(0, o.uids, K_FLUSH, 0, o.seconds, &n_flush);
    double read_mib_s = (double)atomic_load(&sh->read_bytes) / MiB / o.seconds;
    long errors = atomic_load(&sh->errors), late = atomic_load(&sh->late);
    printf("run: %d s, %ld GetStatus and %ld flushes done (%.0f calls/s), %d readers %.0f MiB/s "
           "in all, %ld errors (first %u), %ld calls started over 0.5 s late\n",
        o.seconds, n_status, n_flush, (double)(n_status + n_flush) / o.seconds, o.readers,
        read_mib_s, errors, atomic_load(&sh->first_error), late);
    printf("small_call_p99_ms=%.3f (%.3f..%.3f over %d windows; GetStatus %.3f, flush %.3f)  "
           "baseline idle_p99_ms=%.3f  ratio=%.1f  target<=10 %s\n",
        all[0], all[1], all[2], WINDOWS, st[0], fl[0], idle[0], all[0] / idle[0],
        all[0] <= 10 ? "MET" : "MISSED");
    printf("daemon_vmhwm_kib=%ld daemon_vmrss_max_kib=%ld (sampled every 250 ms) "
           "daemon_vmrss_after_kib=%ld  baseline before the clients %ld KiB  target<=65536 %s\n",
        hwm, rss_max, rss_after, rss_cached, hwm <= 65536 ? "MET" : "MISSED");
    printf("daemon_rssanon_max_kib=%ld daemon_rssshmem_max_kib=%ld (of VmRSS: the daemon's heap, "
           "the readers' shared regions)  daemon_own_rss_max_kib=%ld (VmRSS less RssShmem)  "
           "target<=65536 %s\n",
        anon_max, shmem_max, own_max, own_max <= 65536 ? "MET" : "MISSED");

    if ((pid = fork()) == 0) {
        cleanup_content(&tag);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    printf("SUMMARY clients_bench clients=%d uids=%d seconds=%d readers=%d read_limit_mib_s=%d "
           "read_depth=%d "
           "connected=%ld "
           "refused=%ld errors=%ld connect_errors=%ld late_calls=%ld calls_per_s=%.0f "
           "read_mib_s=%.0f small_p99_ms=%.3f small_p99_ms_min=%.3f small_p99_ms_max=%.3f "
           "getstatus_p99_ms=%.3f flush_p99_ms=%.3f idle_p99_ms=%.3f idle_p99_ms_min=%.3f "
           "idle_p99_ms_max=%.3f p99_ratio=%.2f daemon_vmhwm_kib=%ld daemon_vmrss_max_kib=%ld "
           "daemon_vmrss_connected_kib=%ld daemon_vmrss_before_kib=%ld p99_target_met=%d "
           "rss_target_met=%d daemon_rssanon_max_kib=%ld daemon_rssshmem_max_kib=%ld "
           "daemon_own_rss_max_kib=%ld own_rss_target_met=%d\n",
        o.clients, o.uids, o.seconds, o.readers, o.read_rate, o.depth, atomic_load(&sh->connected),
        atomic_load(&sh->refused), errors, connect_errors, late,
        (double)(n_status + n_flush) / o.seconds, read_mib_s, all[0], all[1], all[2], st[0], fl[0],
        idle[0], idle[1], idle[2], all[0] / idle[0], hwm, rss_max, rss_connected, rss_cached,
        all[0] <= 10, hwm <= 65536, anon_max, shmem_max, own_max, own_max <= 65536);
    return 0;
}
