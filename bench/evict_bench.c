/* SPDX-License-Identifier: MIT */
/*
 * evict_bench.c - the database side of eviction: a cache of 1 GiB (16,384 shared block rows
 * with their labels over 32 V1 segments; rows only, no data files) brought under a 64 MiB
 * limit by peerdistd's eviction passes (daemon/evict.c), slice after slice, beside its
 * baseline measured in the same repetition on the same database: a plain DELETE of as many
 * labels and block rows in one transaction. It prints the bytes evicted per second and the
 * longest pass, which is how long the write gate stays closed at a time (other clients'
 * writes wait that long at most; their reads do not wait, WAL).
 * Usage: evict_bench [-r REPS] [DIR]   (DIR: where the scratch database goes).
 */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blockstore.h"
#include "contentinfo.h"
#include "daemon.h"
#include "evict.h"
#include "log.h"
#include "store.h"
#include "worker.h"

#define SEGMENTS 32 /* x 512 blocks of 64 KiB: 1 GiB */
#define BLOCKS (SEGMENTS * CI_V1_BLOCKS_PER_SEGMENT)
#define MAX_REPS 20

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

static double median(const double *v, int n)
{
    double s[MAX_REPS];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "evict_bench: %s\n", what);
        exit(1);
    }
}

static const uint8_t tag[STORE_TAG_SIZE] = {0xe5};

/* 1 GiB of shared rows and labels, segment IDs starting with segfill, older segments first. */
static void fill_rows(struct store *st, uint8_t segfill)
{
    uint8_t seg[32] = {segfill}, hash[32] = {0};
    int64_t now = (int64_t)time(NULL);
    check(store_begin(st) == 0, "BEGIN");
    for (uint32_t s = 0; s < SEGMENTS; s++) {
        seg[1] = (uint8_t)s;
        for (uint32_t b = 0; b < CI_V1_BLOCKS_PER_SEGMENT; b++) {
            check(store_block_put(st, seg, sizeof(seg), b, STORE_OWNER_SHARED, hash, sizeof(hash),
                      CI_V1_BLOCK_SIZE, STORE_OWNER_SHARED) == 0,
                "block row");
            check(store_label_put(st, 1, tag, seg, sizeof(seg), b, CI_V1_BLOCK_SIZE) == 0, "label");
        }
        check(store_segment_used(st, seg, sizeof(seg), now - 1000 + s) == 0, "recency");
    }
    check(store_commit(st) == 0, "COMMIT");
}

static double baseline_ms(struct store *st, uint64_t rows)
{
    fill_rows(st, 1);
    char sql[256];
    double t0 = now_ms();
    check(store_begin(st) == 0, "BEGIN");
    /* The rows of the oldest rows / 512 segments, by their segment-ID prefix. */
    snprintf(sql, sizeof(sql),
        "DELETE FROM labels WHERE segment_id >= x'01' AND segment_id < x'01%02x'",
        (unsigned)(rows / CI_V1_BLOCKS_PER_SEGMENT));
    check(sqlite3_exec(store_db(st), sql, NULL, NULL, NULL) == SQLITE_OK, "DELETE labels");
    snprintf(sql, sizeof(sql),
        "DELETE FROM blocks WHERE segment_id >= x'01' AND segment_id < x'01%02x'",
        (unsigned)(rows / CI_V1_BLOCKS_PER_SEGMENT));
    check(sqlite3_exec(store_db(st), sql, NULL, NULL, NULL) == SQLITE_OK, "DELETE blocks");
    check(store_commit(st) == 0, "COMMIT");
    double t = now_ms() - t0;
    check(sqlite3_exec(store_db(st),
              "DELETE FROM labels; DELETE FROM blocks; DELETE FROM segment_use", NULL, NULL,
              NULL) == SQLITE_OK,
        "clearing");
    return t;
}

/* Eviction passes until the cache is under its limit; the longest pass in *longest. */
static double evict_ms(struct daemon *d, struct store *flush_conn, double *longest, int *passes)
{
    fill_rows(d->store, 2);
    evict_note_added(d, (uint64_t)BLOCKS * CI_V1_BLOCK_SIZE); /* as AddData would tell it */
    double t0 = now_ms();
    *longest = 0;
    *passes = 0;
    bool more = true;
    while (more) {
        double p0 = now_ms();
        struct evict_pass *p = evict_pass_new(d);
        check(p != NULL, "evict_pass_new");
        evict_pass_work(p, flush_conn);
        more = evict_pass_done(p);
        double pt = now_ms() - p0;
        if (pt > *longest)
            *longest = pt;
        (*passes)++;
    }
    return now_ms() - t0;
}

