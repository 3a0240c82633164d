/* SPDX-License-Identifier: MIT */
/*
 * status_probe.c - a local client's latency on a busy daemon: one PeerDistGetStatus every
 * millisecond on $PEERDIST_SOCKET, each timed, for -t SECONDS or until SIGTERM/SIGINT; then
 * one line: `probe LABEL: n=N p50_ms=.. p99_ms=.. max_ms=..`. Run it idle for the baseline
 * and while the daemon serves peers for the figure (bench/run-distributed.sh does both).
 * Like evict_e2e's probe, but through <peerdist.h>, as an application would call.
 */
#include <peerdist.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    double seconds = 60;
    const char *label = "probe";
    int opt;
    while ((opt = getopt(argc, argv, "t:l:")) != -1) {
        if (opt == 't')
            seconds = atof(optarg);
        else if (opt == 'l')
            label = optarg;
        else {
            fprintf(stderr, "usage: status_probe [-t SECONDS] [-l LABEL]\n");
            return 2;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    HANDLE h;
    DWORD rc = PeerDistStartup(PEERDIST_VERSION, &h, NULL);
    if (rc != ERROR_SUCCESS) {
        fprintf(stderr, "status_probe: PeerDistStartup: %lu\n", (unsigned long)rc);
        return 1;
    }
    size_t cap = (size_t)(seconds * 1000) + 16, n = 0;
    double *lat = malloc(cap * sizeof *lat);
    if (!lat)
        return 1;
    double start = now_ms(), next = start;
    while (!stop && n < cap && now_ms() - start < seconds * 1000) {
        PEERDIST_STATUS st;
        double t0 = now_ms();
        rc = PeerDistGetStatus(h, &st);
        double t1 = now_ms();
        if (rc != ERROR_SUCCESS) {
            fprintf(stderr, "status_probe: PeerDistGetStatus: %lu\n", (unsigned long)rc);
            return 1;
        }
        lat[n++] = t1 - t0;
        /* Every millisecond on a fixed schedule; a slow call is not followed by a burst. */
        next += 1.0;
        if (next < t1)
            next = t1;
        double wait = next - now_ms();
        if (wait > 0) {
            struct timespec ts = {0, (long)(wait * 1e6)};
            nanosleep(&ts, NULL);
        }
    }
    PeerDistShutdown(h);
    if (n == 0) {
        fprintf(stderr, "status_probe: no call made\n");
        return 1;
    }
    qsort(lat, n, sizeof *lat, cmp_double);
    printf("probe %s: n=%zu p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n", label, n, lat[n / 2],
        lat[(size_t)(n * 0.99)], lat[n - 1]);
    free(lat);
    return 0;
}
