/* SPDX-License-Identifier: MIT */
/*
 * evict.c - the cache's bounds (see evict.h and docs/cache.md): which cache_size, max_age and
 * uid_quota are in force and where each came from, the daemon's one clock, what reads used
 * and what the loop counted (kept in memory, written by the next pass), and the eviction
 * pass: expired segments, then least recently used ones over the limit, then over-quota uids'
 * own labels, in slices of one transaction each on the flush connection.
 */
#include "evict.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <peerdist.h>

#include "blockstore.h"
#include "fsutil.h"
#include "log.h"
#include "peer.h"
#include "worker.h"

/* One segment a read used, and when (the daemon's clock). */
struct touch {
    uint8_t id[STORE_MAX_ID];
    uint8_t len; /* 0: a free bucket */
    int64_t at;
};

/* A CacheInfo waiting for the running pass (whose counters are neither here nor committed). */
struct info_wait {
    struct conn *c;
    uint64_t id;
    struct info_wait *next;
};

struct evict_state {
    struct daemon *d;
    int64_t clock_offset;
    /* The override (<state_dir>/cache.conf): wins over d->cfg's file values while set. */
    bool ov_size, ov_age;
    struct config_cache_size size_ov;
    struct config_max_age age_ov;
    uint64_t limit;           /* cache_size in force, in bytes */
    uint64_t stored_estimate; /* stored bytes at the last pass, plus adds since */
    /* Reads' recency: open addressing, a power-of-two number of buckets. */
    struct touch *touches;
    size_t cap, n;
    uint64_t seed;                    /* segment IDs of private rows are chosen by users */
    uint64_t deltas[STORE_CTR_COUNT]; /* counted on the loop, not yet in the database */
    bool pass_running;
    uint64_t passes; /* passes started */
    struct evict_waiter *recency_waiting;
    bool continuing; /* the last pass left more to evict: the next one follows at once */
    bool quota_due;  /* labels were added (or the bounds changed) since uid_quota was checked */
    struct info_wait *info_waiting; /* CacheInfo requests for the next job */
    bool info_running;              /* a CacheInfo job is on a worker */
};

struct seg_key {
    uint8_t id[STORE_MAX_ID];
    uint8_t len;
};

struct evict_pass {
    struct daemon *d;
    int64_t now;
    uint64_t limit, max_age, quota;
    uint64_t seq;          /* which pass (evict_state.passes when it started) */
    struct touch *touches; /* taken from the state */
    size_t cap;
    uint64_t deltas[STORE_CTR_COUNT];
    /* Stored bytes when the pass continues the one before (it counted them), else UINT64_MAX:
     * the pass sums the blocks (a scan of the index, which only the first slice pays). */
    uint64_t stored_hint;
    bool check_quota; /* uid_quota is checked (a scan of the labels) only after adds */
    /* results (worker) */
    bool ok, more, disk_full;
    double ms; /* the transaction's time on the worker (the write gate was closed as long) */
    uint64_t by_age, by_size, by_quota, blocks, stored_after;
    struct store_reclaim *reclaim;
    size_t nreclaim;
    struct seg_key *deleted; /* segments whose rows went: none may be held at COMMIT */
    size_t ndeleted, deleted_cap;
};

static struct evict_state *state(const struct daemon *d)
{
    return d->evict;
}

static void recency_waiters_run(struct evict_state *es, uint64_t ended, bool all);

/* ---- the clock ---- */

static void read_clock_offset(struct evict_state *es)
{
    const char *path = getenv(EVICT_CLOCK_ENV);
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "r");
    long long off = 0;
    if (f) {
        if (fscanf(f, "%lld", &off) != 1)
            off = 0;
        fclose(f);
    }
    if (off != es->clock_offset)
        log_info("test clock: offset %lld s (from %s)", off, path);
    es->clock_offset = off;
}

int64_t evict_now(const struct daemon *d)
{
    const struct evict_state *es = state(d);
    return (int64_t)time(NULL) + (es ? es->clock_offset : 0);
}

/* ---- settings ---- */

static const struct config_cache_size *size_in_force(const struct evict_state *es)
{
    return es->ov_size ? &es->size_ov : &es->d->cfg.cache_size;
}

