/* SPDX-License-Identifier: MIT */
/*
 * datapath_bench.c - the data path through <peerdist.h>, each figure beside
 * its baseline measured in the same run on the same bytes:
 *   publish N MiB (V1)             vs `openssl dgst -sha256` of the same file
 *   AddData N MiB                  vs the smaller of `openssl dgst -sha256` and
 *                                     a raw write of the bytes with fdatasync
 *   StreamRead of the cached bytes vs a raw Unix-socket transfer of the bytes; the same
 *                                     StreamRead in-frame (PEERDIST_NO_SHM), BlockRead, and
 *                                     with -g PEERDISTCTL `peerdistctl get -o /dev/null`,
 *                                     each beside that transfer (reads start after sync(),
 *                                     so AddData's writeback is not charged to them)
 *   flush of the tag labelling them (must complete in <= 1 s) while another
 *   instance calls PeerDistGetStatus in a loop (its p99 must stay <= 10 ms)
 * With -R CMD (CMD restarts the daemon on the same cache), before the flush:
 *   StreamRead after the restart, each block checked against its hash on this
 *   first read, then StreamRead again (blocks known good), beside the
 *   StreamRead before the restart (blocks AddData wrote: known good) and openssl;
 *   with -p PIDFILE (the daemon's pid, rewritten by CMD) also the daemon's CPU
 *   time per GiB of each of those three reads, which a busy machine disturbs less
 * Then AddData of the first -S MiB (default 256, at most all) again at 1, 2, 4, 8, 16, 32 and
 * 64 MiB in flight (requests of 1 MiB, a new tag each, flushed after), each beside the same
 * repetition's baseline for those bytes (the slower of openssl, scaled, and a raw write +
 * fdatasync of as many bytes): one DEPTH line per depth, keys in the SUMMARY line. With -g,
 * a STAGES line per depth too: the mean per call of each stage the daemon timed (`peerdistctl
 * status`), beside the latency the caller saw, and how many of the depth's data files were
 * spare files renamed into place (docs/cache.md, Spare data files: a depth after the first
 * writes over the files the flush before it freed). And a second baseline for the sweep, the disk
 * alone under writes shaped like AddData's: the same bytes as 1 MiB pwrite + fdatasync jobs,
 * 1, 2, 4 and 8 MiB of them at once (one DURABLE line each, its ratio to the raw write).
 * With -g, every baseline and every AddData starts once the daemon has reclaimed the space of the
 * flush before (`peerdistctl status`: no reclaim pending), as the baselines run on a disk nobody
 * else writes: the reclaim of 256 MiB takes about 0.2 s and slows AddData meanwhile
 * (bench/README.md, 2026-12-03). The seconds waited so are printed (settle_s).
 * Usage: datapath_bench [-s MiB] [-S MiB] [-r REPS] [-R CMD [-p PIDFILE]] [-g PEERDISTCTL] DIR
 *   (DIR: a
 * scratch directory on the same disk as the daemon's database). PEERDIST_SOCKET
 * names the daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <peerdist.h>

#define MiB (1024u * 1024)
#define CHUNK MiB /* bytes per request */
/*
 * Requests in flight. AddData keeps more: each batch of writes waits for its fdatasync
 * (the group sync), so the bytes in flight must cover a sync's latency.
 */
#define ADD_DEPTH 32
#define READ_DEPTH 8
#define DEPTH 64            /* slots allocated: the deepest AddData of the depth sweep */
#define MAX_SAMPLES 2000000 /* GetStatus latencies kept during a flush */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Median, min and max of v[0..n) (sorted in place). */
struct stat3 {
    double med, min, max;
};

static struct stat3 stat3(double *v, int n)
{
    double med = median(v, n);
    return (struct stat3){med, v[0], v[n - 1]};
}

