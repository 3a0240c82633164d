/* SPDX-License-Identifier: MIT */
/*
 * rtt_placement.c - where a synchronous round trip's time goes, by CPU placement. For each
 * placement of the two ends (free: the scheduler's choice; same: both pinned to CPU 0;
 * cross: client on CPU 0, server on CPU 1) it times, one after the other in each
 * repetition:
 *   raw        a 64 B ping-pong over a socketpair with a forked child (rpc_bench's baseline);
 *   echo       the same, the child a libevent loop answering with recv + send (an event
 *              loop's floor, no framing or protobuf);
 *   getstatus  PeerDistGetStatus against the daemon at $PEERDIST_SOCKET, whose threads
 *              (all of them, /proc/PID/task) are pinned like the child.
 * Prints one line per figure and placement: medians of the repetitions [min..max], and
 * getstatus's ratio to raw and to echo of the same placement. Usage:
 *   rtt_placement -p DAEMON_PID [-r REPS] [-n ITERS]      (bench/run-rpc.sh runs it)
 */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <peerdist.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPS 20
#define WARMUP 1000
#define MSG 64

enum placement { FREE, SAME, CROSS, NPLACE };
static const char *const place_name[NPLACE] = {"free", "same", "cross"};
enum figure { RAW, ECHO, GETSTATUS, NFIG };
static const char *const fig_name[NFIG] = {"raw", "echo", "getstatus"};

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Pins pid (0: this thread) to cpu, or to every CPU when cpu < 0. */
static void pin(pid_t pid, int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    if (cpu < 0) {
        for (int i = 0; i < CPU_SETSIZE; i++)
            CPU_SET(i, &s);
    } else {
        CPU_SET(cpu, &s);
    }
    sched_setaffinity(pid, sizeof(s), &s);
}

/* Every thread of the daemon. */
static void pin_process(pid_t pid, int cpu)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "rtt_placement: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            pin((pid_t)atoi(e->d_name), cpu);
    closedir(d);
}

static int client_cpu(enum placement p)
{
    return p == FREE ? -1 : 0;
}

static int server_cpu(enum placement p)
{
    return p == FREE ? -1 : p == SAME ? 0 : 1;
}

static void on_echo(evutil_socket_t fd, short what, void *base)
{
    (void)what;
    char b[4096];
    ssize_t n = recv(fd, b, sizeof(b), 0);
    if (n <= 0 || send(fd, b, (size_t)n, MSG_NOSIGNAL) != n)
        event_base_loopbreak(base);
}

static void serve(int fd, bool echo)
{
    if (!echo) {
        char b[MSG];
        while (read(fd, b, sizeof(b)) == MSG && write(fd, b, sizeof(b)) == MSG)
            ;
        return;
    }
    struct event_base *base = event_base_new();
    struct event *ev = event_new(base, fd, EV_READ | EV_PERSIST, on_echo, base);
    event_add(ev, NULL);
    event_base_dispatch(base);
    event_free(ev);
    event_base_free(base);
}

/* µs per round trip with a forked server (raw read/write, or a libevent loop). */
static double pair_rtt(enum placement p, bool echo, long iters)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        perror("socketpair");
        exit(1);
    }
    pid_t child = fork();
    if (child == 0) {
        close(sv[0]);
        pin(0, server_cpu(p));
        serve(sv[1], echo);
        _exit(0);
    }
    close(sv[1]);
    pin(0, client_cpu(p));
    char b[MSG] = {0};
    double t0 = 0;
    for (long i = 0; i < WARMUP + iters; i++) {
        if (i == WARMUP)
            t0 = now_us();
        if (write(sv[0], b, sizeof(b)) != MSG || read(sv[0], b, sizeof(b)) != MSG) {
            fprintf(stderr, "rtt_placement: the %s server went away\n", echo ? "echo" : "raw");
            exit(1);
        }
    }
    double us = (now_us() - t0) / (double)iters;
    close(sv[0]);
    waitpid(child, NULL, 0);
    return us;
}

static double getstatus_rtt(PEERDIST_INSTANCE_HANDLE h, pid_t daemon, enum placement p, long iters)
{
    pin_process(daemon, server_cpu(p));
    pin(0, client_cpu(p));
    PEERDIST_STATUS st;
    double t0 = 0;
    for (long i = 0; i < WARMUP + iters; i++) {
        if (i == WARMUP)
            t0 = now_us();
        DWORD rc = PeerDistGetStatus(h, &st);
        if (rc != ERROR_SUCCESS) {
            fprintf(stderr, "rtt_placement: PeerDistGetStatus: %lu\n", (unsigned long)rc);
            exit(1);
        }
    }
    double us = (now_us() - t0) / (double)iters;
    pin_process(daemon, -1);
    pin(0, -1);
    return us;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double s[MAX_REPS];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double extreme(const double *v, int n, int sign)
{
    double x = v[0];
    for (int i = 1; i < n; i++)
        if ((v[i] - x) * sign > 0)
            x = v[i];
    return x;
}

int main(int argc, char **argv)
{
    int reps = 5, ch;
    long iters = 20000;
    pid_t daemon = 0;
    while ((ch = getopt(argc, argv, "p:r:n:")) != -1) {
        if (ch == 'p')
            daemon = (pid_t)atoi(optarg);
        else if (ch == 'r')
            reps = atoi(optarg);
        else if (ch == 'n')
            iters = atol(optarg);
        else
            return 2;
    }
    if (daemon <= 0 || reps < 1 || reps > MAX_REPS || iters < 1 ||
        sysconf(_SC_NPROCESSORS_ONLN) < 2) {
        fprintf(stderr,
            "usage: rtt_placement -p DAEMON_PID [-r REPS 1..%d] [-n ITERS] "
            "(two CPUs or more)\n",
            MAX_REPS);
        return 2;
    }
    PEERDIST_INSTANCE_HANDLE h;
    DWORD ver;
    DWORD rc = PeerDistStartup(1, &h, &ver);
    if (rc != ERROR_SUCCESS) {
        fprintf(stderr, "rtt_placement: PeerDistStartup: %lu\n", (unsigned long)rc);
        return 1;
    }
    static double us[NPLACE][NFIG][MAX_REPS];
    for (int r = 0; r < reps; r++)
        for (int p = 0; p < NPLACE; p++) {
            us[p][RAW][r] = pair_rtt(p, false, iters);
            us[p][ECHO][r] = pair_rtt(p, true, iters);
            us[p][GETSTATUS][r] = getstatus_rtt(h, daemon, p, iters);
        }
    PeerDistShutdown(h);
    for (int p = 0; p < NPLACE; p++) {
        double m[NFIG];
        for (int f = 0; f < NFIG; f++) {
            m[f] = median(us[p][f], reps);
            const char *pl = place_name[p], *fg = fig_name[f];
            printf("PLACEMENT %s_%s_us=%.1f %s_%s_us_min=%.1f %s_%s_us_max=%.1f\n", pl, fg, m[f],
                pl, fg, extreme(us[p][f], reps, -1), pl, fg, extreme(us[p][f], reps, 1));
        }
        printf("PLACEMENT %s_getstatus_vs_raw=%.2f %s_getstatus_vs_echo=%.2f %s_echo_vs_raw=%.2f\n",
            place_name[p], m[GETSTATUS] / m[RAW], place_name[p], m[GETSTATUS] / m[ECHO],
            place_name[p], m[ECHO] / m[RAW]);
    }
    return 0;
}
