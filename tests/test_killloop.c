/* SPDX-License-Identifier: MIT */
/*
 * test_killloop.c - kill -9 at random moments while clients publish, add data and flush, then
 * restart, many times over (DESIGN.md, What a completion promises). After each restart:
 * every acknowledged AddData block reads back, no readable block is wrong, every block row's
 * bytes on disk match its hash, flushed tags stay flushed (no label of theirs, no block only
 * they kept), and publishing gives the same content information as before (the secret
 * survived). Flushed data files become spares and are written over by the next adds (a small
 * spare_pool, whatever the filesystem's size). Cycles: PEERDIST_KILL_CYCLES (default 30, the
 * run in the suite; `make test-kill` runs more), seed: PEERDIST_KILL_SEED (default: the time,
 * printed).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <peerdist.h>

#include "api_util.h"
#include "check_run.h"
#include "contentinfo.h"
#include "harness.h"

#define NSLOTS 6 /* contents: 0-3 V1 (one segment each), 4-5 V2 (many small segments) */
#define SLOT_LEN (2 * MiB + 4321)
#define TAG_MAGIC 0xc7
#define READ_TAG_MAGIC 0xd8 /* reads only: never labels anything */
#define NTHREADS 4          /* two adders, a flusher, a publisher */

/* What a block of a slot is under the slot's current tag. MAYBE_ADD: an AddData of it was in
 * flight at a kill; MAYBE_FLUSH: it was acknowledged, then a flush of it was. */
enum bstate { ABSENT, ACKED, MAYBE_ADD, MAYBE_FLUSH };

struct slot {
    pthread_mutex_t mu; /* one operation on the slot at a time: its state is exact */
    uint8_t *data;
    DWORD version;
    struct api_ci ci;   /* the reference: published once, before the first kill */
    struct api_model m; /* the block (V1) or segment (V2) layout */
    uint8_t *state;     /* enum bstate per block, for the current tag */
    uint32_t gen;       /* the current tag is (slot, gen); every earlier one is flushed */
    bool flush_pending; /* the flush of (slot, gen - 1) was in flight at a kill */
};

static struct test_daemon td;
static struct slot slots[NSLOTS];

/* What the threads and the checks count. */
static struct {
    atomic_long ops, adds, add_blocks, flushes, publishes;
    atomic_long killed_adds, killed_flushes, killed_publishes; /* in flight at a kill */
    long add_kept, add_gone;       /* blocks of AddData in flight at a kill: committed / not */
    long flush_done, flush_undone; /* flushes in flight at a kill: committed / not */
    long blocks_read, rows_hashed, lost, wrong, resurrected, bad_rows, bad_labels;
} st;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int phase;
    bool quit;
    atomic_int parked;  /* threads done with the phase */
    atomic_bool killed; /* set before the SIGKILL: a failure after it is expected */
    atomic_bool failed; /* fatal holds the first unexpected failure (written under mu) */
    char fatal[512];
} run = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static __thread unsigned rng;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return n ? rng % n : 0;
}

static PEERDIST_CONTENT_TAG make_tag(uint8_t magic, int slot, uint32_t gen)
{
    PEERDIST_CONTENT_TAG t;
    memset(t.Data, 0x5a, sizeof(t.Data));
    t.Data[0] = magic;
    t.Data[1] = (uint8_t)slot;
    memcpy(t.Data + 2, &gen, sizeof(gen));
    return t;
}

/* Records the first thing a client thread saw go wrong; the main thread fails the test. */
__attribute__((format(printf, 1, 2))) static void fail_run(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&run.mu);
    if (!run.failed)
        vsnprintf(run.fatal, sizeof(run.fatal), fmt, ap);
    run.failed = true;
    pthread_mutex_unlock(&run.mu);
    va_end(ap);
}

/* Whether a failure is the kill's doing; one while the daemon should be alive fails the run. */
static bool expected_failure(const char *what, DWORD rc)
{
    if (run.killed)
        return true;
    fail_run("%s: status %u with the daemon alive", what, rc);
    return false;
}