static const struct config_max_age *age_in_force(const struct evict_state *es)
{
    return es->ov_age ? &es->age_ov : &es->d->cfg.max_age;
}

static void resolve_limit(struct evict_state *es)
{
    uint64_t before = es->limit;
    es->limit = config_cache_limit(size_in_force(es), es->d->cfg.db_path);
    uint64_t eighth = es->limit / 8;
    bs_spare_limit(es->d->bs, es->d->cfg.spare_pool < eighth ? es->d->cfg.spare_pool : eighth);
    if (before && before != es->limit)
        log_info("cache limit %" PRIu64 " bytes (cache_size %s, from the %s)", es->limit,
            size_in_force(es)->text, config_source_name(size_in_force(es)->source));
}

static void override_path(const struct evict_state *es, char *buf, size_t len)
{
    snprintf(buf, len, "%s/" EVICT_OVERRIDE_FILE, es->d->cfg.state_dir);
}

/* Reads the override file, if there is one; a bad line is logged and ignored. */
static void override_load(struct evict_state *es)
{
    char path[PATH_MAX + 32], line[256];
    override_path(es, path, sizeof(path));
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    int lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char key[64], value[64], why[200];
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, " %63[a-z_] = %63s", key, value) != 2) {
            log_warn("%s:%d: not 'key = value'; ignored", path, lineno);
            continue;
        }
        if (strcmp(key, "cache_size") == 0 &&
            config_parse_cache_size(value, &es->size_ov, why, sizeof(why)) == 0) {
            es->ov_size = true;
            es->size_ov.source = CONFIG_SRC_OVERRIDE;
        } else if (strcmp(key, "max_age") == 0 &&
            config_parse_max_age(value, &es->age_ov, why, sizeof(why)) == 0) {
            es->ov_age = true;
            es->age_ov.source = CONFIG_SRC_OVERRIDE;
        } else {
            log_warn("%s:%d: '%s = %s' ignored", path, lineno, key, value);
        }
    }
    fclose(f);
}

/* Writes the overrides in force (atomically, mode 0600), or removes the file if none. */
static int override_save(const struct evict_state *es)
{
    char path[PATH_MAX + 32], tmp[PATH_MAX + 48];
    override_path(es, path, sizeof(path));
    if (!es->ov_size && !es->ov_age) {
        if (unlink(path) != 0 && errno != ENOENT) {
            log_error("%s: %s", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        log_error("%s: %s", tmp, strerror(errno));
        return -1;
    }
    char text[256];
    int n = snprintf(text, sizeof(text),
        "# peerdistd: run-time overrides of peerdistd.conf (CacheSet, peerdistctl cache set);\n"
        "# they win over the file until reset.\n%s%s%s%s%s%s",
        es->ov_size ? "cache_size = " : "", es->ov_size ? es->size_ov.text : "",
        es->ov_size ? "\n" : "", es->ov_age ? "max_age = " : "", es->ov_age ? es->age_ov.text : "",
        es->ov_age ? "\n" : "");
    bool ok = fchmod(fd, 0600) == 0 && write(fd, text, (size_t)n) == n && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        log_error("writing %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", es->d->cfg.state_dir);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd); /* the rename itself survives a crash */
        close(dfd);
    }
    return 0;
}

static void log_bounds(const struct evict_state *es, const char *when)
{
    const struct config_cache_size *cs = size_in_force(es);
    const struct config_max_age *ma = age_in_force(es);
    log_info("%s: cache_size %s (%s; %" PRIu64 " bytes), max_age %s (%s), uid_quota %" PRIu64, when,
        cs->text, config_source_name(cs->source), es->limit, ma->text,
        config_source_name(ma->source), es->d->cfg.uid_quota);
}

int evict_init(struct daemon *d)
{
    struct evict_state *es = calloc(1, sizeof(*es));
    if (!es)
        return -1;
    es->d = d;
    d->evict = es;
    if (getrandom(&es->seed, sizeof(es->seed), GRND_NONBLOCK) != sizeof(es->seed))
        es->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)es;
    read_clock_offset(es);
    override_load(es);
    resolve_limit(es);
    int64_t stored = store_stored_bytes(d->store);
    es->stored_estimate = stored > 0 ? (uint64_t)stored : 0;
    es->quota_due = true;
    log_bounds(es, "cache bounds");
    return 0;
}

