/* SPDX-License-Identifier: MIT */
/*
 * test_cache.c - the bounded cache against a real peerdistd, in raw frames: eviction of the
 * least recently used segments under a small cache_size while a reader reads (no wrong byte,
 * the recently read segment stays), expiry through the test clock hook, the counters across a
 * restart, uid_quota, CacheSet (admins only, override precedence, reset, restart), SIGHUP
 * reload of cache_size, and the inspection views read with `sqlite3 -readonly`.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <peerdist.h>

#include "blockstore.h"
#include "check_run.h"
#include "contentinfo.h"
#include "daemon.h"
#include "evict.h"
#include "frame.h"
#include "harness.h"
#include "store.h"
#include "wire_util.h"
#include "worker.h"

#define MIB (1024u * 1024)

static struct test_daemon td;
static char clock_file[160];

/* ---- frames (tests/wire_util.c): these run in threads and in forked children too, where
 * ck_assert must not ---- */

/* The reply (NULL on a broken connection); *status its status. */
static Peerdist__Reply *try_call(int fd, Peerdist__Request *req, uint32_t *status)
{
    Peerdist__Reply *r = wu_call(fd, req);
    if (r)
        *status = r->status;
    return r;
}

static Peerdist__Reply *call(int fd, Peerdist__Request *req, uint32_t expect)
{
    uint32_t status = 0;
    Peerdist__Reply *r = try_call(fd, req, &status);
    ck_assert_msg(r, "request %d: no reply", req->body_case);
    ck_assert_msg(status == expect, "request %d: status %u, expected %u", req->body_case, status,
        expect);
    return r;
}

static void call_free(int fd, Peerdist__Request *req, uint32_t expect)
{
    peerdist__reply__free_unpacked(call(fd, req, expect), NULL);
}

static int wire_connect(void)
{
    int fd = wu_open(td.sock);
    ck_assert_int_ge(fd, 0);
    return fd;
}

/* ---- content ---- */

struct content {
    uint8_t *data;
    size_t len;
    uint8_t *ci;
    size_t cilen;
};

static void content_make(struct content *c, size_t len, unsigned seed)
{
    c->len = len;
    c->data = malloc(len);
    ck_assert_ptr_nonnull(c->data);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c->data[i] = (uint8_t)x;
    }
    struct ci_secret ks;
    ck_assert_int_eq(ci_secret_from_passphrase(CI_HASH_SHA256, "test-passphrase", 15, &ks), 0);
    struct ci_gen *g = ci_gen_new(CI_VERSION_1, &ks);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(ci_gen_feed(g, c->data, len), 0);
    struct ci_info *ci;
    ck_assert_int_eq(ci_gen_finish(g, &ci), 0);
    ci_gen_free(g);
    ck_assert_int_eq(ci_serialize(ci, &c->ci, &c->cilen), 0);
    ci_info_free(ci);
}

static void content_free(struct content *c)
{
    free(c->data);
    free(c->ci);
}

/* Opens a handle for c under tag and completes its content information; 0 on failure. */
static uint64_t try_open(int fd, const struct content *c, const uint8_t *tag)
{
    Peerdist__OpenContentRequest o = PEERDIST__OPEN_CONTENT_REQUEST__INIT;
    o.tag.data = (uint8_t *)tag;
    o.tag.len = 16;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_OPEN_CONTENT;
    req.open_content = &o;
    uint32_t st = 1;
    Peerdist__Reply *r = try_call(fd, &req, &st);
    if (!r || st != 0) {
        if (r)
            peerdist__reply__free_unpacked(r, NULL);
        return 0;
    }
    uint64_t h = r->open_content->handle;
    peerdist__reply__free_unpacked(r, NULL);
    Peerdist__AddContentInfoRequest a = PEERDIST__ADD_CONTENT_INFO_REQUEST__INIT;
    a.handle = h;
    a.data.data = c->ci;
    a.data.len = c->cilen;
    req.body_case = PEERDIST__REQUEST__BODY_ADD_CONTENT_INFO;
    req.add_content_info = &a;
    if (!(r = try_call(fd, &req, &st)) || st != 0)
        h = 0;
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    Peerdist__CompleteContentInfoRequest cc = PEERDIST__COMPLETE_CONTENT_INFO_REQUEST__INIT;
    cc.handle = h;
    req.body_case = PEERDIST__REQUEST__BODY_COMPLETE_CONTENT_INFO;
    req.complete_content_info = &cc;
    if (!(r = try_call(fd, &req, &st)) || st != 0)
        h = 0;
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    return h;
}

static uint64_t wire_open(int fd, const struct content *c, const uint8_t *tag)
{
    uint64_t h = try_open(fd, c, tag);
    ck_assert_uint_ne(h, 0);
    return h;
}

/* Adds all of c through handle h, in 512 KiB calls. 0, or -1. */
static int try_add(int fd, uint64_t h, const struct content *c)
{
    for (size_t off = 0; off < c->len; off += 512 * 1024) {
        size_t n = c->len - off < 512 * 1024 ? c->len - off : 512 * 1024;
        Peerdist__AddDataRequest a = PEERDIST__ADD_DATA_REQUEST__INIT;
        a.handle = h;
        a.offset = off;
        a.data.data = c->data + off;
        a.data.len = n;
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.body_case = PEERDIST__REQUEST__BODY_ADD_DATA;
        req.add_data = &a;
        uint32_t st = 1;
        Peerdist__Reply *r = try_call(fd, &req, &st);
        if (r)
            peerdist__reply__free_unpacked(r, NULL);
        if (!r || st != 0)
            return -1;
    }
    return 0;
}