/* The main thread's check that no client thread saw anything wrong. */
static void assert_run_ok(void)
{
    pthread_mutex_lock(&run.mu);
    bool failed = run.failed;
    char msg[sizeof(run.fatal)];
    memcpy(msg, run.fatal, sizeof(msg));
    pthread_mutex_unlock(&run.mu);
    ck_assert_msg(!failed, "%s", msg);
}

static DWORD wait_ov(OVERLAPPED *ov, DWORD *n)
{
    DWORD got = 0;
    BOOL ok = PeerDistGetOverlappedResult(ov, &got, TRUE);
    if (n)
        *n = got;
    return ok ? ERROR_SUCCESS : GetLastError();
}

static DWORD call_wait(DWORD rc, OVERLAPPED *ov, DWORD *n)
{
    return rc == ERROR_IO_PENDING ? wait_ov(ov, n) : rc;
}

/* A content handle with the slot's content information fed and completed; 0 or a status. */
static DWORD open_slot(PEERDIST_INSTANCE_HANDLE h, const struct slot *s,
    const PEERDIST_CONTENT_TAG *tag, PEERDIST_CONTENT_HANDLE *c)
{
    DWORD rc = PeerDistClientOpenContent(h, (PEERDIST_CONTENT_TAG *)tag, NULL, 0, c);
    if (rc != ERROR_SUCCESS)
        return rc;
    for (size_t at = 0; at < s->ci.len;) {
        OVERLAPPED ov = {0};
        DWORD n = s->ci.len - at < 4096 ? (DWORD)(s->ci.len - at) : 4096, got = 0;
        rc = call_wait(PeerDistClientAddContentInformation(h, *c, n, s->ci.bytes + at, &ov), &ov,
            &got);
        if (rc != ERROR_SUCCESS)
            goto fail;
        at += got;
    }
    OVERLAPPED ov = {0};
    rc = call_wait(PeerDistClientCompleteContentInformation(h, *c, &ov), &ov, NULL);
    if (rc == ERROR_SUCCESS)
        return rc;
fail:
    PeerDistClientCloseContent(h, *c);
    return rc;
}

/* ---- the three loops: each operation returns false once the daemon is gone ---- */

/* AddData of a random run of whole blocks (at most 1 MiB) under the slot's current tag,
 * the slot locked. */
static DWORD add_locked(PEERDIST_INSTANCE_HANDLE h, struct slot *s)
{
    PEERDIST_CONTENT_TAG tag = make_tag(TAG_MAGIC, (int)(s - slots), s->gen);
    PEERDIST_CONTENT_HANDLE c;
    DWORD rc = open_slot(h, s, &tag, &c);
    if (rc != ERROR_SUCCESS) {
        expected_failure("open and complete content", rc);
        return rc;
    }
    size_t b0 = rnd((unsigned)s->m.nblocks), b1 = b0;
    uint64_t len = 0;
    while (b1 < s->m.nblocks && len + s->m.blen[b1] <= MiB && (b1 == b0 || rnd(8)))
        len += s->m.blen[b1++];
    for (size_t b = b0; b < b1; b++)
        if (s->state[b] != ACKED)
            s->state[b] = MAYBE_ADD;
    uint64_t off = s->m.boff[b0];
    OVERLAPPED ov = {.Offset = (DWORD)off, .OffsetHigh = (DWORD)(off >> 32)};
    DWORD got = 0;
    rc = call_wait(PeerDistClientAddData(h, c, (DWORD)len, s->data + off, &ov), &ov, &got);
    if (rc == ERROR_SUCCESS && got != len)
        rc = ERROR_INVALID_DATA; /* an AddData acknowledges all its bytes or fails */
    if (rc == ERROR_SUCCESS) {
        for (size_t b = b0; b < b1; b++)
            s->state[b] = ACKED;
        st.adds++;
        st.add_blocks += (long)(b1 - b0);
    } else if (expected_failure("AddData", rc)) {
        st.killed_adds++;
    }
    PeerDistClientCloseContent(h, c);
    return rc;
}