int main(int argc, char **argv)
{
    int reps = 5, ch;
    while ((ch = getopt(argc, argv, "r:")) != -1) {
        if (ch == 'r')
            reps = atoi(optarg);
        else
            return 2;
    }
    if (optind + 1 < argc || reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: evict_bench [-r REPS] [DIR]\n");
        return 2;
    }
    char dir[2048], why[200], err[256];
    snprintf(dir, sizeof(dir), "%s/evict-bench.XXXXXX", optind < argc ? argv[optind] : ".");
    check(mkdtemp(dir) != NULL, strerror(errno));
    log_set_level(LOG_LVL_WARN);
    static struct daemon d;
    config_defaults(&d.cfg);
    snprintf(d.cfg.db_path, sizeof(d.cfg.db_path), "%s/cache.db", dir);
    snprintf(d.cfg.state_dir, sizeof(d.cfg.state_dir), "%s", dir);
    check(config_parse_cache_size("64M", &d.cfg.cache_size, why, sizeof(why)) == 0, why);
    check((d.base = event_base_new()) != NULL, "event_base_new");
    check((d.workers = worker_pool_new(d.base, 2)) != NULL, "worker_pool_new");
    check(store_open(d.cfg.db_path, &d.store, err, sizeof(err)) == 0, err);
    check(bs_open(d.cfg.db_path, d.workers, &d.bs) == 0, "bs_open");
    struct store *flush_conn;
    check(store_open(d.cfg.db_path, &flush_conn, err, sizeof(err)) == 0, err);
    check(evict_init(&d) == 0, "evict_init");

    /* Down to 90% of 64 MiB (57.6 MiB): 31 of the 32 segments go. */
    uint64_t evicted = (uint64_t)(SEGMENTS - 1) * CI_V1_BLOCKS_PER_SEGMENT * CI_V1_BLOCK_SIZE;
    double base[MAX_REPS], ev[MAX_REPS], worst[MAX_REPS];
    int passes = 0;
    for (int r = 0; r < reps; r++) {
        base[r] = baseline_ms(d.store, evicted / CI_V1_BLOCK_SIZE);
        ev[r] = evict_ms(&d, flush_conn, &worst[r], &passes);
        check(store_stored_bytes(d.store) == 1ll * CI_V1_BLOCKS_PER_SEGMENT * CI_V1_BLOCK_SIZE,
            "eviction did not leave the newest segment alone");
        fprintf(stderr,
            "rep %d: baseline DELETE %.1f ms | eviction %.1f ms in %d passes, longest %.1f ms\n",
            r + 1, base[r], ev[r], passes, worst[r]);
        check(sqlite3_exec(store_db(d.store),
                  "DELETE FROM labels; DELETE FROM blocks; DELETE FROM segment_use", NULL, NULL,
                  NULL) == SQLITE_OK,
            "clearing");
    }
    evict_free(&d);
    worker_pool_free(d.workers); /* reclaim jobs (no files: nothing to punch) end */
    bs_close(d.bs);
    store_close(flush_conn);
    store_close(d.store);
    event_base_free(d.base);
    char cmd[4300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    check(system(cmd) == 0, "removing the scratch directory");

    double b = median(base, reps), e = median(ev, reps), w = median(worst, reps);
    double mib_s = (double)evicted / (1 << 20) / (e / 1e3);
    printf("evicted_bytes=%llu passes=%d reps=%d (medians)\n", (unsigned long long)evicted, passes,
        reps);
    printf("baseline_delete_ms=%.1f\n", b);
    printf("evict_ms=%.1f  ratio=%.2f (eviction / baseline)  evicted_MiB_per_s=%.0f\n", e, e / b,
        mib_s);
    printf("longest_pass_ms=%.1f (the write gate closed at most this long at a time)\n", w);
    printf("SUMMARY evict_bench baseline_delete_ms=%.1f evict_ms=%.1f ratio=%.2f "
           "evicted_MiB_per_s=%.0f longest_pass_ms=%.1f\n",
        b, e, e / b, mib_s, w);
    return 0;
}
