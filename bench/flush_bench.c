/* SPDX-License-Identifier: MIT */
/*
 * flush_bench.c - the database side of a flush: store_flush_tag of a tag labelling 1 GiB
 * (16,384 block rows, each with its label, over 32 V1 segments; rows only, no data files),
 * beside its baseline measured in the same repetition on the same database: a plain DELETE
 * of the same number of labels and block rows in one transaction, the least a flush does.
 * Then the same pair over tag sizes from 1 MiB to MAX MiB of labels (16 to 163,840 rows of
 * 64 KiB blocks at 10 GiB), one `CURVE flush bytes=B rows=R ms=M baseline_ms=Bm` line each.
 * Usage: flush_bench [-r REPS] [-m MAX_MiB] [-c CACHE_KiB] [DIR]   (DIR: where the scratch
 * database goes, on the disk the cache would use; default the current directory; -m 0: no size
 * sweep; -c: SQLite's page cache for the connection, default SQLite's 2 MiB).
 */
#include <errno.h>
#include <math.h>
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
#define SWEEP_MIN_REPS 3 /* repetitions per point of the size sweep, at least */
#define BLOCKS_PER_MIB (1024 * 1024 / CI_V1_BLOCK_SIZE)

/* The size sweep, MiB of labels per tag: 1 MiB (16 rows) to 10 GiB (163,840 rows). */
static const unsigned sweep_mib[] = {1, 4, 16, 64, 256, 1024, 4096, 10240};

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

static double min_of(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

static double max_of(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

/* Least-squares slope of log(y) against log(x): the exponent of a power law through them. */
static double loglog_slope(const uint32_t *x, const double *y, size_t n)
{
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (size_t i = 0; i < n; i++) {
        double lx = log((double)x[i]), ly = log(y[i] > 0 ? y[i] : 1e-9);
        sx += lx;
        sy += ly;
        sxx += lx * lx;
        sxy += lx * ly;
    }
    return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "flush_bench: %s\n", what);
        exit(1);
    }
}

static const uint8_t tag[STORE_TAG_SIZE] = {0xf1, 0x05};