static void add_content(int fd, const struct content *c, const uint8_t *tag)
{
    uint64_t h = wire_open(fd, c, tag);
    ck_assert_int_eq(try_add(fd, h, c), 0);
}

/*
 * One block read of up to max bytes at off: the status; on success the bytes are compared
 * with c (*wrong set if one differs) and *len is how many came; on MISSING_DATA *len is the
 * missing length. -1: no reply.
 */
static long try_read(int fd, uint64_t h, const struct content *c, uint64_t off, uint32_t max,
    uint64_t *len, bool *wrong)
{
    Peerdist__ReadRequest a = PEERDIST__READ_REQUEST__INIT;
    a.handle = h;
    a.offset = off;
    a.max_bytes = max;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_READ;
    req.read = &a;
    uint32_t st = 1;
    Peerdist__Reply *r = try_call(fd, &req, &st);
    if (!r)
        return -1;
    if (r->body_case == PEERDIST__REPLY__BODY_READ) {
        *len = st == 0 ? r->read->data.len : r->read->length;
        if (st == 0 && r->read->data.len &&
            (r->read->offset != off || off + r->read->data.len > c->len ||
                memcmp(r->read->data.data, c->data + off, r->read->data.len) != 0))
            *wrong = true;
    }
    peerdist__reply__free_unpacked(r, NULL);
    return (long)st;
}

/* Reads all of c through h; true when every byte came and matched. */
static bool read_all(int fd, uint64_t h, const struct content *c)
{
    bool wrong = false;
    for (uint64_t off = 0; off < c->len;) {
        uint64_t n = 0;
        if (try_read(fd, h, c, off, MIB, &n, &wrong) != 0 || wrong || n == 0)
            return false;
        off += n;
    }
    return true;
}

/* ---- administration ---- */

static Peerdist__Reply *cache_info(int fd)
{
    Peerdist__CacheInfoRequest ci = PEERDIST__CACHE_INFO_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_CACHE_INFO;
    req.cache_info = &ci;
    Peerdist__Reply *r = call(fd, &req, ERROR_SUCCESS);
    ck_assert_int_eq(r->body_case, PEERDIST__REPLY__BODY_CACHE_INFO);
    return r;
}

static uint32_t cache_set(int fd, const char *size, const char *age, bool reset)
{
    Peerdist__CacheSetRequest cs = PEERDIST__CACHE_SET_REQUEST__INIT;
    cs.cache_size = (char *)(size ? size : "");
    cs.max_age = (char *)(age ? age : "");
    cs.reset = reset;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_CACHE_SET;
    req.cache_set = &cs;
    uint32_t st = 1;
    Peerdist__Reply *r = try_call(fd, &req, &st);
    ck_assert_ptr_nonnull(r);
    peerdist__reply__free_unpacked(r, NULL);
    return st;
}

/* The Tags reply (all: every uid's), with status st. */
static Peerdist__Reply *tags(int fd, bool all, uint32_t *st)
{
    Peerdist__TagsRequest t = PEERDIST__TAGS_REQUEST__INIT;
    t.all = all;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_TAGS;
    req.tags = &t;
    Peerdist__Reply *r = try_call(fd, &req, st);
    ck_assert_ptr_nonnull(r);
    return r;
}

static const Peerdist__TagInfo *find_tag(const Peerdist__Reply *r, uint32_t uid, const uint8_t *tag)
{
    for (size_t i = 0; r->tags && i < r->tags->n_tags; i++) {
        const Peerdist__TagInfo *t = r->tags->tags[i];
        if (t->uid == uid && t->tag.len == 16 && memcmp(t->tag.data, tag, 16) == 0)
            return t;
    }
    return NULL;
}

/* ---- the daemon: configuration and clock ---- */

static void write_conf(const char *extra)
{
    FILE *f = fopen(td.conf, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "[peerdistd]\nmode = local\nlog_level = debug\nstate_dir = %s/state\n%s", td.dir,
        extra);
    fclose(f);
}

/* The daemon's clock runs `offset` seconds ahead from its next SIGHUP (or eviction pass). */
static void set_clock(long offset)
{
    FILE *f = fopen(clock_file, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%ld\n", offset);
    fclose(f);
}

struct log_wait {
    const char *needle;
    int count;
};

static bool log_has(void *arg)
{
    struct log_wait *w = arg;
    return td_log_count(&td, w->needle) >= w->count;
}

/* Moves the clock and waits until the daemon says it did (the SIGHUP also runs a pass). */
static void shift_clock(long offset)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "test clock: offset %ld s", offset);
    struct log_wait w = {needle, td_log_count(&td, needle) + 1};
    set_clock(offset);
    td_signal(&td, SIGHUP);
    ck_assert_msg(td_wait_until(log_has, &w), "the daemon never took clock offset %ld", offset);
}

static void start_with(const char *extra)
{
    td_init(&td, "local");
    write_conf(extra);
    snprintf(clock_file, sizeof(clock_file), "%s/clock", td.dir);
    set_clock(0);
    setenv("PEERDIST_TEST_CLOCK_OFFSET_FILE", clock_file, 1);
    td_start(&td);
}

static void teardown(void)
{
    /* A clean stop (exit 0; under a sanitizer, no report either). */
    ck_assert_int_eq(td_stop(&td), 0);
    td_cleanup(&td);
    unsetenv("PEERDIST_TEST_CLOCK_OFFSET_FILE");
}

/* Waits for a pass to be over: a CacheInfo waits for a running pass, then answers. */
struct info_cond {
    int fd;
    uint64_t segments;
    uint64_t limit;
};