static void die(const char *what, DWORD e)
{
    fprintf(stderr, "datapath_bench: %s: error %lu\n", what, (unsigned long)e);
    exit(1);
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

/* The daemon's CPU seconds so far (user + system), from /proc; -1 if unknown. */
static double daemon_cpu_s(const char *pidfile)
{
    if (!pidfile)
        return -1;
    FILE *f = fopen(pidfile, "r");
    int pid = 0;
    if (!f || fscanf(f, "%d", &pid) != 1)
        pid = 0;
    if (f)
        fclose(f);
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = pid > 0 ? fopen(path, "r") : NULL;
    char *end = f && fgets(line, sizeof(line), f) ? strrchr(line, ')') : NULL;
    if (f)
        fclose(f);
    unsigned long ut, st;
    /* after "(comm)": state, then fields 4..13, then utime (14) and stime (15) */
    if (!end ||
        sscanf(end + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds (user + system) of `who` (RUSAGE_SELF, RUSAGE_THREAD or RUSAGE_CHILDREN). */
static double cpu_s(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
        (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* CPU seconds of both ends of the last uds_transfer_s (sender: this process; the reader). */
static double uds_cpu;
/* CPU seconds of the last openssl_sha256_s and raw_write_s: steadier than time when busy. */
static double openssl_cpu, write_cpu;

/* ---- baselines ---- */

static double openssl_sha256_s(const char *path)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "openssl dgst -sha256 '%s' >/dev/null", path);
    double t0 = now_s(), c0 = cpu_s(RUSAGE_CHILDREN);
    if (system(cmd) != 0)
        die("openssl dgst", 0);
    openssl_cpu = cpu_s(RUSAGE_CHILDREN) - c0;
    return now_s() - t0;
}

static double raw_write_s(const char *dir, const uint8_t *data, size_t len)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/raw-write.bin", dir);
    double t0 = now_s(), c0 = cpu_s(RUSAGE_THREAD);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    for (size_t off = 0; fd >= 0 && off < len; off += CHUNK)
        if (write(fd, data + off, len - off < CHUNK ? len - off : CHUNK) < 0)
            die("raw write", (DWORD)errno);
    if (fd < 0 || fdatasync(fd) != 0)
        die("raw write", (DWORD)errno);
    double t = now_s() - t0;
    write_cpu = cpu_s(RUSAGE_THREAD) - c0;
    close(fd);
    unlink(path);
    return t;
}

/*
 * What the disk gives small durable writes, the shape of AddData's without the rest: len
 * bytes as 1 MiB pwrite + fdatasync jobs, k at once (threads), into 32 MiB files as the
 * daemon's segment files are. Seconds.
 */
#define DURABLE_FILE (32u * MiB)
#define DURABLE_THREADS_MAX 16
struct durable {
    const uint8_t *data;
    size_t len;
    int *fd; /* one per DURABLE_FILE bytes */
    atomic_size_t next;
};

/* (On a failure die() exits; run-datapath.sh removes the scratch directory and its files.) */
static void *durable_thread(void *arg)
{
    struct durable *w = arg;
    for (size_t at; (at = atomic_fetch_add(&w->next, CHUNK)) < w->len;) {
        size_t n = w->len - at < CHUNK ? w->len - at : CHUNK;
        int fd = w->fd[at / DURABLE_FILE];
        ssize_t wr = pwrite(fd, w->data + at, n, (off_t)(at % DURABLE_FILE));
        if (wr != (ssize_t)n)
            die("durable write", (DWORD)(wr < 0 ? errno : EIO));
        if (fdatasync(fd) != 0)
            die("durable write: fdatasync", (DWORD)errno);
    }
    return NULL;
}

static double durable_writes_s(const char *dir, const uint8_t *data, size_t len, int k)
{
    struct durable w = {.data = data, .len = len};
    size_t files = (len + DURABLE_FILE - 1) / DURABLE_FILE;
    if (k < 1 || k > DURABLE_THREADS_MAX || !(w.fd = calloc(files, sizeof(*w.fd))))
        die("durable write: setup", 0);
    char path[4200];
    for (size_t i = 0; i < files; i++) {
        snprintf(path, sizeof(path), "%s/durable-%zu.bin", dir, i);
        if ((w.fd[i] = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
            die("durable write", (DWORD)errno);
    }
    pthread_t th[DURABLE_THREADS_MAX];
    double t0 = now_s();
    for (int i = 0; i < k; i++)
        if (pthread_create(&th[i], NULL, durable_thread, &w) != 0)
            die("durable write: pthread_create", 0);
    for (int i = 0; i < k; i++)
        pthread_join(th[i], NULL);
    double t = now_s() - t0;
    for (size_t i = 0; i < files; i++) {
        close(w.fd[i]);
        snprintf(path, sizeof(path), "%s/durable-%zu.bin", dir, i);
        unlink(path);
    }
    free(w.fd);
    return t;
}

static double uds_transfer_s(const uint8_t *data, size_t len)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        die("socketpair", (DWORD)errno);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        uint8_t *buf = malloc(CHUNK);
        size_t got = 0;
        while (got < len) {
            ssize_t n = read(sv[1], buf, CHUNK);
            if (n <= 0)
                _exit(1);
            got += (size_t)n;
        }
        (void)!write(sv[1], "k", 1);
        _exit(0);
    }
    close(sv[1]);
    double c0 = cpu_s(RUSAGE_SELF);
    double t0 = now_s();
    for (size_t off = 0; off < len;) {
        ssize_t n = write(sv[0], data + off, len - off < CHUNK ? len - off : CHUNK);
        if (n <= 0)
            die("uds write", (DWORD)errno);
        off += (size_t)n;
    }
    char k;
    if (read(sv[0], &k, 1) != 1)
        die("uds ack", 0);
    double t = now_s() - t0;
    close(sv[0]);
    struct rusage ru;
    wait4(pid, NULL, 0, &ru);
    uds_cpu = cpu_s(RUSAGE_SELF) - c0 + ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
        (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    return t;
}

/* ---- the daemon at rest ---- */

static double settle_total;
/* The last `CTL status --json` output status_read read. */
static char status_json[16384];

/* Reads `CTL status --json` into status_json. */
static void status_read(const char *ctl)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "'%s' status --json", ctl);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(status_json, 1, sizeof(status_json) - 1, p) : 0;
    if (p && pclose(p) != 0)
        die("peerdistctl status", 0);
    status_json[n] = 0;
}

/*
 * Waits (at most 60 s) until the daemon has no reclaim pending, per `CTL status --json`: the
 * space of a flush is given back on a worker after the flush replies, and its truncations would
 * slow the next figure. Nothing to do without -g.
 */
static void settle(const char *ctl)
{
    if (!ctl)
        return;
    double t0 = now_s();
    bool settled = false;
    while (!settled && now_s() - t0 < 60) {
        status_read(ctl);
        const char *k = strstr(status_json, "\"reclaim_pending_slots\": ");
        if (!k)
            die("peerdistctl status: no reclaim_pending_slots", 0);
        if (!(settled = strtoull(k + strlen("\"reclaim_pending_slots\": "), NULL, 10) == 0))
            usleep(10000);
    }
    if (!settled)
        fprintf(stderr, "datapath_bench: reclaim still pending after 60 s; timing anyway\n");
    settle_total += now_s() - t0;
}

/* ---- the API ---- */

static uint8_t *publish(PEERDIST_INSTANCE_HANDLE h, const char *id, const uint8_t *data, size_t len,
    size_t *ci_len, double *secs)
{
    PEERDIST_PUBLICATION_OPTIONS po = {1, 0};
    PEERDIST_STREAM_HANDLE s;
    double t0 = now_s();
    DWORD rc = PeerDistServerPublishStream(h, (DWORD)strlen(id), (PBYTE)id, len, &po, NULL, 0, &s);
    if (rc != ERROR_SUCCESS)
        die("PublishStream", rc);
    for (size_t off = 0; off < len; off += CHUNK) {
        OVERLAPPED ov = {0};
        DWORD n = len - off < CHUNK ? (DWORD)(len - off) : CHUNK;
        if ((rc = wait_ov(PeerDistServerPublishAddToStream(h, s, n, (PBYTE)data + off, &ov), &ov,
                 NULL)))
            die("PublishAddToStream", rc);
    }
    OVERLAPPED ov = {0};
    if ((rc = wait_ov(PeerDistServerPublishCompleteStream(h, s, &ov), &ov, NULL)))
        die("PublishCompleteStream", rc);
    *secs = now_s() - t0;
    PeerDistServerCloseStreamHandle(h, s);
    PEERDIST_CONTENTINFO_HANDLE ci;
    if ((rc = PeerDistServerOpenContentInformation(h, (DWORD)strlen(id), (PBYTE)id, 0, 0, NULL, 0,
             &ci)))
        die("OpenContentInformation", rc);
    size_t cap = 4 * MiB, n = 0;
    uint8_t *out = malloc(cap);
    for (;;) {
        if (cap - n < CHUNK)
            out = realloc(out, cap *= 2);
        OVERLAPPED rov = {0};
        DWORD got = 0;
        rc = wait_ov(PeerDistServerRetrieveContentInformation(h, ci, CHUNK, out + n, &rov), &rov,
            &got);
        if (rc == PEERDIST_ERROR_NO_MORE)
            break;
        if (rc)
            die("RetrieveContentInformation", rc);
        n += got;
    }
    PeerDistServerCloseContentInformation(h, ci);
    *ci_len = n;
    return out;
}

static PEERDIST_CONTENT_HANDLE open_content(PEERDIST_INSTANCE_HANDLE h, HANDLE port,
    const PEERDIST_CONTENT_TAG *tag, const uint8_t *ci, size_t ci_len)
{
    PEERDIST_CONTENT_HANDLE c;
    DWORD rc = PeerDistClientOpenContent(h, tag, port, 0, &c);
    if (rc)
        die("OpenContent", rc);
    OVERLAPPED ov = {0};
    if ((rc = wait_ov(PeerDistClientAddContentInformation(h, c, (DWORD)ci_len, (PBYTE)ci, &ov), &ov,
             NULL)))
        die("AddContentInformation", rc);
    memset(&ov, 0, sizeof(ov));
    if ((rc = wait_ov(PeerDistClientCompleteContentInformation(h, c, &ov), &ov, NULL)))
        die("CompleteContentInformation", rc);
    /* Those two completions also went to the handle's port: take them off before pumping. */
    for (int i = 0; i < 2; i++) {
        DWORD n;
        ULONG_PTR key;
        LPOVERLAPPED got;
        GetQueuedCompletionStatus(port, &n, &key, &got, 1000);
    }
    return c;
}

/* Keeps DEPTH operations in flight on the handle's port until `issue` has nothing left. */
typedef DWORD (*issue_fn)(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, OVERLAPPED *ov,
    uint8_t *slot, void *state);

static void pump(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, HANDLE port, issue_fn issue,
    void *state, uint8_t *slots, int depth, const char *what)
{
    OVERLAPPED ov[DEPTH];
    int in_flight = 0;
    for (int i = 0; i < depth; i++) {
        memset(&ov[i], 0, sizeof(ov[i]));
        DWORD rc = issue(h, c, &ov[i], slots + (size_t)i * CHUNK, state);
        if (rc == ERROR_IO_PENDING)
            in_flight++;
        else if (rc != PEERDIST_ERROR_NO_MORE)
            die(what, rc);
    }
    while (in_flight > 0) {
        DWORD n;
        ULONG_PTR key;
        LPOVERLAPPED got;
        if (!GetQueuedCompletionStatus(port, &n, &key, &got, INFINITE) &&
            GetLastError() != PEERDIST_ERROR_NO_MORE)
            die(what, GetLastError());
        in_flight--;
        int i = (int)(got - ov);
        memset(&ov[i], 0, sizeof(ov[i]));
        DWORD rc = issue(h, c, &ov[i], slots + (size_t)i * CHUNK, state);
        if (rc == ERROR_IO_PENDING)
            in_flight++;
        else if (rc != PEERDIST_ERROR_NO_MORE)
            die(what, rc);
    }
}

struct add_state {
    const uint8_t *data;
    size_t len, next;
};

static DWORD issue_add(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, OVERLAPPED *ov,
    uint8_t *slot, void *arg)
{
    struct add_state *a = arg;
    if (a->next >= a->len)
        return PEERDIST_ERROR_NO_MORE;
    size_t off = a->next, n = a->len - off < CHUNK ? a->len - off : CHUNK;
    a->next += n;
    ov->Offset = (DWORD)off;
    ov->OffsetHigh = (DWORD)((uint64_t)off >> 32);
    return PeerDistClientAddData(h, c, (DWORD)n, (PBYTE)a->data + off, ov);
}

/* The depths (MiB in flight, 1 MiB per request) AddData is swept over. */
static const int sweep_mib[] = {1, 2, 4, 8, 16, 32, 64};
#define NSWEEP ((int)(sizeof(sweep_mib) / sizeof(sweep_mib[0])))

/* The durable-write baseline's MiB in flight (durable_writes_s). */
static const int durable_mib[] = {1, 2, 4, 8};
#define NDURABLE ((int)(sizeof(durable_mib) / sizeof(durable_mib[0])))

/*
 * The daemon's account of AddData (`status --json`, "add_data"): calls, then each stage's
 * microseconds summed over them (queued, verify_write, sync_wait, sync, commit).
 */
#define NSTAGES 5
static const char *const stage_keys[NSTAGES] = {"queued", "verify_write", "sync_wait", "sync",
    "commit"};
struct stages {
    double calls, us[NSTAGES];
    double spares_taken; /* "spare_files": files renamed into place for new segments */
};

/* The stages in the status read last; all 0 if it has none (an older daemon). */
static struct stages stages_now(void)
{
    struct stages s = {0};
    const char *a = strstr(status_json, "\"add_data\": {");
    const char *k = a ? strstr(a, "\"calls\": ") : NULL;
    const char *sp = strstr(status_json, "\"spare_files\": {");
    const char *tk = sp ? strstr(sp, "\"taken\": ") : NULL;
    if (tk)
        s.spares_taken = strtod(tk + strlen("\"taken\": "), NULL);
    if (!k)
        return s;
    s.calls = strtod(k + strlen("\"calls\": "), NULL);
    for (int i = 0; i < NSTAGES; i++) {
        char key[40];
        snprintf(key, sizeof(key), "\"%s_us\": ", stage_keys[i]);
        if ((k = strstr(a, key)))
            s.us[i] = strtod(k + strlen(key), NULL);
    }
    return s;
}

/*
 * Per depth of the sweep: each stage's mean milliseconds per call, from two snapshots, then
 * the data files made from spares (ms[NSTAGES]).
 */
static void stages_mean(const struct stages *before, const struct stages *after,
    double ms[NSTAGES + 1])
{
    double n = after->calls - before->calls;
    for (int i = 0; i < NSTAGES; i++)
        ms[i] = n > 0 ? (after->us[i] - before->us[i]) / 1e3 / n : -1;
    ms[NSTAGES] = after->spares_taken - before->spares_taken;
}

/*
 * AddData of all the bytes at each depth of the sweep, a new tag each, flushed after; with a
 * peerdistctl (ctl), the daemon's mean per call of each stage at each depth in stage_ms.
 */
static void adddata_sweep(PEERDIST_INSTANCE_HANDLE h, int r, const uint8_t *ci, size_t ci_len,
    const uint8_t *data, size_t len, uint8_t *slots, const char *ctl, double t[NSWEEP],
    double stage_ms[NSWEEP][NSTAGES + 1])
{
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    for (int i = 0; i < NSWEEP; i++) {
        settle(ctl); /* the previous depth's flush */
        struct stages before = stages_now();
        PEERDIST_CONTENT_TAG tag = {{(uint8_t)r, 0xde, (uint8_t)sweep_mib[i]}};
        PEERDIST_CONTENT_HANDLE c = open_content(h, port, &tag, ci, ci_len);
        struct add_state as = {data, len, 0};
        double t0 = now_s();
        pump(h, c, port, issue_add, &as, slots, sweep_mib[i] * (int)(MiB / CHUNK), "AddData");
        t[i] = now_s() - t0;
        if (ctl)
            status_read(ctl); /* the status after this depth's calls */
        struct stages after = stages_now();
        stages_mean(&before, &after, stage_ms[i]);
        PeerDistClientCloseContent(h, c);
        OVERLAPPED ov = {0};
        DWORD rc = wait_ov(PeerDistClientFlushContent(h, &tag, NULL, 0, &ov), &ov, NULL);
        if (rc)
            die("FlushContent after the sweep", rc);
    }
    CloseHandle(port);
}

struct read_state {
    size_t issued, len;
};

static DWORD issue_block_read(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, OVERLAPPED *ov,
    uint8_t *slot, void *arg)
{
    struct read_state *r = arg;
    if (r->issued >= r->len)
        return PEERDIST_ERROR_NO_MORE;
    size_t off = r->issued;
    r->issued += CHUNK;
    ov->Offset = (DWORD)off;
    ov->OffsetHigh = (DWORD)((uint64_t)off >> 32);
    return PeerDistClientBlockRead(h, c, CHUNK, slot, PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, ov);
}

/* One timed read of everything on a fresh handle: StreamRead (issue_read) or BlockRead. */
static double read_all_s(PEERDIST_INSTANCE_HANDLE h, HANDLE port, const PEERDIST_CONTENT_TAG *tag,
    const uint8_t *ci, size_t ci_len, size_t len, uint8_t *slots, issue_fn issue, const char *what)
{
    PEERDIST_CONTENT_HANDLE c = open_content(h, port, tag, ci, ci_len);
    struct read_state rs = {0, len};
    double t0 = now_s();
    pump(h, c, port, issue, &rs, slots, READ_DEPTH, what);
    double t = now_s() - t0;
    PeerDistClientCloseContent(h, c);
    return t;
}

/* `peerdistctl get` of everything into /dev/null (the CLI's reads, not a disk's writes). */
static double ctl_get_s(const char *ctl, const char *dir, const uint8_t *ci, size_t ci_len,
    const PEERDIST_CONTENT_TAG *tag)
{
    char path[4200], cmd[9000], hex[33];
    snprintf(path, sizeof(path), "%s/content.ci", dir);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(ci, 1, ci_len, f) != ci_len || fclose(f) != 0)
        die("writing the content information", (DWORD)errno);
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", tag->Data[i]);
    snprintf(cmd, sizeof(cmd), "'%s' get --ci '%s' --tag %s --timeout 0 -o /dev/null", ctl, path,
        hex);
    double t0 = now_s();
    if (system(cmd) != 0)
        die("peerdistctl get", 0);
    double t = now_s() - t0;
    unlink(path);
    return t;
}

static DWORD issue_read(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, OVERLAPPED *ov,
    uint8_t *slot, void *arg)
{
    struct read_state *r = arg;
    if (r->issued >= r->len)
        return PEERDIST_ERROR_NO_MORE;
    r->issued += CHUNK;
    return PeerDistClientStreamRead(h, c, CHUNK, slot, PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, ov);
}

/*
 * Restarts the daemon (cmd) and reads everything back twice through a new instance: first
 * while each block is checked against its hash on its first read since the start, then with
 * every block known good. Returns the first read's seconds, the second's in *later.
 */
static double after_restart_read_s(PEERDIST_INSTANCE_HANDLE *h, HANDLE *port, const char *cmd,
    const char *pidfile, const PEERDIST_CONTENT_TAG *tag, const uint8_t *ci, size_t ci_len,
    size_t len, uint8_t *slots, double *later, double cpu[2])
{
    CloseHandle(*port);
    PeerDistShutdown(*h);
    if (system(cmd) != 0)
        die("restarting the daemon", 0);
    if (PeerDistStartup(PEERDIST_VERSION, h, NULL) != ERROR_SUCCESS)
        die("Startup after the restart", 0);
    *port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    double t[2];
    for (int i = 0; i < 2; i++) {
        PEERDIST_CONTENT_HANDLE c = open_content(*h, *port, tag, ci, ci_len);
        struct read_state rs = {0, len};
        double c0 = daemon_cpu_s(pidfile), t0 = now_s();
        pump(*h, c, *port, issue_read, &rs, slots, READ_DEPTH, "StreamRead after the restart");
        t[i] = now_s() - t0;
        cpu[i] = daemon_cpu_s(pidfile) - c0;
        PeerDistClientCloseContent(*h, c);
    }
    *later = t[1];
    return t[0];
}

struct prober {
    atomic_int stop;
    double *lat;
    int n;
};

static void *probe_status(void *arg)
{
    struct prober *p = arg;
    PEERDIST_INSTANCE_HANDLE h;
    if (PeerDistStartup(PEERDIST_VERSION, &h, NULL) != ERROR_SUCCESS)
        return NULL;
    while (!atomic_load(&p->stop) && p->n < MAX_SAMPLES) {
        PEERDIST_STATUS st;
        double t0 = now_s();
        PeerDistGetStatus(h, &st);
        p->lat[p->n++] = (now_s() - t0) * 1e3;
        usleep(200);
    }
    PeerDistShutdown(h);
    return NULL;
}

int main(int argc, char **argv)
{
    size_t mib = 1024, sweep_mib_n = 256;
    int reps = 3, ch;
    const char *restart = NULL, *pidfile = NULL, *ctl = NULL;
    while ((ch = getopt(argc, argv, "s:S:r:R:p:g:")) != -1) {
        if (ch == 's')
            mib = strtoul(optarg, NULL, 10);
        else if (ch == 'S')
            sweep_mib_n = strtoul(optarg, NULL, 10);
        else if (ch == 'r')
            reps = atoi(optarg);
        else if (ch == 'R')
            restart = optarg;
        else if (ch == 'p')
            pidfile = optarg;
        else if (ch == 'g')
            ctl = optarg;
        else
            return 2;
    }
    if (optind + 1 != argc || reps < 1 || reps > 20 || mib < 1 || sweep_mib_n < 1) {
        fprintf(stderr,
            "usage: datapath_bench [-s MiB] [-S SWEEP_MiB] [-r REPS] [-R RESTART_CMD "
            "[-p PIDFILE]] [-g PEERDISTCTL] SCRATCH_DIR\n");
        return 2;
    }
    if (sweep_mib_n > mib)
        sweep_mib_n = mib;
    const char *dir = argv[optind];
    size_t len = mib * MiB;
    uint8_t *data = malloc(len), *slots = malloc((size_t)DEPTH * CHUNK);
    for (size_t i = 0; i < len; i += 8) {
        uint64_t x = i * 0x9E3779B97F4A7C15ull;
        memcpy(data + i, &x, len - i < 8 ? len - i : 8);
    }
    char file[4200];
    snprintf(file, sizeof(file), "%s/content.bin", dir);
    FILE *f = fopen(file, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
        die("writing the content file", (DWORD)errno);

    double b_sha[20], b_write[20], b_uds[20], t_pub[20], t_add[20], t_read[20], t_flush[20],
        p99[20], t_first[20], t_later[20], cpu_read[20], cpu_first[20], cpu_later[20],
        t_inframe[20], t_block[20], t_get[20], cpu_uds[20], cpu_shm[20], cpu_inframe[20],
        t_sweep[20][NSWEEP], cpu_sha[20], cpu_write[20], cpu_add_d[20], cpu_add_c[20],
        b_sweep_write[20], stage_ms[20][NSWEEP][NSTAGES + 1], b_durable[20][NDURABLE];
    for (int r = 0; r < reps; r++) {
        settle(ctl); /* the previous repetition's last flush */
        b_sha[r] = openssl_sha256_s(file);
        cpu_sha[r] = openssl_cpu;
        b_write[r] = raw_write_s(dir, data, len);
        cpu_write[r] = write_cpu;
        b_uds[r] = uds_transfer_s(data, len);
        cpu_uds[r] = uds_cpu;

        PEERDIST_INSTANCE_HANDLE h;
        if (PeerDistStartup(PEERDIST_VERSION, &h, NULL) != ERROR_SUCCESS)
            die("Startup", 0);
        char id[32];
        snprintf(id, sizeof(id), "bench-%d", r);
        size_t ci_len;
        uint8_t *ci = publish(h, id, data, len, &ci_len, &t_pub[r]);

        HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
        PEERDIST_CONTENT_TAG tag = {{(uint8_t)r, 0xbe, 0x4c}};
        PEERDIST_CONTENT_HANDLE c = open_content(h, port, &tag, ci, ci_len);
        struct add_state as = {data, len, 0};
        settle(ctl);
        double t0 = now_s(), d0 = daemon_cpu_s(pidfile), u0 = cpu_s(RUSAGE_SELF);
        pump(h, c, port, issue_add, &as, slots, ADD_DEPTH, "AddData");
        t_add[r] = now_s() - t0;
        /* the client's library threads count (RUSAGE_SELF); no other thread runs here */
        cpu_add_c[r] = cpu_s(RUSAGE_SELF) - u0;
        cpu_add_d[r] = daemon_cpu_s(pidfile) - d0;
        PeerDistClientCloseContent(h, c);

        sync(); /* the AddData's writeback is not the reads' to pay */
        c = open_content(h, port, &tag, ci, ci_len);
        struct read_state rs = {0, len};
        double c0 = daemon_cpu_s(pidfile), s0 = cpu_s(RUSAGE_SELF);
        t0 = now_s();
        pump(h, c, port, issue_read, &rs, slots, READ_DEPTH, "StreamRead");
        t_read[r] = now_s() - t0;
        cpu_read[r] = daemon_cpu_s(pidfile) - c0;
        cpu_shm[r] = cpu_read[r] + cpu_s(RUSAGE_SELF) - s0; /* both ends, as for the transfer */
        PeerDistClientCloseContent(h, c);
        t_block[r] = read_all_s(h, port, &tag, ci, ci_len, len, slots, issue_block_read,
            "BlockRead");
        /* In-frame, as before shared-memory reads: a new instance reads without the region. */
        setenv("PEERDIST_NO_SHM", "1", 1);
        PEERDIST_INSTANCE_HANDLE h2;
        if (PeerDistStartup(PEERDIST_VERSION, &h2, NULL) != ERROR_SUCCESS)
            die("Startup", 0);
        HANDLE port2 = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
        c0 = daemon_cpu_s(pidfile);
        s0 = cpu_s(RUSAGE_SELF);
        t_inframe[r] = read_all_s(h2, port2, &tag, ci, ci_len, len, slots, issue_read,
            "StreamRead in-frame");
        cpu_inframe[r] = daemon_cpu_s(pidfile) - c0 + cpu_s(RUSAGE_SELF) - s0;
        CloseHandle(port2);
        PeerDistShutdown(h2);
        unsetenv("PEERDIST_NO_SHM");
        t_get[r] = ctl ? ctl_get_s(ctl, dir, ci, ci_len, &tag) : -1;
        if (restart) {
            double cpu[2];
            t_first[r] = after_restart_read_s(&h, &port, restart, pidfile, &tag, ci, ci_len, len,
                slots, &t_later[r], cpu);
            cpu_first[r] = cpu[0];
            cpu_later[r] = cpu[1];
        }

        struct prober pr = {.lat = malloc(sizeof(double) * MAX_SAMPLES)};
        pthread_t th;
        pthread_create(&th, NULL, probe_status, &pr);
        usleep(100000);
        int before = pr.n;
        OVERLAPPED ov = {0};
        t0 = now_s();
        DWORD rc = wait_ov(PeerDistClientFlushContent(h, &tag, NULL, 0, &ov), &ov, NULL);
        t_flush[r] = now_s() - t0;
        if (rc)
            die("FlushContent", rc);
        usleep(100000);
        atomic_store(&pr.stop, 1);
        pthread_join(th, NULL);
        int n = pr.n - before; /* samples from the flush on, and shortly after */
        qsort(pr.lat + before, (size_t)n, sizeof(double), cmp_double);
        p99[r] = n > 0 ? pr.lat[before + (int)(n * 0.99)] : -1;
        free(pr.lat);
        PeerDistServerUnpublish(h, (DWORD)strlen(id), (PBYTE)id);
        /* The sweep's own write baseline, of as many bytes: a 1 GiB write meets the kernel's
         * dirty-page limits that 256 MiB does not, and would flatter the sweep. */
        settle(ctl);
        b_sweep_write[r] = raw_write_s(dir, data, sweep_mib_n * MiB);
        for (int k = 0; k < NDURABLE; k++) {
            settle(ctl);
            b_durable[r][k] = durable_writes_s(dir, data, sweep_mib_n * MiB, durable_mib[k]);
        }
        adddata_sweep(h, r, ci, ci_len, data, sweep_mib_n * MiB, slots, ctl, t_sweep[r],
            stage_ms[r]);
        CloseHandle(port);
        PeerDistShutdown(h);
        free(ci);
        fprintf(stderr,
            "rep %d: openssl %.2fs write %.2fs uds %.2fs | publish %.2fs add %.2fs read %.2fs "
            "flush %.3fs getstatus p99 %.2fms\n",
            r + 1, b_sha[r], b_write[r], b_uds[r], t_pub[r], t_add[r], t_read[r], t_flush[r],
            p99[r]);
        fprintf(stderr, "rep %d: blockread %.2fs streamread in-frame %.2fs get %.2fs\n", r + 1,
            t_block[r], t_inframe[r], t_get[r]);
        if (restart)
            fprintf(stderr,
                "rep %d: after restart: first read %.3fs later read %.3fs | daemon cpu: read "
                "%.3fs first %.3fs later %.3fs\n",
                r + 1, t_first[r], t_later[r], cpu_read[r], cpu_first[r], cpu_later[r]);
    }
    double mb = (double)len / MiB;
    double sha = median(b_sha, reps), wr = median(b_write, reps), uds = median(b_uds, reps);
    double pub = median(t_pub, reps), add = median(t_add, reps), rd = median(t_read, reps);
    double fl = median(t_flush, reps), p = median(p99, reps);
    double add_base = sha > wr ? sha : wr; /* the slower baseline = the smaller throughput */
    printf("size_mib=%zu reps=%d (medians)\n", mib, reps);
    printf("publish_mib_s=%.0f  baseline openssl_sha256_mib_s=%.0f  ratio=%.2f  target>=0.80 %s\n",
        mb / pub, mb / sha, sha / pub, sha / pub >= 0.8 ? "MET" : "MISSED");
    printf("adddata_mib_s=%.0f  baseline min(openssl_sha256=%.0f, write+fdatasync=%.0f)_mib_s=%.0f "
           " ratio=%.2f  "
           "target>=0.80 %s\n",
        mb / add, mb / sha, mb / wr, mb / add_base, add_base / add,
        add_base / add >= 0.8 ? "MET" : "MISSED");
    /* Each read's ratio to the transfer of the same repetition; median, min, max of those. */
    struct ratio {
        const char *key;
        const double *t;
        double med, min, max, mib_s;
    } rt[] = {{.key = "streamread", .t = t_read}, {.key = "blockread", .t = t_block},
        {.key = "streamread_inframe", .t = t_inframe}, {.key = "get", .t = t_get}};
    int nrt = ctl ? 4 : 3;
    for (int k = 0; k < nrt; k++) {
        double v[20], t[20];
        for (int i = 0; i < reps; i++) {
            v[i] = b_uds[i] / rt[k].t[i];
            t[i] = rt[k].t[i];
        }
        rt[k].mib_s = mb / median(t, reps);
        rt[k].med = median(v, reps); /* sorts v */
        rt[k].min = v[0];
        rt[k].max = v[reps - 1];
        printf("%s_mib_s=%.0f  baseline uds_transfer_mib_s=%.0f  ratio=%.2f (min %.2f max %.2f)  "
               "target>=0.80 %s\n",
            rt[k].key, rt[k].mib_s, mb / uds, rt[k].med, rt[k].min, rt[k].max,
            k == 2                 ? "(before shm: informative)"
                : rt[k].med >= 0.8 ? "MET"
                                   : "MISSED");
    }
    printf("flush_s=%.3f  target<=1.0 %s  getstatus_p99_ms_during_flush=%.2f  target<=10 %s\n", fl,
        fl <= 1.0 ? "MET" : "MISSED", p, p <= 10 ? "MET" : "MISSED");
    if (restart) {
        double first = median(t_first, reps), later = median(t_later, reps);
        printf("first_read_after_restart_mib_s=%.0f  baseline later_read_mib_s=%.0f  "
               "cost=%.2fx the time  (openssl_sha256_mib_s=%.0f)\n",
            mb / first, mb / later, first / later, mb / sha);
        printf(
            "later_read_after_restart_mib_s=%.0f  baseline streamread_before_restart_mib_s=%.0f  "
            "ratio=%.2f  (unchanged: ~1.00)\n",
            mb / later, mb / rd, rd / later);
        if (pidfile) {
            double gib = (double)len / (1024.0 * MiB);
            printf("daemon_cpu_s_per_gib: streamread_before_restart=%.3f  first_read=%.3f  "
                   "later_read=%.3f\n",
                median(cpu_read, reps) / gib, median(cpu_first, reps) / gib,
                median(cpu_later, reps) / gib);
        }
    }
    /*
     * The AddData depth sweep: per repetition, each depth's throughput and its ratio to that
     * repetition's baseline (the slower of openssl and the raw write); medians with min, max.
     */
    char sweep_keys[8192];
    size_t kl = (size_t)snprintf(sweep_keys, sizeof(sweep_keys), " adddata_sweep_size_mib=%zu",
        sweep_mib_n);
    double sweep_base_v[20];
    for (int r = 0; r < reps; r++) {
        /* the baseline's seconds for the sweep's bytes: openssl's, scaled, or the write's */
        double sha_s = b_sha[r] * sweep_mib_n / mb;
        sweep_base_v[r] = (double)sweep_mib_n /
            (sha_s > b_sweep_write[r] ? sha_s : b_sweep_write[r]);
    }
    double sorted[20];
    memcpy(sorted, sweep_base_v, sizeof(sorted));
    double sweep_base = median(sorted, reps); /* sorts its argument */
    for (int i = 0; i < NSWEEP; i++) {
        double v[20], q[20];
        for (int r = 0; r < reps; r++) {
            v[r] = (double)sweep_mib_n / t_sweep[r][i];
            q[r] = v[r] / sweep_base_v[r];
        }
        struct stat3 sv = stat3(v, reps), sq = stat3(q, reps);
        printf("DEPTH adddata inflight_mib=%d mib_s=%.0f mib_s_min=%.0f mib_s_max=%.0f "
               "baseline_mib_s=%.0f ratio=%.2f ratio_min=%.2f ratio_max=%.2f size_mib=%zu\n",
            sweep_mib[i], sv.med, sv.min, sv.max, sweep_base, sq.med, sq.min, sq.max, sweep_mib_n);
        kl += (size_t)snprintf(sweep_keys + kl, sizeof(sweep_keys) - kl,
            " adddata_d%d_mib_s=%.0f adddata_d%d_ratio=%.2f adddata_d%d_ratio_min=%.2f "
            "adddata_d%d_ratio_max=%.2f",
            sweep_mib[i], sv.med, sweep_mib[i], sq.med, sweep_mib[i], sq.min, sweep_mib[i], sq.max);
        /*
         * Where a call's time went at this depth: the daemon's stages (medians of the
         * repetitions' means), and the latency the caller saw (Little's law: bytes in flight
         * over throughput), whose rest is outside the daemon's stages (the socket both ways,
         * reading the request, the library, the caller).
         */
        bool timed = true;
        for (int r = 0; r < reps; r++)
            timed = timed && stage_ms[r][i][0] >= 0;
        if (!timed)
            continue; /* no stages: no -g, an older daemon, or no call counted */
        double st[NSTAGES], in_daemon = 0, lat[20];
        printf("STAGES adddata inflight_mib=%d", sweep_mib[i]);
        for (int s = 0; s < NSTAGES; s++) {
            double m[20];
            for (int r = 0; r < reps; r++)
                m[r] = stage_ms[r][i][s];
            st[s] = median(m, reps);
            in_daemon += st[s];
            printf(" %s_ms=%.2f", stage_keys[s], st[s]);
        }
        /* requests in flight: the depth, or all of a sweep smaller than it */
        double inflight = sweep_mib[i] < (int)sweep_mib_n ? sweep_mib[i] : (double)sweep_mib_n;
        for (int r = 0; r < reps; r++)
            lat[r] = 1e3 * inflight / v[r];
        double caller = median(lat, reps), taken[20];
        for (int r = 0; r < reps; r++)
            taken[r] = stage_ms[r][i][NSTAGES];
        double spares = median(taken, reps);
        printf(" daemon_ms=%.2f caller_ms=%.2f spare_files=%.0f\n", in_daemon, caller, spares);
        kl += (size_t)snprintf(sweep_keys + kl, sizeof(sweep_keys) - kl,
            " adddata_d%d_sync_ms=%.2f adddata_d%d_daemon_ms=%.2f adddata_d%d_caller_ms=%.2f"
            " adddata_d%d_spare_files=%.0f",
            sweep_mib[i], st[3], sweep_mib[i], in_daemon, sweep_mib[i], caller, sweep_mib[i],
            spares);
    }
    /* The durable-write baseline against the sweep's raw write, per repetition. */
    for (int k = 0; k < NDURABLE; k++) {
        double v[20], q[20];
        for (int r = 0; r < reps; r++) {
            v[r] = (double)sweep_mib_n / b_durable[r][k];
            q[r] = b_sweep_write[r] / b_durable[r][k];
        }
        struct stat3 sv = stat3(v, reps), sq = stat3(q, reps);
        printf("DURABLE writes inflight_mib=%d mib_s=%.0f ratio=%.2f ratio_min=%.2f "
               "ratio_max=%.2f\n",
            durable_mib[k], sv.med, sq.med, sq.min, sq.max);
        kl += (size_t)snprintf(sweep_keys + kl, sizeof(sweep_keys) - kl,
            " durable_d%d_mib_s=%.0f durable_d%d_ratio=%.2f", durable_mib[k], sv.med,
            durable_mib[k], sq.med);
    }
    double q[20], v[20];
    for (int r = 0; r < reps; r++) {
        double base = b_sha[r] > b_write[r] ? b_sha[r] : b_write[r];
        q[r] = base / t_add[r];
        v[r] = mb / t_add[r];
    }
    struct stat3 aq = stat3(q, reps), av = stat3(v, reps);
    /* CPU per GiB: what AddData costs against what the baselines cost, whatever the load. */
    double gib = (double)len / (1024.0 * MiB);
    double c_sha = median(cpu_sha, reps) / gib, c_wr = median(cpu_write, reps) / gib;
    double c_add_c = median(cpu_add_c, reps) / gib;
    double c_add_d = pidfile ? median(cpu_add_d, reps) / gib : -1;
    printf("adddata_cpu_s_per_gib: daemon=%.3f client=%.3f  baseline openssl_sha256=%.3f "
           "write+fdatasync=%.3f\n",
        c_add_d, c_add_c, c_sha, c_wr);
    double uds_v[20];
    for (int i = 0; i < reps; i++)
        uds_v[i] = mb / b_uds[i];
    median(uds_v, reps);
    double cu = median(cpu_uds, reps) / gib;
    double cs = median(cpu_shm, reps) / gib, ci_f = median(cpu_inframe, reps) / gib;
    if (pidfile)
        printf("cpu_s_per_gib (both ends): uds_transfer=%.3f  streamread=%.3f (%.2fx)  "
               "streamread_inframe=%.3f (%.2fx)\n",
            cu, cs, cs / cu, ci_f, ci_f / cu);
    if (ctl)
        printf("settle_s=%.2f (waited, in all, for the daemon to reclaim a flush's space before a "
               "figure)\n",
            settle_total);
    double load[1] = {-1};
    getloadavg(load, 1);
    printf("SUMMARY datapath size_mib=%zu reps=%d publish_mib_s=%.0f openssl_sha256_mib_s=%.0f "
           "publish_ratio=%.3f write_fdatasync_mib_s=%.0f adddata_mib_s=%.0f "
           "adddata_mib_s_min=%.0f adddata_mib_s_max=%.0f adddata_baseline_mib_s=%.0f "
           "adddata_ratio=%.2f adddata_ratio_min=%.2f adddata_ratio_max=%.2f "
           "adddata_inflight_mib=%d uds_mib_s=%.0f uds_mib_s_min=%.0f uds_mib_s_max=%.0f "
           "flush_s=%.3f getstatus_p99_ms_during_flush=%.2f%s adddata_daemon_cpu_s_per_gib=%.3f "
           "adddata_client_cpu_s_per_gib=%.3f openssl_sha256_cpu_s_per_gib=%.3f "
           "write_fdatasync_cpu_s_per_gib=%.3f load1=%.2f settle_s=%.2f",
        mib, reps, mb / pub, mb / sha, sha / pub, mb / wr, av.med, av.min, av.max, mb / add_base,
        aq.med, aq.min, aq.max, ADD_DEPTH * (int)(CHUNK / MiB), mb / uds, uds_v[0], uds_v[reps - 1],
        fl, p, sweep_keys, c_add_d, c_add_c, c_sha, c_wr, load[0], settle_total);
    for (int k = 0; k < nrt; k++)
        printf(" %s_mib_s=%.0f %s_ratio=%.3f %s_ratio_min=%.3f %s_ratio_max=%.3f", rt[k].key,
            rt[k].mib_s, rt[k].key, rt[k].med, rt[k].key, rt[k].min, rt[k].key, rt[k].max);
    if (pidfile)
        printf(" uds_cpu_s_per_gib=%.3f streamread_cpu_s_per_gib=%.3f "
               "streamread_inframe_cpu_s_per_gib=%.3f",
            cu, cs, ci_f);
    printf("\n");
    unlink(file);
    free(data);
    free(slots);
    return 0;
}