void evict_free(struct daemon *d)
{
    struct evict_state *es = state(d);
    if (!es)
        return;
    recency_waiters_run(es, 0, true); /* they answer from what the database has */
    while (es->info_waiting) {
        struct info_wait *w = es->info_waiting;
        es->info_waiting = w->next;
        conn_unref(w->c);
        free(w);
    }
    free(es->touches);
    free(es);
    d->evict = NULL;
}

void evict_reload(struct daemon *d, const struct config *fresh)
{
    struct evict_state *es = state(d);
    d->cfg.cache_size = fresh->cache_size;
    d->cfg.max_age = fresh->max_age;
    d->cfg.uid_quota = fresh->uid_quota;
    d->cfg.spare_pool = fresh->spare_pool;
    if (!es)
        return;
    read_clock_offset(es);
    resolve_limit(es);
    es->quota_due = true;
    log_bounds(es, "reload");
}

/* ---- recency and counters (loop) ---- */

static uint64_t seg_hash(const struct evict_state *es, const uint8_t *id, size_t len)
{
    uint64_t h = 1469598103934665603ull ^ es->seed;
    for (size_t i = 0; i < len; i++) {
        h ^= id[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static struct touch *touch_slot(struct touch *tab, size_t cap, const struct evict_state *es,
    const uint8_t *id, size_t len)
{
    size_t i = (size_t)seg_hash(es, id, len) & (cap - 1);
    while (tab[i].len && (tab[i].len != len || memcmp(tab[i].id, id, len) != 0))
        i = (i + 1) & (cap - 1);
    return &tab[i];
}

static bool touch_at(struct evict_state *es, const uint8_t *id, size_t len, int64_t at)
{
    if (len == 0 || len > STORE_MAX_ID)
        return false;
    if (es->n * 2 >= es->cap) {
        if (es->n >= EVICT_RECENCY_MAX)
            return true; /* full until the next pass takes it: ask for one */
        size_t cap = es->cap ? es->cap * 2 : 64;
        struct touch *nt = calloc(cap, sizeof(*nt));
        if (!nt)
            return true;
        for (size_t i = 0; i < es->cap; i++)
            if (es->touches[i].len)
                *touch_slot(nt, cap, es, es->touches[i].id, es->touches[i].len) = es->touches[i];
        free(es->touches);
        es->touches = nt;
        es->cap = cap;
    }
    struct touch *t = touch_slot(es->touches, es->cap, es, id, len);
    if (!t->len) {
        memcpy(t->id, id, len);
        t->len = (uint8_t)len;
        t->at = at;
        es->n++;
    } else if (at > t->at) {
        t->at = at;
    }
    return es->n >= EVICT_RECENCY_MAX;
}

bool evict_touch(struct daemon *d, const uint8_t *segment_id, size_t segment_id_len)
{
    struct evict_state *es = state(d);
    return es && touch_at(es, segment_id, segment_id_len, evict_now(d));
}

void evict_count(struct daemon *d, enum store_counter which, uint64_t bytes)
{
    struct evict_state *es = state(d);
    if (es)
        es->deltas[which] += bytes;
}

void evict_note_flushed(struct daemon *d, uint64_t bytes)
{
    struct evict_state *es = state(d);
    if (es)
        es->stored_estimate = es->stored_estimate > bytes ? es->stored_estimate - bytes : 0;
}

bool evict_note_added(struct daemon *d, uint64_t bytes)
{
    struct evict_state *es = state(d);
    if (!es)
        return false;
    es->deltas[STORE_CTR_ADDED] += bytes;
    es->stored_estimate += bytes;
    es->quota_due = true;
    /* A large eviction under way paces its own slices (flush.c): adds do not hurry it. */
    return es->stored_estimate > es->limit && !es->continuing && !es->pass_running;
}

/* ---- the pass ---- */

struct evict_pass *evict_pass_new(struct daemon *d)
{
    struct evict_state *es = state(d);
    struct evict_pass *p = calloc(1, sizeof(*p));
    if (!es || !p) {
        free(p);
        return NULL;
    }
    read_clock_offset(es);
    resolve_limit(es);
    p->d = d;
    p->now = evict_now(d);
    p->limit = es->limit;
    p->max_age = age_in_force(es)->seconds;
    p->quota = d->cfg.uid_quota;
    /* The estimate (exact after a pass, plus adds and minus flushes since) spares the scan
     * unless it says the cache may be over its limit. */
    p->stored_hint = es->continuing || es->stored_estimate <= es->limit ? es->stored_estimate
                                                                        : UINT64_MAX;
    p->check_quota = es->quota_due;
    es->quota_due = false;
    p->touches = es->touches;
    p->cap = es->cap;
    es->touches = NULL;
    es->cap = es->n = 0;
    memcpy(p->deltas, es->deltas, sizeof(p->deltas));
    memset(es->deltas, 0, sizeof(es->deltas));
    es->pass_running = true;
    p->seq = ++es->passes;
    return p;
}

bool evict_after_recency(struct daemon *d, struct evict_waiter *w)
{
    struct evict_state *es = state(d);
    if (!es || es->n == 0)
        return false;         /* nothing noted: the database has every use */
    w->pass = es->passes + 1; /* the next pass takes what is noted now */
    w->next = es->recency_waiting;
    es->recency_waiting = w;
    return true;
}

/* Runs the waiters whose pass has ended (all of them when all). */
static void recency_waiters_run(struct evict_state *es, uint64_t ended, bool all)
{
    struct evict_waiter **wp = &es->recency_waiting;
    while (*wp) {
        struct evict_waiter *w = *wp;
        if (all || w->pass <= ended) {
            *wp = w->next;
            w->fn(w);
        } else {
            wp = &w->next;
        }
    }
}

static void collect_reclaim(void *arg, struct store_reclaim *items, size_t n)
{
    struct evict_pass *p = arg;
    p->reclaim = items;
    p->nreclaim = n;
}

/* A list of segments collected from a query (statements cannot delete while they read). */
struct seg_list {
    struct seg_key *v;
    size_t n, cap;
    uint64_t *charged; /* store_uid_segments only */
};

static int seg_list_push(struct seg_list *l, const uint8_t *id, size_t len, uint64_t charged)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct seg_key *nv = realloc(l->v, cap * sizeof(*nv));
        uint64_t *nc = nv ? realloc(l->charged, cap * sizeof(*nc)) : NULL;
        if (nv)
            l->v = nv;
        if (!nc)
            return -1;
        l->charged = nc;
        l->cap = cap;
    }
    memcpy(l->v[l->n].id, id, len);
    l->v[l->n].len = (uint8_t)len;
    l->charged[l->n++] = charged;
    return 0;
}

static int lru_row(void *arg, const uint8_t *id, size_t len, int64_t last_used)
{
    return seg_list_push(arg, id, len, 0);
}

static int uid_seg_row(void *arg, const uint8_t *id, size_t len, uint64_t charged)
{
    return seg_list_push(arg, id, len, charged);
}

static bool held(struct evict_pass *p, const struct seg_key *k)
{
    bs_holds_lock(p->d->bs);
    bool h = bs_held_locked(p->d->bs, k->id, k->len);
    bs_holds_unlock(p->d->bs);
    return h;
}

static int note_deleted(struct evict_pass *p, const struct seg_key *k)
{
    if (p->ndeleted == p->deleted_cap) {
        size_t cap = p->deleted_cap ? p->deleted_cap * 2 : 64;
        struct seg_key *nd = realloc(p->deleted, cap * sizeof(*nd));
        if (!nd)
            return -1;
        p->deleted = nd;
        p->deleted_cap = cap;
    }
    p->deleted[p->ndeleted++] = *k;
    return 0;
}

/*
 * Evicts whole segments from the list (skipping held ones) until *stored <= target (or, for
 * expiry, target 0 and stored NULL: all of them) or the slice is full. 0, or -1.
 */
static int evict_list(struct evict_pass *p, struct store *st, struct seg_list *l, uint64_t *stored,
    uint64_t target, uint64_t *counter)
{
    for (size_t i = 0; i < l->n; i++) {
        if (stored && *stored <= target)
            return 0;
        if (p->blocks >= EVICT_SLICE_BLOCKS) {
            p->more = true;
            return 0;
        }
        if (held(p, &l->v[i]))
            continue; /* a read is in flight there: a later pass */
        uint64_t bytes, blocks;
        if (store_evict_segment(st, l->v[i].id, l->v[i].len, &bytes, &blocks) != 0 ||
            note_deleted(p, &l->v[i]) != 0)
            return -1;
        *counter += bytes;
        p->blocks += blocks;
        if (stored)
            *stored = *stored > bytes ? *stored - bytes : 0;
    }
    /* There may be more candidates than one query gave (unless every one was held). */
    if (l->n == EVICT_CANDIDATES && (!stored || *stored > target) && p->ndeleted)
        p->more = true;
    return 0;
}

static int quota_uid_row(void *arg, uint32_t uid, uint64_t charged)
{
    /* uid and charged packed into the list's charged array; the id holds the uid. */
    struct seg_list *l = arg;
    uint8_t id[4];
    memcpy(id, &uid, 4);
    return seg_list_push(l, id, 4, charged);
}

/* uid_quota: each over-quota uid loses its own least recently used labels until under. */
static int evict_quota(struct evict_pass *p, struct store *st)
{
    struct seg_list uids = {0};
    int rc = store_uids_over(st, p->quota, quota_uid_row, &uids);
    for (size_t u = 0; rc == 0 && u < uids.n && !p->more; u++) {
        uint32_t uid;
        memcpy(&uid, uids.v[u].id, 4);
        uint64_t charged = uids.charged[u];
        struct seg_list segs = {0};
        rc = store_uid_segments(st, uid, EVICT_CANDIDATES, uid_seg_row, &segs);
        for (size_t i = 0; rc == 0 && i < segs.n && charged > p->quota; i++) {
            if (p->blocks >= EVICT_SLICE_BLOCKS) {
                p->more = true;
                break;
            }
            if (held(p, &segs.v[i]))
                continue;
            uint64_t freed;
            if (store_uid_drop_segment(st, uid, segs.v[i].id, segs.v[i].len, &freed) != 0 ||
                note_deleted(p, &segs.v[i]) != 0) {
                rc = -1;
                break;
            }
            charged = charged > segs.charged[i] ? charged - segs.charged[i] : 0;
            p->by_quota += freed;
            p->blocks += segs.charged[i] / BS_SLOT_SIZE + 1;
        }
        if (rc == 0 && charged > p->quota && segs.n == EVICT_CANDIDATES && p->ndeleted)
            p->more = true;
        free(segs.v);
        free(segs.charged);
    }
    free(uids.v);
    free(uids.charged);
    return rc;
}

static int pass_body(struct evict_pass *p, struct store *st)
{
    for (size_t i = 0; i < p->cap; i++)
        if (p->touches[i].len &&
            store_segment_used(st, p->touches[i].id, p->touches[i].len, p->touches[i].at) != 0)
            return -1;
    if (store_counters_add(st, p->deltas) != 0 ||
        store_settings_put(st, p->limit, p->max_age, p->quota) != 0)
        return -1;
    uint64_t stored = p->stored_hint;
    if (stored == UINT64_MAX) {
        int64_t sum = store_stored_bytes(st);
        if (sum < 0)
            return -1;
        stored = (uint64_t)sum;
    }
    struct seg_list l = {0};
    int rc = 0;
    /* Expired: last used before now - max_age, whatever the size. */
    if (p->now > (int64_t)p->max_age) {
        rc = store_lru_segments(st, p->now - (int64_t)p->max_age, EVICT_CANDIDATES, lru_row, &l);
        if (rc == 0)
            rc = evict_list(p, st, &l, NULL, 0, &p->by_age);
    }
    stored = stored > p->by_age ? stored - p->by_age : 0;
    /* Over the limit: least recently used first, down to the low-water mark (a pass that
     * continues the one before goes on down to it). */
    uint64_t low = p->limit / 100 * EVICT_LOW_WATER_PERCENT;
    bool continuing = p->stored_hint != UINT64_MAX;
    if (rc == 0 && !p->more && (stored > p->limit || (continuing && stored > low))) {
        l.n = 0;
        rc = store_lru_segments(st, -1, EVICT_CANDIDATES, lru_row, &l);
        if (rc == 0)
            rc = evict_list(p, st, &l, &stored, low, &p->by_size);
    }
    free(l.v);
    free(l.charged);
    if (rc == 0 && !p->more && p->quota && p->check_quota)
        rc = evict_quota(p, st);
    if (rc != 0)
        return -1;
    uint64_t ev[STORE_CTR_COUNT] = {0};
    ev[STORE_CTR_EVICTED_SIZE] = p->by_size + p->by_quota;
    ev[STORE_CTR_EVICTED_AGE] = p->by_age;
    p->stored_after = stored > p->by_quota ? stored - p->by_quota : 0;
    return store_counters_add(st, ev);
}

static void evict_pass_run(struct evict_pass *p, struct store *st);

void evict_pass_work(struct evict_pass *p, struct store *st)
{
    double t0 = daemon_mono_ms();
    evict_pass_run(p, st);
    p->ms = daemon_mono_ms() - t0;
}

static void evict_pass_run(struct evict_pass *p, struct store *st)
{
    store_set_reclaim_hook(st, collect_reclaim, p);
    store_set_now(st, p->now);
    if (store_begin(st) != 0 || pass_body(p, st) != 0) {
        p->disk_full = (store_errcode(st) & 0xff) == SQLITE_FULL;
        log_error("eviction pass failed: %s", store_errmsg(st));
        store_rollback(st);
        p->more = false;
        return;
    }
    /* No read may have started on a deleted segment since it was checked: the hold lock is
     * kept through the COMMIT, so a read holds before this check or plans after the COMMIT. */
    bs_holds_lock(p->d->bs);
    bool busy = false;
    for (size_t i = 0; i < p->ndeleted && !busy; i++)
        busy = bs_held_locked(p->d->bs, p->deleted[i].id, p->deleted[i].len);
    if (busy) {
        store_rollback(st);
        p->more = true; /* again, without the segment a read now holds */
    } else if (store_commit(st) == 0) {
        p->ok = true;
    } else {
        log_error("eviction pass: commit failed: %s", store_errmsg(st));
        store_rollback(st);
        p->more = false;
    }
    bs_holds_unlock(p->d->bs);
}

static void info_kick(struct daemon *d);

bool evict_pass_disk_full(const struct evict_pass *p)
{
    return p->disk_full;
}

bool evict_pass_removed(const struct evict_pass *p)
{
    return p->ok && (p->by_age || p->by_size || p->by_quota || p->ndeleted);
}

bool evict_pass_done(struct evict_pass *p)
{
    struct daemon *d = p->d;
    struct evict_state *es = state(d);
    bool more = p->more;
    uint64_t seq = p->seq;
    es->continuing = p->ok && more;
    if (!p->ok || more)
        es->quota_due |= p->check_quota; /* not done: the next pass checks again */
    if (p->ok) {
        es->stored_estimate = p->stored_after;
        if (p->ndeleted) {
            d->blocks_gen++; /* slot maps reload: the rows are gone */
            log_info("eviction: %" PRIu64 " bytes by size, %" PRIu64 " by age, %" PRIu64
                     " by uid_quota (%zu segments, %.1f ms); %" PRIu64
                     " bytes stored, limit %" PRIu64,
                p->by_size, p->by_age, p->by_quota, p->ndeleted, p->ms, p->stored_after, p->limit);
        }
    } else {
        /* Nothing was written: what the pass took from memory goes back. */
        for (int i = 0; i < STORE_CTR_COUNT; i++)
            es->deltas[i] += p->deltas[i];
        for (size_t i = 0; i < p->cap; i++)
            if (p->touches[i].len)
                touch_at(es, p->touches[i].id, p->touches[i].len, p->touches[i].at);
    }
    if (p->nreclaim)
        bs_reclaim(d->bs, p->reclaim, p->nreclaim); /* takes the items */
    free(p->touches);
    free(p->deleted);
    free(p);
    es->pass_running = false;
    /* Failed, the pass put its notes back; they answer from what the database has. */
    recency_waiters_run(es, seq, false);
    info_kick(d); /* CacheInfo requests that waited for the pass's counters */
    return more && !d->stopping;
}

/* ---- CacheInfo and CacheSet ---- */

/*
 * CacheInfo: the totals (a read of the index on a connection of its own, and a walk of data/)
 * are worked out on a worker, one job at a time; requests that arrive meanwhile wait for the
 * next job and share it, so a client asking in a loop costs at most one worker, never all of
 * them. The counters are read when the job starts (no eviction pass is running then: a pass
 * holds the counters it took from memory until it commits).
 */
struct info_job {
    struct daemon *d;
    struct info_wait *waiters; /* answered by this job */
    Peerdist__CacheInfoReply ci;
    char size_text[32], age_text[32];
    bool failed;
};

/* Bytes the data files take on disk (st_blocks), data/xx/<file>; spare files are not counted. */
static uint64_t data_bytes(const char *dir)
{
    uint64_t total = 0;
    DIR *top = opendir(dir);
    if (!top)
        return 0;
    struct dirent *e;
    while ((e = readdir(top))) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, BS_SPARE_DIR) == 0) /* not the cache's */
            continue;
        char sub[PATH_MAX];
        snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
        DIR *dd = opendir(sub);
        if (!dd)
            continue;
        struct dirent *f;
        while ((f = readdir(dd))) {
            struct stat sb;
            if (f->d_name[0] != '.' && fstatat(dirfd(dd), f->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
                total += (uint64_t)sb.st_blocks * 512;
        }
        closedir(dd);
    }
    closedir(top);
    return total;
}