static bool segments_are(void *arg)
{
    struct info_cond *c = arg;
    Peerdist__Reply *r = cache_info(c->fd);
    bool ok = r->cache_info->segments == c->segments;
    peerdist__reply__free_unpacked(r, NULL);
    return ok;
}

static bool limit_is(void *arg)
{
    struct info_cond *c = arg;
    Peerdist__Reply *r = cache_info(c->fd);
    bool ok = r->cache_info->limit_bytes == c->limit;
    peerdist__reply__free_unpacked(r, NULL);
    return ok;
}

/* ---- eviction under a small limit while a reader reads ---- */

struct reader {
    const struct content *c;
    atomic_bool stop;
    atomic_ulong reads, missing, wrong, failed;
};

static void *reader_main(void *arg)
{
    struct reader *rd = arg;
    static const uint8_t tag[16] = {0x77};
    int fd = wu_open(td.sock);
    if (fd < 0) {
        rd->failed++;
        return NULL;
    }
    uint64_t h = try_open(fd, rd->c, tag);
    if (!h) {
        rd->failed++;
        close(fd);
        return NULL;
    }
    uint64_t off = 0;
    while (!atomic_load(&rd->stop)) {
        uint64_t n = 0;
        bool wrong = false;
        long st = try_read(fd, h, rd->c, off, 256 * 1024, &n, &wrong);
        if (st < 0) {
            rd->failed++;
            break;
        }
        rd->reads++;
        if (wrong)
            rd->wrong++;
        if (st == PEERDIST_ERROR_MISSING_DATA)
            rd->missing++;
        off = (off + 256 * 1024 * 3) % rd->c->len;
    }
    close(fd);
    return NULL;
}

START_TEST(eviction_takes_the_least_recently_used)
{
    start_with("cache_size = 64M\n");
    struct content a, b, c;
    content_make(&a, 24 * MIB, 1);
    content_make(&b, 24 * MIB, 2);
    content_make(&c, 24 * MIB, 3);
    static const uint8_t tag[16] = {0xca, 0xc4};
    int fd = wire_connect();
    add_content(fd, &a, tag);
    shift_clock(1000);
    add_content(fd, &b, tag);
    shift_clock(2000);
    /* A is read from now on, by another connection, all the time C is added. */
    struct reader rd = {.c = &a};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, reader_main, &rd), 0);
    while (atomic_load(&rd.reads) < 10 && !atomic_load(&rd.failed))
        usleep(1000);
    shift_clock(3000);
    add_content(fd, &c, tag); /* 72 MiB > 64M: a pass evicts B, the least recently used */
    struct info_cond ic = {fd, 2, 0};
    ck_assert_msg(td_wait_until(segments_are, &ic), "eviction did not leave two segments");
    atomic_store(&rd.stop, true);
    pthread_join(th, NULL);
    ck_assert_uint_eq(rd.failed, 0);
    ck_assert_uint_eq(rd.wrong, 0);
    ck_assert_uint_eq(rd.missing, 0); /* the segment being read stayed */
    ck_assert_uint_gt(rd.reads, 10);

    uint64_t hb = wire_open(fd, &b, tag), n = 0;
    bool wrong = false;
    ck_assert_int_eq(try_read(fd, hb, &b, 0, 1000, &n, &wrong), PEERDIST_ERROR_MISSING_DATA);
    ck_assert(read_all(fd, wire_open(fd, &a, tag), &a));
    ck_assert(read_all(fd, wire_open(fd, &c, tag), &c));
    Peerdist__Reply *r = cache_info(fd);
    ck_assert_uint_eq(r->cache_info->limit_bytes, 64ull * MIB);
    ck_assert_str_eq(r->cache_info->cache_size, "64M");
    ck_assert_str_eq(r->cache_info->cache_size_source, "file");
    ck_assert_uint_eq(r->cache_info->stored_bytes, 48ull * MIB);
    ck_assert_uint_eq(r->cache_info->blocks, 2 * 24 * 16);
    ck_assert_uint_eq(r->cache_info->evicted_size_bytes, 24ull * MIB);
    ck_assert_uint_eq(r->cache_info->evicted_age_bytes, 0);
    ck_assert_uint_eq(r->cache_info->added_bytes, 72ull * MIB);
    ck_assert_uint_ge(r->cache_info->used_bytes, 48ull * MIB);
    ck_assert_uint_eq(r->cache_info->tags, 1); /* the reader only reads: no label */
    peerdist__reply__free_unpacked(r, NULL);
    /* The tag lost B's segment with it. */
    uint32_t st;
    r = tags(fd, false, &st);
    ck_assert_uint_eq(st, 0);
    const Peerdist__TagInfo *t = find_tag(r, 0, tag);
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(t->segments, 2);
    ck_assert_uint_eq(t->bytes, 48ull * MIB);
    peerdist__reply__free_unpacked(r, NULL);
    close(fd);
    content_free(&a);
    content_free(&b);
    content_free(&c);
}
END_TEST

/* ---- expiry with the test clock ---- */

