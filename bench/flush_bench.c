/* SPDX-License-Identifier: MIT */
/*
 * flush_bench.c - the database side of a flush: store_flush_tag of a tag labelling 1 GiB
 * (16,384 block rows, each with its label, over 32 V1 segments; rows only, no data files),
 * beside its baseline measured in the same repetition on the same database: a plain DELETE
 * of the same number of labels and block rows in one transaction, the least a flush does.
 * Usage: flush_bench [-r REPS] [DIR]   (DIR: where the scratch database goes, on the disk
 * the cache would use; default the current directory).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "contentinfo.h"
#include "log.h"
#include "store.h"

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
        fprintf(stderr, "flush_bench: %s\n", what);
        exit(1);
    }
}

static const uint8_t tag[STORE_TAG_SIZE] = {0xf1, 0x05};

/* Shared block rows and uid's labels for 1 GiB: segment IDs start with segfill. */
static void fill_rows(struct store *st, uint32_t uid, uint8_t segfill)
{
    uint8_t seg[32] = {segfill}, hash[32] = {0};
    check(store_begin(st) == 0, "BEGIN");
    for (uint32_t s = 0; s < SEGMENTS; s++) {
        seg[1] = (uint8_t)s;
        for (uint32_t b = 0; b < CI_V1_BLOCKS_PER_SEGMENT; b++) {
            check(store_block_put(st, seg, sizeof(seg), b, STORE_OWNER_SHARED, hash, sizeof(hash),
                      CI_V1_BLOCK_SIZE, STORE_OWNER_SHARED) == 0,
                "block row");
            check(store_label_put(st, uid, tag, seg, sizeof(seg), b, CI_V1_BLOCK_SIZE) == 0,
                "label");
        }
    }
    check(store_commit(st) == 0, "COMMIT");
}

static long long count(struct store *st, const char *sql)
{
    sqlite3_stmt *s;
    check(sqlite3_prepare_v2(store_db(st), sql, -1, &s, NULL) == SQLITE_OK, sql);
    check(sqlite3_step(s) == SQLITE_ROW, sql);
    long long n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

/* The baseline: a plain DELETE of uid 1's labels and of the rows of segments 0x01... */
static double baseline_ms(struct store *st)
{
    fill_rows(st, 1, 1);
    double t0 = now_ms();
    check(store_begin(st) == 0, "BEGIN");
    check(sqlite3_exec(store_db(st), "DELETE FROM labels WHERE uid = 1", NULL, NULL, NULL) ==
            SQLITE_OK,
        "DELETE labels");
    check(sqlite3_exec(store_db(st),
              "DELETE FROM blocks WHERE segment_id >= x'01' AND segment_id < x'02'", NULL, NULL,
              NULL) == SQLITE_OK,
        "DELETE blocks");
    check(store_commit(st) == 0, "COMMIT");
    return now_ms() - t0;
}

/* peerdistd's flush transaction of uid 2's tag; it must remove every label and block row. */
static double flush_ms(struct store *st)
{
    fill_rows(st, 2, 2);
    struct store_flush_result res;
    double t0 = now_ms();
    check(store_begin(st) == 0, "BEGIN");
    check(store_flush_tag(st, 2, tag, &res) == 0, "store_flush_tag");
    check(store_commit(st) == 0, "COMMIT");
    double t = now_ms() - t0;
    check(res.labels_removed == BLOCKS, "the flush did not remove every label");
    check(res.bytes_freed == (uint64_t)BLOCKS * CI_V1_BLOCK_SIZE,
        "the flush did not count every byte");
    check(count(st, "SELECT count(*) FROM labels") == 0, "labels left after the flush");
    check(count(st, "SELECT count(*) FROM blocks") == 0, "block rows left after the flush");
    return t;
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
        fprintf(stderr, "usage: flush_bench [-r REPS] [DIR]\n");
        return 2;
    }
    char dir[4096], path[4200];
    snprintf(dir, sizeof(dir), "%s/flush-bench.XXXXXX", optind < argc ? argv[optind] : ".");
    check(mkdtemp(dir) != NULL, strerror(errno));
    snprintf(path, sizeof(path), "%s/cache.db", dir);
    log_set_level(LOG_LVL_WARN);
    struct store *st;
    char err[256];
    check(store_open(path, &st, err, sizeof(err)) == 0, err);

    double base[MAX_REPS], flush[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        base[r] = baseline_ms(st); /* baseline first, the same moments of a noisy machine */
        flush[r] = flush_ms(st);
        fprintf(stderr, "rep %d: baseline DELETE %.1f ms | store_flush_tag %.1f ms\n", r + 1,
            base[r], flush[r]);
    }
    store_close(st);
    char cmd[4300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    check(system(cmd) == 0, "removing the scratch directory");

    double b = median(base, reps), f = median(flush, reps);
    printf("blocks=%d reps=%d (medians)\n", BLOCKS, reps);
    printf("baseline_delete_ms=%.1f\n", b);
    printf("flush_tag_ms=%.1f  ratio=%.2f (flush / baseline)\n", f, f / b);
    printf("SUMMARY flush_bench blocks=%d baseline_delete_ms=%.1f flush_tag_ms=%.1f ratio=%.2f\n",
        BLOCKS, b, f, f / b);
    return 0;
}