/* Worker: totals from a read-only connection of its own, and the data files' size. */
static void info_work(void *arg)
{
    struct info_job *j = arg;
    struct daemon *d = j->d;
    struct store *rd;
    char err[512], dir[PATH_MAX];
    if (store_open_reader(d->cfg.db_path, &rd, err, sizeof(err)) != 0) {
        log_error("cache info: %s", err);
        j->failed = true;
        return;
    }
    struct store_totals t = {0};
    j->failed = store_cache_totals(rd, &t) != 0;
    store_close(rd);
    j->ci.stored_bytes = t.stored_bytes;
    j->ci.blocks = t.blocks;
    j->ci.segments = t.segments;
    j->ci.tags = t.tags;
    fs_dirname(d->cfg.db_path, dir, sizeof(dir));
    size_t dl = strlen(dir);
    snprintf(dir + dl, sizeof(dir) - dl, "/data");
    j->ci.used_bytes = data_bytes(dir);
}

/* Loop: every request the job took gets the same figures. */
static void info_done(void *arg)
{
    struct info_job *j = arg;
    struct daemon *d = j->d;
    j->ci.cache_size = j->size_text;
    j->ci.max_age = j->age_text;
    j->ci.peer_fetched_bytes = PEER_FETCH_BYTES(d);
    j->ci.peer_served_bytes = PEER_SERVED_BYTES(d);
    while (j->waiters) {
        struct info_wait *w = j->waiters;
        j->waiters = w->next;
        if (j->failed) {
            conn_reply_status(w->c, w->id, ERROR_INTERNAL_ERROR);
        } else {
            Peerdist__Reply r = PEERDIST__REPLY__INIT;
            r.id = w->id;
            r.body_case = PEERDIST__REPLY__BODY_CACHE_INFO;
            r.cache_info = &j->ci;
            conn_send(w->c, &r);
        }
        conn_unref(w->c);
        free(w);
    }
    free(j);
    struct evict_state *es = state(d);
    if (es) {
        es->info_running = false;
        info_kick(d); /* requests that came while this job ran */
    }
}