START_TEST(segments_expire_after_max_age)
{
    start_with("max_age = 1h\n");
    struct content a, b;
    content_make(&a, 300 * 1024, 4);
    content_make(&b, 200 * 1024, 5);
    static const uint8_t tag[16] = {0xe1};
    int fd = wire_connect();
    add_content(fd, &a, tag);
    shift_clock(3000);
    add_content(fd, &b, tag);
    shift_clock(3700); /* a: 3700 s since its add; b: 700 s */
    struct info_cond ic = {fd, 1, 0};
    ck_assert_msg(td_wait_until(segments_are, &ic), "a did not expire");
    Peerdist__Reply *r = cache_info(fd);
    ck_assert_uint_eq(r->cache_info->evicted_age_bytes, a.len);
    ck_assert_uint_eq(r->cache_info->evicted_size_bytes, 0);
    ck_assert_uint_eq(r->cache_info->max_age_s, 3600);
    ck_assert_str_eq(r->cache_info->max_age, "1h");
    peerdist__reply__free_unpacked(r, NULL);
    uint64_t n = 0;
    bool wrong = false;
    ck_assert_int_eq(try_read(fd, wire_open(fd, &a, tag), &a, 0, 100, &n, &wrong),
        PEERDIST_ERROR_MISSING_DATA);
    /* A read keeps b: used at 6000, it is 1000 s old at 7000 (its add was 4000 s before). */
    shift_clock(6000);
    ck_assert(read_all(fd, wire_open(fd, &b, tag), &b));
    /* The Tags reply has the read as b's last use at once (not a pass later). */
    uint32_t st;
    int64_t now = (int64_t)time(NULL);
    r = tags(fd, false, &st);
    ck_assert_uint_eq(st, 0);
    const Peerdist__TagInfo *t = find_tag(r, 0, tag);
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(t->segments, 1);
    ck_assert_int_ge((int64_t)t->last_used, now + 6000 - 5);
    ck_assert_int_le((int64_t)t->last_used, now + 6000 + 5);
    ck_assert_int_le((int64_t)t->added_at, now + 3000 + 5); /* the first label: a's, at 0 */
    peerdist__reply__free_unpacked(r, NULL);
    shift_clock(7000);
    ck_assert(read_all(fd, wire_open(fd, &b, tag), &b));
    shift_clock(10700);
    ic.segments = 0;
    ck_assert_msg(td_wait_until(segments_are, &ic), "b did not expire");
    close(fd);
    content_free(&a);
    content_free(&b);
}
END_TEST

/* ---- counters ---- */

START_TEST(counters_are_exact_and_kept)
{
    start_with("");
    struct content a, b;
    content_make(&a, 300 * 1024 + 17, 6);
    content_make(&b, 100 * 1024, 7);
    static const uint8_t tag[16] = {0xc0};
    int fd = wire_connect();
    uint64_t ha = wire_open(fd, &a, tag);
    ck_assert_int_eq(try_add(fd, ha, &a), 0);
    uint64_t n = 0;
    bool wrong = false;
    ck_assert_int_eq(try_read(fd, ha, &a, 0, 1000, &n, &wrong), 0); /* hit 1000 */
    ck_assert_int_eq(try_read(fd, ha, &a, 5000, 0, &n, &wrong), 0); /* a query: not counted */
    ck_assert_int_eq(try_read(fd, ha, &a, a.len - 17, 1000, &n, &wrong), 0); /* hit 17 */
    uint64_t hb = wire_open(fd, &b, tag);
    ck_assert_int_eq(try_read(fd, hb, &b, 0, 1000, &n, &wrong), PEERDIST_ERROR_MISSING_DATA);
    ck_assert_uint_eq(n, b.len); /* miss: min(1000, whole b) = 1000 */
    ck_assert_int_eq(try_read(fd, hb, &b, b.len - 10, 1000, &n, &wrong),
        PEERDIST_ERROR_MISSING_DATA);                            /* miss: min(1000, 10) = 10 */
    ck_assert_int_eq(try_read(fd, hb, &b, 0, 0, &n, &wrong), 0); /* a query: not counted */
    static const uint8_t other[16] = {0xc1};
    uint64_t ho = wire_open(fd, &b, other);
    ck_assert_int_eq(try_add(fd, ho, &b), 0);
    Peerdist__FlushRequest f = PEERDIST__FLUSH_REQUEST__INIT;
    f.tag.data = (uint8_t *)other;
    f.tag.len = 16;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_FLUSH;
    req.flush = &f;
    call_free(fd, &req, ERROR_SUCCESS);
    ck_assert(!wrong);
    for (int round = 0; round < 2; round++) {
        Peerdist__Reply *r = cache_info(fd);
        ck_assert_uint_eq(r->cache_info->hits_bytes, 1017);
        ck_assert_uint_eq(r->cache_info->misses_bytes, 1010);
        ck_assert_uint_eq(r->cache_info->added_bytes, a.len + b.len);
        ck_assert_uint_eq(r->cache_info->flushed_bytes, b.len);
        ck_assert_uint_eq(r->cache_info->evicted_size_bytes, 0);
        ck_assert_uint_eq(r->cache_info->evicted_age_bytes, 0);
        ck_assert_uint_eq(r->cache_info->segments, 1);
        ck_assert_uint_eq(r->cache_info->stored_bytes, a.len);
        ck_assert_str_eq(r->cache_info->cache_size, "5%");
        ck_assert_str_eq(r->cache_info->cache_size_source, "default");
        ck_assert_str_eq(r->cache_info->max_age, "28d");
        ck_assert_uint_eq(r->cache_info->max_age_s, 28 * 86400);
        ck_assert_uint_ge(r->cache_info->limit_bytes, 64ull * MIB);
        ck_assert_uint_gt(r->cache_info->database_bytes, 0);
        peerdist__reply__free_unpacked(r, NULL);
        if (round == 0) { /* the same after a restart */
            close(fd);
            ck_assert_int_eq(td_stop(&td), 0);
            td_start(&td);
            fd = wire_connect();
        }
    }
    ck_assert_int_eq(td_sql(&td, "SELECT hits_bytes FROM v_counters"), 1017);
    close(fd);
    content_free(&a);
    content_free(&b);
}
END_TEST