static bool op_add(PEERDIST_INSTANCE_HANDLE h)
{
    struct slot *s = &slots[rnd(NSLOTS)];
    pthread_mutex_lock(&s->mu);
    DWORD rc = add_locked(h, s);
    pthread_mutex_unlock(&s->mu);
    return rc == ERROR_SUCCESS;
}

/* Flushes a slot's current tag (adding to it first if it holds nothing, so that every flush
 * removes something); the slot goes on under a new tag. */
static bool op_flush(PEERDIST_INSTANCE_HANDLE h)
{
    struct slot *s = &slots[rnd(NSLOTS)];
    pthread_mutex_lock(&s->mu);
    DWORD rc = ERROR_SUCCESS;
    if (!memchr(s->state, ACKED, s->m.nblocks))
        rc = add_locked(h, s);
    if (rc != ERROR_SUCCESS) {
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    PEERDIST_CONTENT_TAG tag = make_tag(TAG_MAGIC, (int)(s - slots), s->gen++);
    OVERLAPPED ov = {0};
    rc = call_wait(PeerDistClientFlushContent(h, &tag, NULL, 0, &ov), &ov, NULL);
    if (rc == ERROR_SUCCESS) {
        memset(s->state, ABSENT, s->m.nblocks); /* no other tag of the slot holds a label */
        st.flushes++;
    } else {
        for (size_t b = 0; b < s->m.nblocks; b++)
            if (s->state[b] != ABSENT)
                s->state[b] = MAYBE_FLUSH;
        s->flush_pending = true;
        if (expected_failure("FlushContent", rc))
            st.killed_flushes++;
    }
    pthread_mutex_unlock(&s->mu);
    return rc == ERROR_SUCCESS;
}

/* Publishes a slot's bytes under a new identifier: the content information must be the
 * reference's, byte for byte (same bytes, same server secret). */
static bool op_publish(PEERDIST_INSTANCE_HANDLE h)
{
    static atomic_uint serial;
    struct slot *s = &slots[rnd(NSLOTS)];
    char id[48];
    snprintf(id, sizeof(id), "kill-%u", serial++);
    PEERDIST_PUBLICATION_OPTIONS po = {s->version, 0};
    PEERDIST_STREAM_HANDLE sh = NULL;
    DWORD rc = PeerDistServerPublishStream(h, (DWORD)strlen(id), (PBYTE)id, SLOT_LEN, &po, NULL, 0,
        &sh);
    for (size_t off = 0; rc == ERROR_SUCCESS && off < SLOT_LEN;) {
        size_t n = SLOT_LEN - off < 700 * KiB ? SLOT_LEN - off : 700 * KiB;
        OVERLAPPED ov = {0};
        rc = call_wait(PeerDistServerPublishAddToStream(h, sh, (DWORD)n, s->data + off, &ov), &ov,
            NULL);
        off += n;
    }
    OVERLAPPED ov = {0};
    if (rc == ERROR_SUCCESS)
        rc = call_wait(PeerDistServerPublishCompleteStream(h, sh, &ov), &ov, NULL);
    PEERDIST_CONTENTINFO_HANDLE hci = NULL;
    if (rc == ERROR_SUCCESS)
        rc = PeerDistServerOpenContentInformation(h, (DWORD)strlen(id), (PBYTE)id, 0, 0, NULL, 0,
            &hci);
    uint8_t *got = NULL;
    size_t n = 0;
    if (rc == ERROR_SUCCESS) {
        got = malloc(s->ci.len + 1);
        while (rc == ERROR_SUCCESS && n <= s->ci.len) {
            OVERLAPPED ro = {0};
            DWORD k = 0;
            rc = call_wait(PeerDistServerRetrieveContentInformation(h, hci,
                               (DWORD)(s->ci.len + 1 - n), got + n, &ro),
                &ro, &k);
            n += k;
        }
        if (rc == PEERDIST_ERROR_NO_MORE)
            rc = ERROR_SUCCESS;
        PeerDistServerCloseContentInformation(h, hci);
    }
    if (rc == ERROR_SUCCESS) {
        if (n != s->ci.len || memcmp(got, s->ci.bytes, n) != 0) {
            fail_run("publication %s: content information differs from slot %d's reference", id,
                (int)(s - slots));
            rc = ERROR_INVALID_DATA;
        } else {
            st.publishes++;
        }
        PeerDistServerUnpublish(h, (DWORD)strlen(id), (PBYTE)id);
    } else if (expected_failure("publish", rc)) {
        st.killed_publishes++;
    }
    free(got);
    if (sh)
        PeerDistServerCloseStreamHandle(h, sh);
    return rc == ERROR_SUCCESS;
}

struct worker {
    bool (*op)(PEERDIST_INSTANCE_HANDLE h);
    unsigned seed;
};

/* Runs its loop in each phase, from a new instance, until an operation fails; then parks. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    rng = w->seed;
    int seen = 0;
    for (;;) {
        pthread_mutex_lock(&run.mu);
        while (run.phase == seen && !run.quit)
            pthread_cond_wait(&run.cv, &run.mu);
        seen = run.phase;
        bool quit = run.quit;
        pthread_mutex_unlock(&run.mu);
        if (quit)
            return NULL;
        PEERDIST_INSTANCE_HANDLE h = NULL;
        if (PeerDistStartup(PEERDIST_VERSION, &h, NULL) == ERROR_SUCCESS) {
            while (w->op(h))
                st.ops++;
            PeerDistShutdown(h);
        }
        run.parked++;
    }
}

/* ---- after each restart ---- */

static sqlite3 *open_db(void);

/* How many labels of tag the database holds (uid: this process's). */
static long tag_labels(const PEERDIST_CONTENT_TAG *tag)
{
    sqlite3 *db = open_db();
    sqlite3_stmt *q;
    ck_assert_int_eq(
        sqlite3_prepare_v2(db, "SELECT count(*) FROM labels WHERE tag = ?", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_blob(q, 1, tag->Data, sizeof(tag->Data), SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    long n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

/* A flush that was in flight at the kill is done again: then no label of the tag is left. */
static void settle_pending_flushes(PEERDIST_INSTANCE_HANDLE h)
{
    for (int i = 0; i < NSLOTS; i++) {
        struct slot *s = &slots[i];
        if (!s->flush_pending)
            continue;
        PEERDIST_CONTENT_TAG tag = make_tag(TAG_MAGIC, i, s->gen - 1);
        if (tag_labels(&tag) == 0) /* it committed before the kill */
            st.flush_done++;
        else
            st.flush_undone++;
        ck_assert_uint_eq(api_flush(h, &tag), ERROR_SUCCESS);
        ck_assert_int_eq(tag_labels(&tag), 0);
        s->flush_pending = false;
    }
}

/*
 * Every block of every slot through BlockRead: an acknowledged one must be there, an absent
 * one (never added under the current tag, or flushed) must not, any readable one must be
 * right. A block in flight at the kill may be either; what it is now is what it stays.
 */
static void check_blocks(PEERDIST_INSTANCE_HANDLE h)
{
    for (int i = 0; i < NSLOTS; i++) {
        struct slot *s = &slots[i];
        PEERDIST_CONTENT_TAG tag = make_tag(READ_TAG_MAGIC, i, 0);
        PEERDIST_CONTENT_HANDLE c;
        ck_assert_uint_eq(open_slot(h, s, &tag, &c), ERROR_SUCCESS);
        uint8_t *buf = malloc(
            64 * KiB > CI_V2_PARSE_SEGMENT_MAX ? 64 * KiB : CI_V2_PARSE_SEGMENT_MAX);
        for (size_t b = 0; b < s->m.nblocks; b++) {
            struct api_read r = api_block_read(h, c, s->m.boff[b], (DWORD)s->m.blen[b], buf);
            bool readable = r.status == ERROR_SUCCESS;
            ck_assert_msg(readable || r.status == PEERDIST_ERROR_MISSING_DATA,
                "slot %d block %zu: status %u", i, b, r.status);
            st.blocks_read++;
            if (readable &&
                (r.bytes != s->m.blen[b] || r.offset != s->m.boff[b] ||
                    memcmp(buf, s->data + s->m.boff[b], r.bytes) != 0)) {
                st.wrong++;
                fprintf(stderr, "slot %d block %zu: wrong bytes\n", i, b);
            }
            if (s->state[b] == ACKED && !readable) {
                st.lost++;
                fprintf(stderr, "slot %d block %zu: acknowledged, now missing\n", i, b);
            }
            if (s->state[b] == ABSENT && readable) {
                st.resurrected++;
                fprintf(stderr, "slot %d block %zu: readable, though flushed or never added\n", i,
                    b);
            }
            if (s->state[b] == MAYBE_ADD)
                *(readable ? &st.add_kept : &st.add_gone) += 1;
            if (s->state[b] == MAYBE_ADD || s->state[b] == MAYBE_FLUSH)
                s->state[b] = readable ? ACKED : ABSENT;
        }
        free(buf);
        ck_assert_uint_eq(PeerDistClientCloseContent(h, c), ERROR_SUCCESS);
    }
}

static sqlite3 *open_db(void)
{
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open_v2(td.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* Flushed tags stay flushed: every label left is of a slot's current tag. */
static void check_labels(void)
{
    sqlite3 *db = open_db();
    sqlite3_stmt *q;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT DISTINCT tag FROM labels", -1, &q, NULL),
        SQLITE_OK);
    while (sqlite3_step(q) == SQLITE_ROW) {
        const uint8_t *t = sqlite3_column_blob(q, 0);
        uint32_t gen;
        memcpy(&gen, t + 2, sizeof(gen));
        if (sqlite3_column_bytes(q, 0) != 16 || t[0] != TAG_MAGIC || t[1] >= NSLOTS ||
            gen != slots[t[1]].gen) {
            st.bad_labels++;
            fprintf(stderr, "a label of tag %02x/%u/%u outlived its flush\n", t[0], t[1], gen);
        }
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* Every block row's bytes, read from its data file, match the row's hash: nothing the
 * daemon would serve is wrong, whether or not a test handle can reach it. */
static void check_rows(void)
{
    sqlite3 *db = open_db();
    sqlite3_stmt *q;
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                         "SELECT segment_id, block, file_owner, length, hash FROM blocks", -1, &q,
                         NULL),
        SQLITE_OK);
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/data", td.dir);
    uint8_t *buf = malloc(CI_V2_PARSE_SEGMENT_MAX);
    while (sqlite3_step(q) == SQLITE_ROW) {
        const uint8_t *seg = sqlite3_column_blob(q, 0);
        int seglen = sqlite3_column_bytes(q, 0), hlen = sqlite3_column_bytes(q, 4);
        int64_t block = sqlite3_column_int64(q, 1), owner = sqlite3_column_int64(q, 2);
        int64_t len = sqlite3_column_int64(q, 3);
        const uint8_t *hash = sqlite3_column_blob(q, 4);
        char hex[2 * 64 + 1], path[400];
        for (int k = 0; k < seglen && k < 64; k++)
            snprintf(hex + 2 * k, 3, "%02x", seg[k]);
        if (owner == -1)
            snprintf(path, sizeof(path), "%s/%.2s/%s", dir, hex, hex);
        else
            snprintf(path, sizeof(path), "%s/%.2s/%s.%lld", dir, hex, hex, (long long)owner);
        int fd = open(path, O_RDONLY);
        bool ok = fd >= 0 && len > 0 && len <= CI_V2_PARSE_SEGMENT_MAX &&
            pread(fd, buf, (size_t)len, block * 65536) == len;
        if (fd >= 0)
            close(fd);
        uint8_t d[64];
        bool match = false;
        static const enum ci_hash_alg algs[] = {CI_HASH_SHA256, CI_HASH_SHA512_TRUNC,
            CI_HASH_SHA384, CI_HASH_SHA512};
        for (size_t a = 0; ok && !match && a < 4; a++)
            match = ci_digest_len(algs[a]) == (size_t)hlen &&
                ci_hash(algs[a], buf, (size_t)len, d) == 0 && memcmp(d, hash, (size_t)hlen) == 0;
        st.rows_hashed++;
        if (!match) {
            st.bad_rows++;
            fprintf(stderr, "block row %s/%lld: %s\n", path, (long long)block,
                ok ? "bytes do not match the hash" : "bytes not on disk");
        }
    }
    free(buf);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static void check_after_restart(void)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    settle_pending_flushes(h);
    check_blocks(h);
    PeerDistShutdown(h);
    check_labels();
    check_rows();
    ck_assert_msg(st.lost == 0 && st.wrong == 0 && st.resurrected == 0 && st.bad_rows == 0 &&
            st.bad_labels == 0,
        "after a kill -9: %ld acknowledged blocks lost, %ld wrong, %ld resurrected, %ld rows "
        "whose bytes do not match, %ld labels of flushed tags",
        st.lost, st.wrong, st.resurrected, st.bad_rows, st.bad_labels);
}

/* ---- the loop ---- */

static bool enough_ops(void *arg)
{
    return st.ops >= *(long *)arg || run.parked > 0 || run.failed;
}

static bool all_parked(void *arg)
{
    (void)arg;
    return run.parked == NTHREADS;
}

/* Kills the daemon now; it must not have died by itself before. */
static void kill_daemon(void)
{
    int status;
    ck_assert_msg(waitpid(td.pid, &status, WNOHANG) == 0, "peerdistd died by itself (status %d)",
        status);
    run.killed = true;
    kill(td.pid, SIGKILL);
    ck_assert_int_eq(waitpid(td.pid, &status, 0), td.pid);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    td.pid = 0;
}

/* Some cycles also kill a start-up half-way (database open, reconciliation, secret). */
static void kill_during_startup(unsigned delay_us)
{
    pid_t pid = fork();
    if (pid == 0) { /* only what is safe after a fork of a threaded process: no Check */
        int fd = open(td.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 2);
        execl(PEERDISTD_PATH, "peerdistd", "--socket", td.sock, "--db", td.db, "--config", td.conf,
            (char *)NULL);
        _exit(127);
    }
    ck_assert_int_gt(pid, 0);
    usleep(delay_us);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void publish_references(void)
{
    PEERDIST_INSTANCE_HANDLE h = api_startup();
    for (int i = 0; i < NSLOTS; i++) {
        struct slot *s = &slots[i];
        pthread_mutex_init(&s->mu, NULL);
        s->version = i < 4 ? 1 : 2;
        s->data = api_make_content(SLOT_LEN, 7000 + (unsigned)i);
        char id[32];
        snprintf(id, sizeof(id), "reference-%d", i);
        api_publish(h, id, s->data, SLOT_LEN, s->version, NULL, 0);
        s->ci.bytes = api_get_ci(h, id, 0, 0, NULL, &s->ci.len);
        struct ci_error err;
        ck_assert_uint_eq(ci_parse(s->ci.bytes, s->ci.len, &s->ci.info, &err), ERROR_SUCCESS);
        api_model_init(&s->m, s->data, SLOT_LEN, s->ci.info);
        s->state = calloc(s->m.nblocks, 1);
    }
    PeerDistShutdown(h);
}

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

START_TEST(kill_9_during_publish_adddata_and_flush)
{
    long cycles = env_long("PEERDIST_KILL_CYCLES", 30);
    unsigned seed = (unsigned)env_long("PEERDIST_KILL_SEED", (long)time(NULL));
    fprintf(stderr, "kill loop: %ld cycles, seed %u (PEERDIST_KILL_SEED to repeat)\n", cycles,
        seed);
    rng = seed | 1;
    td_init(&td, "local");
    /* A pool whatever the filesystem's size (it needs 350 MiB free): flushed files are
     * written over too. */
    td_config_append(&td, "cache_size = 1G\nspare_pool = 64M\n");
    td_start(&td);
    publish_references();
    static struct worker workers[NTHREADS] = {{.op = op_add}, {.op = op_add}, {.op = op_flush},
        {.op = op_publish}};
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        workers[i].seed = (seed + 1000 * (unsigned)i) | 1;
        ck_assert_int_eq(pthread_create(&t[i], NULL, worker_main, &workers[i]), 0);
    }
    long startup_kills = 0;
    for (long cycle = 0; cycle < cycles; cycle++) {
        run.killed = false;
        pthread_mutex_lock(&run.mu);
        run.parked = 0;
        run.phase++;
        pthread_cond_broadcast(&run.cv);
        pthread_mutex_unlock(&run.mu);
        long target = st.ops + 3 + rnd(120);
        ck_assert_msg(td_wait_until(enough_ops, &target), "the clients made no progress");
        assert_run_ok();
        usleep(rnd(4000)); /* not a wait for anything: where in its work the daemon dies */
        kill_daemon();
        ck_assert_msg(td_wait_until(all_parked, NULL), "a client did not notice the kill");
        assert_run_ok();
        if (rnd(3) == 0) {
            kill_during_startup(rnd(30000));
            startup_kills++;
        }
        td_start(&td);
        check_after_restart();
    }
    pthread_mutex_lock(&run.mu);
    run.quit = true;
    pthread_cond_broadcast(&run.cv);
    pthread_mutex_unlock(&run.mu);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    int status = td_stop(&td); /* and a clean stop at the end keeps everything too */
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    td_start(&td);
    check_after_restart();
    fprintf(stderr,
        "kill loop: %ld kill -9 cycles (%ld more during start-up), seed %u; acknowledged: %ld "
        "AddData (%ld blocks), %ld flushes, %ld publications (content information identical "
        "each time); in flight at a kill: %ld AddData (blocks found committed %ld, not %ld), "
        "%ld flushes (committed %ld, not %ld), %ld publications; checked after the restarts: "
        "%ld block reads, %ld "
        "block rows hashed from disk; lost %ld, wrong %ld, flushed but readable %ld, labels of "
        "flushed tags %ld, rows not matching their hash %ld; data files made from spares %d\n",
        cycles, startup_kills, seed, (long)st.adds, (long)st.add_blocks, (long)st.flushes,
        (long)st.publishes, (long)st.killed_adds, st.add_kept, st.add_gone, (long)st.killed_flushes,
        st.flush_done, st.flush_undone, (long)st.killed_publishes, st.blocks_read, st.rows_hashed,
        st.lost, st.wrong, st.resurrected, st.bad_labels, st.bad_rows,
        td_log_count(&td, "made from spare"));
    ck_assert_int_gt(st.adds, 0);
    ck_assert_int_gt(td_log_count(&td, "made from spare"), 0);
    ck_assert_int_gt(st.flushes, 0);
    ck_assert_int_gt(st.publishes, 0);
    for (int i = 0; i < NSLOTS; i++) {
        api_model_free(&slots[i].m);
        api_ci_free(&slots[i].ci);
        free(slots[i].state);
        free(slots[i].data);
    }
    td_cleanup(&td);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("killloop");
    TCase *tc = tcase_create("killloop");
    /* A cycle takes well under a second here; the bound only stops a hung run. */
    tcase_set_timeout(tc, 60 + 30 * (double)env_long("PEERDIST_KILL_CYCLES", 30));
    tcase_add_test(tc, kill_9_during_publish_adddata_and_flush);
    suite_add_tcase(s, tc);
    return check_run(s);
}