/* Starts a job for the waiting requests, unless one runs or an eviction pass holds counters. */
static void info_kick(struct daemon *d)
{
    struct evict_state *es = state(d);
    if (!es || !es->info_waiting || es->info_running || es->pass_running)
        return;
    struct info_job *j = calloc(1, sizeof(*j));
    uint64_t ctr[STORE_CTR_COUNT];
    bool ok = j && store_counters_get(d->store, ctr) == 0;
    if (!ok) {
        while (es->info_waiting) {
            struct info_wait *w = es->info_waiting;
            es->info_waiting = w->next;
            conn_reply_status(w->c, w->id, j ? ERROR_INTERNAL_ERROR : ERROR_NOT_ENOUGH_MEMORY);
            conn_unref(w->c);
            free(w);
        }
        free(j);
        return;
    }
    for (int i = 0; i < STORE_CTR_COUNT; i++)
        ctr[i] += es->deltas[i];
    Peerdist__CacheInfoReply ci = PEERDIST__CACHE_INFO_REPLY__INIT;
    const struct config_cache_size *cs = size_in_force(es);
    const struct config_max_age *ma = age_in_force(es);
    resolve_limit(es);
    ci.limit_bytes = es->limit;
    ci.max_age_s = ma->seconds;
    ci.hits_bytes = ctr[STORE_CTR_HITS];
    ci.misses_bytes = ctr[STORE_CTR_MISSES];
    ci.added_bytes = ctr[STORE_CTR_ADDED];
    ci.evicted_size_bytes = ctr[STORE_CTR_EVICTED_SIZE];
    ci.evicted_age_bytes = ctr[STORE_CTR_EVICTED_AGE];
    ci.flushed_bytes = ctr[STORE_CTR_FLUSHED];
    ci.cache_size_source = (char *)config_source_name(cs->source);
    ci.max_age_source = (char *)config_source_name(ma->source);
    ci.uid_quota = d->cfg.uid_quota;
    ci.database_bytes = store_disk_bytes(d->store);
    j->ci = ci;
    snprintf(j->size_text, sizeof(j->size_text), "%s", cs->text);
    snprintf(j->age_text, sizeof(j->age_text), "%s", ma->text);
    j->d = d;
    j->waiters = es->info_waiting;
    es->info_waiting = NULL;
    es->info_running = true;
    if (d->stopping || worker_submit(d->workers, info_work, info_done, j) != 0) {
        info_work(j);
        info_done(j);
    }
}