/* ---- admins only: CacheSet, Tags of every uid ---- */

/* Runs fn as uid 65534 in a child; its exit status. */
static int as_nobody(int (*fn)(void *), void *arg)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(100);
        _exit(fn(arg));
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static int nobody_is_refused(void *arg)
{
    int fd = wu_open(td.sock);
    if (fd < 0)
        return 1;
    Peerdist__CacheSetRequest cs = PEERDIST__CACHE_SET_REQUEST__INIT;
    cs.cache_size = "1G";
    cs.max_age = "";
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_CACHE_SET;
    req.cache_set = &cs;
    uint32_t st = 0;
    Peerdist__Reply *r = try_call(fd, &req, &st);
    if (!r || st != ERROR_ACCESS_DENIED)
        return 2;
    peerdist__reply__free_unpacked(r, NULL);
    Peerdist__TagsRequest t = PEERDIST__TAGS_REQUEST__INIT;
    t.all = true;
    req.body_case = PEERDIST__REQUEST__BODY_TAGS;
    req.tags = &t;
    if (!(r = try_call(fd, &req, &st)) || st != ERROR_ACCESS_DENIED)
        return 3;
    peerdist__reply__free_unpacked(r, NULL);
    /* CacheInfo is for everyone. */
    Peerdist__CacheInfoRequest ci = PEERDIST__CACHE_INFO_REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_CACHE_INFO;
    req.cache_info = &ci;
    if (!(r = try_call(fd, &req, &st)) || st != 0)
        return 4;
    peerdist__reply__free_unpacked(r, NULL);
    return 0;
}

/*
 * CacheInfo walks data/ on a worker: requests pipelined by one client share jobs (one at a
 * time), and every one is answered with the figures of the cache as it is.
 */
START_TEST(cache_info_pipelined_requests_share_jobs)
{
    start_with("");
    struct content a;
    content_make(&a, 200 * 1024, 9);
    static const uint8_t tag[16] = {0xc1};
    int fd = wire_connect();
    add_content(fd, &a, tag);
    enum { N = 500 };
    for (int i = 0; i < N; i++) {
        Peerdist__CacheInfoRequest ci = PEERDIST__CACHE_INFO_REQUEST__INIT;
        Peerdist__Request req = PEERDIST__REQUEST__INIT;
        req.body_case = PEERDIST__REQUEST__BODY_CACHE_INFO;
        req.cache_info = &ci;
        ck_assert_uint_ne(wu_send(fd, &req), 0);
    }
    for (int i = 0; i < N; i++) {
        Peerdist__Reply *r = wu_recv(fd);
        ck_assert_ptr_nonnull(r);
        ck_assert_uint_eq(r->status, ERROR_SUCCESS);
        ck_assert_int_eq(r->body_case, PEERDIST__REPLY__BODY_CACHE_INFO);
        ck_assert_uint_eq(r->cache_info->stored_bytes, a.len);
        ck_assert_uint_eq(r->cache_info->blocks, 4);
        ck_assert_uint_eq(r->cache_info->segments, 1);
        ck_assert_uint_eq(r->cache_info->tags, 1);
        ck_assert_uint_ge(r->cache_info->used_bytes, a.len);
        ck_assert_uint_eq(r->cache_info->added_bytes, a.len);
        peerdist__reply__free_unpacked(r, NULL);
    }
    Peerdist__Reply *r = cache_info(fd); /* and the next one still gets its own answer */
    ck_assert_uint_eq(r->cache_info->stored_bytes, a.len);
    peerdist__reply__free_unpacked(r, NULL);
    close(fd);
    content_free(&a);
}
END_TEST

START_TEST(cache_set_override_wins_until_reset)
{
    if (geteuid() != 0) {
        fprintf(stderr,
            "cache_set_override_wins_until_reset: skipped (needs root to run a "
            "client as another uid)\n");
        return;
    }
    start_with("cache_size = 100M\nmax_age = 2d\n");
    ck_assert_int_eq(as_nobody(nobody_is_refused, NULL), 0);
    ck_assert(td_log_contains(&td, "CacheSet refused: only root and group peerdist"));
    ck_assert(td_log_contains(&td, "Tags of every uid refused"));
    int fd = wire_connect();
    Peerdist__Reply *r = cache_info(fd);
    ck_assert_uint_eq(r->cache_info->limit_bytes, 100ull * MIB);
    ck_assert_str_eq(r->cache_info->cache_size_source, "file");
    peerdist__reply__free_unpacked(r, NULL);
    /* Bad values are refused, with a log line naming the key. */
    ck_assert_uint_eq(cache_set(fd, "63M", NULL, false), ERROR_INVALID_PARAMETER);
    ck_assert(td_log_contains(&td, "cache_size: '63M' is less than the minimum"));
    ck_assert_uint_eq(cache_set(fd, NULL, "3w", false), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(cache_set(fd, NULL, NULL, false), ERROR_INVALID_PARAMETER);
    ck_assert_uint_eq(cache_set(fd, "128M", "12h", false), ERROR_SUCCESS);
    char path[256];
    snprintf(path, sizeof(path), "%s/state/cache.conf", td.dir);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 0777, 0600);
    /* The override wins over the file, also after the file changes and is read again. */
    write_conf("cache_size = 200M\nmax_age = 3d\n");
    td_signal(&td, SIGHUP);
    struct log_wait w = {"reload: cache_size 128M (override", 1};
    ck_assert(td_wait_until(log_has, &w));
    r = cache_info(fd);
    ck_assert_uint_eq(r->cache_info->limit_bytes, 128ull * MIB);
    ck_assert_str_eq(r->cache_info->cache_size, "128M");
    ck_assert_str_eq(r->cache_info->cache_size_source, "override");
    ck_assert_uint_eq(r->cache_info->max_age_s, 12 * 3600);
    ck_assert_str_eq(r->cache_info->max_age_source, "override");
    peerdist__reply__free_unpacked(r, NULL);
    /* And across a restart. */
    close(fd);
    ck_assert_int_eq(td_stop(&td), 0);
    td_start(&td);
    fd = wire_connect();
    r = cache_info(fd);
    ck_assert_uint_eq(r->cache_info->limit_bytes, 128ull * MIB);
    ck_assert_str_eq(r->cache_info->cache_size_source, "override");
    peerdist__reply__free_unpacked(r, NULL);
    ck_assert_int_eq(td_sql(&td, "SELECT limit_bytes FROM v_cache"), 128ll * MIB);
    /* One value at a time, then reset: the file's values return. */
    ck_assert_uint_eq(cache_set(fd, NULL, "90m", false), ERROR_SUCCESS);
    r = cache_info(fd);
    ck_assert_uint_eq(r->cache_info->max_age_s, 5400);
    ck_assert_uint_eq(r->cache_info->limit_bytes, 128ull * MIB);
    peerdist__reply__free_unpacked(r, NULL);
    ck_assert_uint_eq(cache_set(fd, NULL, NULL, true), ERROR_SUCCESS);
    r = cache_info(fd);
    ck_assert_uint_eq(r->cache_info->limit_bytes, 200ull * MIB);
    ck_assert_str_eq(r->cache_info->cache_size_source, "file");
    ck_assert_uint_eq(r->cache_info->max_age_s, 3 * 86400);
    ck_assert_str_eq(r->cache_info->max_age_source, "file");
    peerdist__reply__free_unpacked(r, NULL);
    ck_assert_int_ne(stat(path, &sb), 0);
    close(fd);
}
END_TEST