/* Shared block rows and uid's labels for `blocks` blocks: segment IDs start with segfill. */
static void fill_rows(struct store *st, uint32_t uid, uint8_t segfill, uint32_t blocks)
{
    uint8_t seg[32] = {segfill}, hash[32] = {0};
    check(store_begin(st) == 0, "BEGIN");
    for (uint32_t s = 0; s * CI_V1_BLOCKS_PER_SEGMENT < blocks; s++) {
        seg[1] = (uint8_t)(s >> 8);
        seg[2] = (uint8_t)s;
        for (uint32_t b = 0;
             b < CI_V1_BLOCKS_PER_SEGMENT && s * CI_V1_BLOCKS_PER_SEGMENT + b < blocks; b++) {
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
static double baseline_ms(struct store *st, uint32_t blocks)
{
    fill_rows(st, 1, 1, blocks);
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
static double flush_ms(struct store *st, uint32_t blocks)
{
    fill_rows(st, 2, 2, blocks);
    struct store_flush_result res;
    double t0 = now_ms();
    check(store_begin(st) == 0, "BEGIN");
    check(store_flush_tag(st, 2, tag, &res) == 0, "store_flush_tag");
    check(store_commit(st) == 0, "COMMIT");
    double t = now_ms() - t0;
    check(res.labels_removed == blocks, "the flush did not remove every label");
    check(res.bytes_freed == (uint64_t)blocks * CI_V1_BLOCK_SIZE,
        "the flush did not count every byte");
    check(count(st, "SELECT count(*) FROM labels") == 0, "labels left after the flush");
    check(count(st, "SELECT count(*) FROM blocks") == 0, "block rows left after the flush");
    return t;
}

int main(int argc, char **argv)
{
    int reps = 5, ch;
    long max_mib = 10240, cache_kib = 0;
    while ((ch = getopt(argc, argv, "r:m:c:")) != -1) {
        if (ch == 'r')
            reps = atoi(optarg);
        else if (ch == 'm')
            max_mib = atol(optarg);
        else if (ch == 'c')
            cache_kib = atol(optarg);
        else
            return 2;
    }
    if (optind + 1 < argc || reps < 1 || reps > MAX_REPS || max_mib < 0) {
        fprintf(stderr, "usage: flush_bench [-r REPS] [-m MAX_MiB] [-c CACHE_KiB] [DIR]\n");
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
    if (cache_kib > 0) { /* -c: SQLite's page cache for this connection (default 2 MiB) */
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA cache_size = -%ld", cache_kib);
        check(sqlite3_exec(store_db(st), pragma, NULL, NULL, NULL) == SQLITE_OK, pragma);
    }

    double base[MAX_REPS], flush[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        base[r] = baseline_ms(st, BLOCKS); /* baseline first, the same moments of a noisy machine */
        flush[r] = flush_ms(st, BLOCKS);
        fprintf(stderr, "rep %d: baseline DELETE %.1f ms | store_flush_tag %.1f ms\n", r + 1,
            base[r], flush[r]);
    }
    double b = median(base, reps), f = median(flush, reps);
    printf("blocks=%d reps=%d (medians)\n", BLOCKS, reps);
    printf("baseline_delete_ms=%.1f\n", b);
    printf("flush_tag_ms=%.1f  ratio=%.2f (flush / baseline)\n", f, f / b);
    fflush(stdout);

    /* The size sweep: flush cost against the tag's size, each point beside its baseline. */
    int sreps = reps < SWEEP_MIN_REPS ? SWEEP_MIN_REPS : reps;
    double pt_ms[sizeof(sweep_mib) / sizeof(sweep_mib[0])];
    double pt_base[sizeof(sweep_mib) / sizeof(sweep_mib[0])];
    uint32_t pt_rows[sizeof(sweep_mib) / sizeof(sweep_mib[0])];
    size_t npts = 0;
    for (size_t i = 0; i < sizeof(sweep_mib) / sizeof(sweep_mib[0]) && sweep_mib[i] <= max_mib;
         i++) {
        uint32_t rows = sweep_mib[i] * BLOCKS_PER_MIB;
        double sb[MAX_REPS], sf[MAX_REPS];
        for (int r = 0; r < sreps; r++) {
            sb[r] = baseline_ms(st, rows);
            sf[r] = flush_ms(st, rows);
        }
        double mb = median(sb, sreps), mf = median(sf, sreps);
        double lo = mf, hi = mf;
        for (int r = 0; r < sreps; r++) {
            lo = sf[r] < lo ? sf[r] : lo;
            hi = sf[r] > hi ? sf[r] : hi;
        }
        printf("CURVE flush bytes=%llu rows=%u ms=%.2f ms_min=%.2f ms_max=%.2f baseline_ms=%.2f "
               "reps=%d\n",
            (unsigned long long)rows * CI_V1_BLOCK_SIZE, rows, mf, lo, hi, mb, sreps);
        fflush(stdout);
        pt_rows[npts] = rows;
        pt_base[npts] = mb;
        pt_ms[npts++] = mf;
    }
    /*
     * Linear or better: the cost of one more row (ms per row between two points) at the large
     * end against the same at the small end. The small end starts at 64 MiB (1024 rows):
     * below it the fixed cost of the transaction and the machine's noise hide the slope.
     */
    double small_per_row = 0, large_per_row = 0;
    size_t first = 0;
    while (first < npts && pt_rows[first] < 1024)
        first++;
    /* The exponent k of ms ~ rows^k, least squares on log-log from 64 MiB on (k <= 1: linear
     * or better), for the flush and for its baseline, which shares the machine's moments. */
    double k_flush = first + 2 < npts ? loglog_slope(pt_rows + first, pt_ms + first, npts - first)
                                      : 0;
    double k_base = first + 2 < npts ? loglog_slope(pt_rows + first, pt_base + first, npts - first)
                                     : 0;
    if (first + 2 < npts) { /* at least one point past the small end's two */
        small_per_row = (pt_ms[first + 1] - pt_ms[first]) / (pt_rows[first + 1] - pt_rows[first]);
        large_per_row = (pt_ms[npts - 1] - pt_ms[npts - 2]) /
            (pt_rows[npts - 1] - pt_rows[npts - 2]);
    }
    store_close(st);
    char cmd[4300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    check(system(cmd) == 0, "removing the scratch directory");

    printf("SUMMARY flush_bench blocks=%d baseline_delete_ms=%.1f flush_tag_ms=%.1f ratio=%.2f",
        BLOCKS, b, f, f / b);
    printf(" flush_tag_ms_min=%.1f flush_tag_ms_max=%.1f", min_of(flush, reps),
        max_of(flush, reps));
    if (small_per_row > 0)
        printf(" small_us_per_row=%.3f large_us_per_row=%.3f large_small_ratio=%.2f",
            small_per_row * 1e3, large_per_row * 1e3, large_per_row / small_per_row);
    if (k_flush > 0)
        printf(" curve_exponent=%.2f baseline_curve_exponent=%.2f", k_flush, k_base);
    printf("\n");
    return 0;
}