void evict_cache_info(struct conn *c, uint64_t id)
{
    struct evict_state *es = state(c->d);
    if (!es) {
        conn_reply_status(c, id, ERROR_CALL_NOT_IMPLEMENTED);
        return;
    }
    struct info_wait *w = calloc(1, sizeof(*w));
    if (!w) {
        conn_reply_status(c, id, ERROR_NOT_ENOUGH_MEMORY);
        return;
    }
    w->c = c;
    w->id = id;
    c->refs++;
    w->next = es->info_waiting;
    es->info_waiting = w;
    info_kick(c->d);
}

bool evict_cache_set(struct conn *c, uint64_t id, const Peerdist__CacheSetRequest *rq)
{
    struct evict_state *es = state(c->d);
    if (!es) {
        conn_reply_status(c, id, ERROR_CALL_NOT_IMPLEMENTED);
        return false;
    }
    if (!c->admin) {
        log_warn(CONN_FMT ": CacheSet refused: only root and group %s may change the cache's "
                          "bounds",
            CONN_ARGS(c), SERVER_ADMIN_GROUP);
        conn_reply_status(c, id, ERROR_ACCESS_DENIED);
        return false;
    }
    const char *size = rq->cache_size ? rq->cache_size : "";
    const char *age = rq->max_age ? rq->max_age : "";
    struct config_cache_size cs = es->size_ov;
    struct config_max_age ma = es->age_ov;
    char why[200];
    if ((!rq->reset && !*size && !*age) ||
        (*size && config_parse_cache_size(size, &cs, why, sizeof(why)) != 0) ||
        (*age && config_parse_max_age(age, &ma, why, sizeof(why)) != 0)) {
        if (!*size && !*age)
            snprintf(why, sizeof(why), "nothing to set (no cache_size, no max_age, no reset)");
        log_warn(CONN_FMT ": CacheSet refused: %s", CONN_ARGS(c), why);
        conn_reply_status(c, id, ERROR_INVALID_PARAMETER);
        return false;
    }
    bool ov_size = es->ov_size, ov_age = es->ov_age;
    struct config_cache_size old_cs = es->size_ov;
    struct config_max_age old_ma = es->age_ov;
    if (rq->reset)
        es->ov_size = es->ov_age = false;
    if (*size) {
        es->size_ov = cs;
        es->size_ov.source = CONFIG_SRC_OVERRIDE;
        es->ov_size = true;
    }
    if (*age) {
        es->age_ov = ma;
        es->age_ov.source = CONFIG_SRC_OVERRIDE;
        es->ov_age = true;
    }
    if (override_save(es) != 0) {
        es->ov_size = ov_size;
        es->ov_age = ov_age;
        es->size_ov = old_cs;
        es->age_ov = old_ma;
        conn_reply_status(c, id, ERROR_WRITE_FAULT);
        return false;
    }
    resolve_limit(es);
    log_bounds(es, "CacheSet");
    conn_reply_status(c, id, ERROR_SUCCESS);
    return true;
}