/* ---- SIGHUP reload ---- */

START_TEST(sighup_reloads_cache_size)
{
    start_with("cache_size = 64M\n");
    int fd = wire_connect();
    struct info_cond ic = {fd, 0, 64ull * MIB};
    ck_assert(limit_is(&ic));
    write_conf("cache_size = 100M\nmax_age = 5h\nuid_quota = 10M\n");
    td_signal(&td, SIGHUP);
    ic.limit = 100ull * MIB;
    ck_assert_msg(td_wait_until(limit_is, &ic), "SIGHUP did not apply cache_size");
    Peerdist__Reply *r = cache_info(fd);
    ck_assert_uint_eq(r->cache_info->max_age_s, 5 * 3600);
    ck_assert_uint_eq(r->cache_info->uid_quota, 10ull * MIB);
    peerdist__reply__free_unpacked(r, NULL);
    /* A bad file is refused as a whole: the running bounds stay. */
    write_conf("cache_size = 1M\n");
    td_signal(&td, SIGHUP);
    struct log_wait w = {"keeping the running configuration", 1};
    ck_assert(td_wait_until(log_has, &w));
    ck_assert(td_log_contains(&td, "cache_size: '1M' is less than the minimum"));
    ck_assert(limit_is(&ic));
    close(fd);
}
END_TEST

/* ---- uid_quota ---- */

struct quota_add {
    const struct content *c;
    const uint8_t *tag;
};

static int nobody_adds(void *arg)
{
    const struct quota_add *q = arg;
    int fd = wu_open(td.sock);
    if (fd < 0)
        return 1;
    uint64_t h = try_open(fd, q->c, q->tag);
    if (!h)
        return 2;
    return try_add(fd, h, q->c) == 0 ? 0 : 3;
}

START_TEST(uid_quota_takes_only_that_uids_labels)
{
    if (geteuid() != 0) {
        fprintf(stderr,
            "uid_quota_takes_only_that_uids_labels: skipped (needs root to run a "
            "client as another uid)\n");
        return;
    }
    start_with("uid_quota = 1M\n");
    struct content p1, p2, p3;
    content_make(&p1, 400 * 1024, 11);
    content_make(&p2, 400 * 1024, 12);
    content_make(&p3, 400 * 1024, 13);
    static const uint8_t ntag[16] = {0x65, 0x53, 0x4};
    static const uint8_t rtag[16] = {0x0f};
    struct quota_add q = {&p1, ntag};
    ck_assert_int_eq(as_nobody(nobody_adds, &q), 0);
    int fd = wire_connect();
    add_content(fd, &p1, rtag); /* root labels p1 too */
    shift_clock(1000);
    q.c = &p2;
    ck_assert_int_eq(as_nobody(nobody_adds, &q), 0);
    shift_clock(2000);
    q.c = &p3;
    ck_assert_int_eq(as_nobody(nobody_adds, &q), 0); /* 1200 KiB labelled: over 1M */
    shift_clock(2100);                               /* a pass */
    uint32_t st;
    const Peerdist__TagInfo *t = NULL;
    for (int i = 0; i < TD_WAIT_MS; i += 10) {
        Peerdist__Reply *r = tags(fd, true, &st);
        ck_assert_uint_eq(st, 0);
        t = find_tag(r, 65534, ntag);
        ck_assert_ptr_nonnull(t);
        uint64_t segs = t->segments, bytes = t->bytes;
        const Peerdist__TagInfo *rt = find_tag(r, 0, rtag);
        ck_assert_ptr_nonnull(rt);
        ck_assert_uint_eq(rt->bytes, p1.len); /* another uid's labels stay */
        ck_assert_uint_eq(rt->segments, 1);
        ck_assert_uint_ge(rt->last_used, rt->added_at);
        peerdist__reply__free_unpacked(r, NULL);
        if (segs == 2) {
            ck_assert_uint_eq(bytes, p2.len + p3.len);
            break;
        }
        usleep(10000);
        t = NULL;
    }
    ck_assert_msg(t, "uid 65534's least recently used labels did not go");
    /* p1 stays readable: root's label keeps its blocks. Nothing was freed from the disk. */
    ck_assert(read_all(fd, wire_open(fd, &p1, rtag), &p1));
    Peerdist__Reply *r = cache_info(fd);
    ck_assert_uint_eq(r->cache_info->segments, 3);
    ck_assert_uint_eq(r->cache_info->evicted_size_bytes, 0);
    peerdist__reply__free_unpacked(r, NULL);
    /* Root's own listing (not all) shows root's tag only, with its timestamps. */
    r = tags(fd, false, &st);
    ck_assert_uint_eq(st, 0);
    ck_assert_uint_eq(r->tags->n_tags, 1);
    ck_assert_uint_eq(r->tags->tags[0]->uid, 0);
    ck_assert_uint_gt(r->tags->tags[0]->added_at, 0);
    peerdist__reply__free_unpacked(r, NULL);
    close(fd);
    content_free(&p1);
    content_free(&p2);
    content_free(&p3);
}
END_TEST

/* ---- the views, read with sqlite3 -readonly while the daemon writes ---- */

struct writer {
    atomic_bool stop;
    atomic_int adds, failed;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    int fd = wu_open(td.sock);
    if (fd < 0) {
        w->failed++;
        return NULL;
    }
    static const uint8_t tag[16] = {0x99};
    for (unsigned i = 0; !atomic_load(&w->stop) && i < 200; i++) {
        struct content c;
        content_make(&c, 200 * 1024, 100 + i);
        uint64_t h = try_open(fd, &c, tag);
        if (!h || try_add(fd, h, &c) != 0)
            w->failed++;
        else
            w->adds++;
        content_free(&c);
    }
    close(fd);
    return NULL;
}

/* The first line sqlite3 -readonly prints for sql. */
static void sqlite_ro(const char *sql, char *out, size_t len)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "sqlite3 -readonly -cmd '.timeout 5000' '%s' \"%s\" 2>&1", td.db,
        sql);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    out[0] = '\0';
    if (!fgets(out, (int)len, p))
        out[0] = '\0';
    int rc = pclose(p);
    ck_assert_msg(rc == 0, "%s: exit %d: %s", sql, rc, out);
    out[strcspn(out, "\n")] = '\0';
}

START_TEST(views_while_the_daemon_writes)
{
    if (system("command -v sqlite3 >/dev/null") != 0) {
        fprintf(stderr, "views_while_the_daemon_writes: skipped (no sqlite3 command)\n");
        return;
    }
    start_with("cache_size = 64M\n");
    static const uint8_t tag[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99,
        0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    struct content a;
    content_make(&a, 3 * 64 * 1024 + 5, 21);
    int fd = wire_connect();
    shift_clock(-100000); /* so that the timestamps are known */
    add_content(fd, &a, tag);
    struct writer w = {0};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, writer_main, &w), 0);
    while (atomic_load(&w.adds) < 2 && !atomic_load(&w.failed))
        usleep(1000);
    char out[1024], expect[512];
    for (int i = 0; i < 5; i++) {
        sqlite_ro("SELECT uid, tag, guid, blocks, bytes, segments FROM v_tags WHERE tag = "
                  "'00112233445566778899aabbccddeeff'",
            out, sizeof(out));
        snprintf(expect, sizeof(expect),
            "0|00112233445566778899aabbccddeeff|{33221100-5544-7766-8899-aabbccddeeff}|4|%zu|1",
            a.len);
        ck_assert_str_eq(out, expect);
        sqlite_ro("SELECT added_at = last_used, added_at_utc = datetime(added_at, 'unixepoch'), "
                  "last_used_utc LIKE '____-__-__ __:__:__' FROM v_tags WHERE tag = "
                  "'00112233445566778899aabbccddeeff'",
            out, sizeof(out));
        ck_assert_str_eq(out, "1|1|1");
        sqlite_ro("SELECT limit_bytes, stored_bytes >= 196613, segments >= 1 FROM v_cache", out,
            sizeof(out));
        ck_assert_str_eq(out, "67108864|1|1");
        sqlite_ro("SELECT added_bytes >= 0, evicted_bytes, flushed_bytes FROM v_counters", out,
            sizeof(out));
        ck_assert_str_eq(out, "1|0|0");
        sqlite_ro("SELECT count(*) > 0 FROM v_segments", out, sizeof(out));
        ck_assert_str_eq(out, "1");
    }
    /* The added_at the daemon's clock gave: about 100000 s ago. */
    sqlite_ro("SELECT abs(strftime('%s','now') - 100000 - added_at) < 600 FROM v_tags WHERE tag "
              "= '00112233445566778899aabbccddeeff'",
        out, sizeof(out));
    ck_assert_str_eq(out, "1");
    /* No view shows a secret. */
    sqlite_ro("SELECT count(*) FROM sqlite_master WHERE type = 'view' AND sql LIKE '%secret%'", out,
        sizeof(out));
    ck_assert_str_eq(out, "0");
    atomic_store(&w.stop, true);
    pthread_join(th, NULL);
    ck_assert_int_eq(w.failed, 0);
    close(fd);
    content_free(&a);
}
END_TEST

/* ---- the pass itself, on a database of its own: least recently used first, holds ---- */

static struct daemon ud;
static struct store *flush_conn;
static char udir[64];
static const uint8_t utag[16] = {0x42};

/* A 32 MiB segment (512 rows of 64 KiB; no bytes on disk: the pass deletes rows only). */
static void put_segment(uint8_t id, int64_t used)
{
    uint8_t seg[32] = {id}, hash[32] = {id};
    store_set_now(ud.store, used);
    ck_assert_int_eq(store_begin(ud.store), 0);
    for (uint32_t b = 0; b < 512; b++) {
        ck_assert_int_eq(store_block_put(ud.store, seg, 32, b, STORE_OWNER_SHARED, hash, 32, 65536,
                             STORE_OWNER_SHARED),
            0);
        ck_assert_int_eq(store_label_put(ud.store, 0, utag, seg, 32, b, 65536), 0);
    }
    ck_assert_int_eq(store_segment_used(ud.store, seg, 32, used), 0);
    ck_assert_int_eq(store_commit(ud.store), 0);
}

static long long segment_rows(uint8_t id)
{
    uint8_t seg[32] = {id};
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_prepare_v2(store_db(ud.store),
                         "SELECT count(*) FROM blocks WHERE segment_id = ?", -1, &s, NULL),
        SQLITE_OK);
    sqlite3_bind_blob(s, 1, seg, 32, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    long long n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

static void unit_setup(void)
{
    char err[256], why[160];
    snprintf(udir, sizeof(udir), "/tmp/pdcache.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(udir));
    memset(&ud, 0, sizeof(ud));
    config_defaults(&ud.cfg);
    snprintf(ud.cfg.db_path, sizeof(ud.cfg.db_path), "%s/cache.db", udir);
    snprintf(ud.cfg.state_dir, sizeof(ud.cfg.state_dir), "%s", udir);
    ck_assert_int_eq(config_parse_cache_size("64M", &ud.cfg.cache_size, why, sizeof(why)), 0);
    ck_assert_ptr_nonnull(ud.base = event_base_new());
    ck_assert_ptr_nonnull(ud.workers = worker_pool_new(ud.base, 2));
    ck_assert_int_eq(store_open(ud.cfg.db_path, &ud.store, err, sizeof(err)), 0);
    ck_assert_int_eq(bs_open(ud.cfg.db_path, ud.workers, &ud.bs), 0);
    ck_assert_int_eq(store_open(ud.cfg.db_path, &flush_conn, err, sizeof(err)), 0);
    int64_t now = (int64_t)time(NULL);
    put_segment(1, now - 300); /* 96 MiB: 32 over the limit */
    put_segment(2, now - 200);
    put_segment(3, now - 100);
    ck_assert_int_eq(evict_init(&ud), 0);
}

static void unit_teardown(void)
{
    evict_free(&ud);
    worker_pool_free(ud.workers);
    bs_close(ud.bs);
    store_close(flush_conn);
    store_close(ud.store);
    event_base_free(ud.base);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", udir);
    ck_assert_int_eq(system(cmd), 0);
}

static void run_pass(void)
{
    struct evict_pass *p = evict_pass_new(&ud);
    ck_assert_ptr_nonnull(p);
    evict_pass_work(p, flush_conn);
    evict_pass_done(p);
}

/* Down to the low-water mark (90% of 64M): the two least recently used segments go. */
START_TEST(pass_takes_the_oldest_first)
{
    run_pass();
    ck_assert_int_eq(segment_rows(1), 0);
    ck_assert_int_eq(segment_rows(2), 0);
    ck_assert_int_eq(segment_rows(3), 512);
    ck_assert_int_eq(store_stored_bytes(ud.store), 32ll * MIB);
    uint64_t ctr[STORE_CTR_COUNT];
    ck_assert_int_eq(store_counters_get(ud.store, ctr), 0);
    ck_assert_uint_eq(ctr[STORE_CTR_EVICTED_SIZE], 64ull * MIB);
    ck_assert_int_eq(store_tag_labels(ud.store, 0, utag), 512); /* the labels went with them */
}
END_TEST

/* A segment a read in flight holds stays, however old: the next ones go instead. */
START_TEST(pass_leaves_a_held_segment)
{
    uint8_t seg1[32] = {1};
    ck_assert_int_eq(bs_hold(ud.bs, seg1, 32), 0);
    run_pass();
    ck_assert_int_eq(segment_rows(1), 512);
    ck_assert_int_eq(segment_rows(2), 0);
    ck_assert_int_eq(segment_rows(3), 0);
    bs_release(ud.bs, seg1, 32);
    run_pass(); /* 32 MiB: under the limit, nothing more goes */
    ck_assert_int_eq(segment_rows(1), 512);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("bounds");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, eviction_takes_the_least_recently_used);
    tcase_add_test(tc, segments_expire_after_max_age);
    tcase_add_test(tc, counters_are_exact_and_kept);
    tcase_add_test(tc, cache_info_pipelined_requests_share_jobs);
    tcase_add_test(tc, cache_set_override_wins_until_reset);
    tcase_add_test(tc, sighup_reloads_cache_size);
    tcase_add_test(tc, uid_quota_takes_only_that_uids_labels);
    tcase_add_test(tc, views_while_the_daemon_writes);
    suite_add_tcase(s, tc);
    TCase *unit = tcase_create("pass");
    tcase_add_checked_fixture(unit, unit_setup, unit_teardown);
    tcase_add_test(unit, pass_takes_the_oldest_first);
    tcase_add_test(unit, pass_leaves_a_held_segment);
    suite_add_tcase(s, unit);
    return check_run(s);
}
