/* SPDX-License-Identifier: MIT */
/*
 * blockstore.c - block bytes on disk (see blockstore.h and docs/cache.md): one sparse file
 * per segment and owner under <dbdir>/data/xx/, reclaim of deleted rows' space on a worker
 * (a file nothing refers to is kept as a spare or unlinked, else the freed slots are punched),
 * spare files renamed into place for new segments, start-up reconciliation, and what this run
 * knows of each slot's bytes (checked good, or bad) for the read path.
 */

#include "blockstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"

struct pin {
    uint8_t seg[STORE_MAX_ID];
    size_t seglen;
    int64_t file_owner;
    uint32_t block;
    unsigned count;
    bool overlapped;   /* two writes were under way at once: whose bytes landed last is unknown */
    uint64_t failures; /* bs->pin_failures when it was made */
    struct pin *next;
};

/* Blocks per file whose verdicts are kept (a V1 segment has 512; a V2 segment one). */
#define KNOWN_BLOCKS_MAX 4096
#define KNOWN_BUCKETS 16384 /* a power of two */

/* What this run knows of one data file's slots. Loop thread only. */
struct bs_known {
    uint8_t seg[STORE_MAX_ID];
    uint8_t seglen;
    int64_t file_owner;
    uint64_t writes;     /* pins and unpins of its slots: a check from before is stale */
    unsigned checks;     /* checks under way: kept until they end */
    unsigned bad_queued; /* entries of bs->bad: kept until taken */
    uint32_t nwords;     /* bits[2i]: good, bits[2i + 1]: bad, blocks 64i .. 64i + 63 */
    uint64_t *bits;
    struct bs_known *hnext;
    TAILQ_ENTRY(bs_known) lru;
};

/* A segment reads in flight hold (bs_hold). */
struct hold {
    uint8_t seg[STORE_MAX_ID];
    size_t seglen;
    unsigned count;
    struct hold *next;
};

/* A data file reclaim freed whole, kept as <data>/spare/<seq> for a new segment. */
struct spare {
    uint64_t seq;
    uint64_t size;  /* st_size: the file is used only for a segment file at least this long */
    uint64_t bytes; /* st_blocks * 512: what it holds on disk */
};

/* Which data file: a segment and the file's owner (STORE_OWNER_SHARED or a uid). */
struct file_key {
    uint8_t seg[STORE_MAX_ID];
    uint8_t seglen;
    int64_t file_owner;
};

static struct file_key file_key(const uint8_t *seg, size_t seglen, int64_t file_owner)
{
    struct file_key k = {.seglen = (uint8_t)seglen, .file_owner = file_owner};
    memcpy(k.seg, seg, seglen);
    return k;
}

static bool file_key_is(const struct file_key *k, const uint8_t *seg, size_t seglen,
    int64_t file_owner)
{
    return k->seglen == seglen && k->file_owner == file_owner && memcmp(k->seg, seg, seglen) == 0;
}

/* A data file made from a spare: its slots no row names still hold the old bytes. */
#define SPARE_SLOTS_MAX 512 /* a V1 segment's blocks: past that, only a tidy ends it */
struct spare_taken {
    struct file_key key;
    time_t at;
    uint32_t nslots, filled; /* the spare's slots, and those a commit has given a row */
    uint64_t rowed[SPARE_SLOTS_MAX / 64];
};

struct spare_pool {
    /*
     * place_mu: held over the open of a data file and over a spare's rename into place, so no
     * worker opens a file made from a spare before its name is durable (placing, placed).
     * Taken before mu, never after.
     */
    pthread_mutex_t place_mu;
    pthread_cond_t placed;
    struct file_key placing[BS_SPARE_TAKEN_MAX]; /* files whose directory fsync is under way */
    size_t nplacing;
    pthread_mutex_t mu; /* any thread; held only to change the lists, never over I/O */
    char *dir;          /* <data>/spare */
    struct spare files[BS_SPARE_FILES_MAX];
    size_t n;
    struct spare_taken taken_files[BS_SPARE_TAKEN_MAX]; /* not tidied yet (bs_spare_tidy) */
    size_t ntaken;
    uint64_t bytes, limit; /* held on disk, and the most it may hold (bs_spare_limit) */
    uint64_t seq;          /* the next file's name */
    uint64_t kept, taken;  /* files kept and taken since start */
    bool off;              /* the filesystem cannot rename without replacing: none kept */
};

struct blockstore {
    char *dir;               /* <dbdir>/data */
    pthread_mutex_t hold_mu; /* holds: loop adds and removes, eviction's worker looks */
    struct hold *holds;
    struct worker_pool *wp;
    /* mu orders pins (loop) against reclaim (worker): a slot is punched only while unpinned
     * and with no row, checked and punched under mu, so a write never lands before a punch. */
    pthread_mutex_t mu;
    struct pin *pins;
    uint64_t pin_failures; /* under mu: pins that could not be recorded (out of memory) */
    unsigned unpinned;     /* under mu: writes under way without their pin */
    struct store *reader;  /* reclaim's own read-only connection; used under mu */
    atomic_uint_fast64_t pending, reclaimed;
    atomic_uint_fast64_t trash_seq; /* names of files on their way out (reclaim_file) */
    /* Loop thread only: verdicts per file (bs_slot_state), least recently used first. */
    struct bs_known **known;
    size_t nknown;
    uint64_t seed; /* of the bucket hash: segment IDs of private rows are chosen by users */
    TAILQ_HEAD(, bs_known) known_lru;
    struct store_slot *bad; /* slots found bad, waiting for bs_bad_take */
    size_t nbad, bad_cap;
    size_t bad_slots;         /* bad bits set, over all entries */
    struct store *loop_store; /* whose put hook is ours (bs_reconcile) */
    struct spare_pool spares;
};

struct reclaim_job {
    struct blockstore *bs;
    struct store_reclaim *items;
    size_t n;
};

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = 0;
}

static int unhex(const char *s, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char ch = s[2 * i + k];
            int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

void bs_file_path(const struct blockstore *bs, const uint8_t *seg, size_t seglen,
    int64_t file_owner, char *buf, size_t buflen)
{
    char h[2 * STORE_MAX_ID + 1];
    hex(seg, seglen, h);
    if (file_owner == STORE_OWNER_SHARED)
        snprintf(buf, buflen, "%s/%.2s/%s", bs->dir, h, h);
    else
        snprintf(buf, buflen, "%s/%.2s/%s.%" PRId64, bs->dir, h, h, file_owner);
}

static int spare_into_place(struct blockstore *bs, const char *path, uint64_t want,
    const uint8_t *seg, size_t seglen, int64_t file_owner);
static int open_placed(struct blockstore *bs, const char *path, const uint8_t *seg, size_t seglen,
    int64_t file_owner, int flags);

int bs_open_write(struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner,
    uint64_t want)
{
    char path[4096];
    bs_file_path(bs, seg, seglen, file_owner, path, sizeof(path));
    int fd = open_placed(bs, path, seg, seglen, file_owner, O_WRONLY | O_CLOEXEC);
    if (fd >= 0 || errno != ENOENT)
        return fd;
    char *slash = strrchr(path, '/');
    *slash = 0;
    if (mkdir(path, FS_DIR_MODE) != 0 && errno != EEXIST)
        return -1;
    *slash = '/';
    if (want && spare_into_place(bs, path, want, seg, seglen, file_owner) < 0)
        return -1;
    return open_placed(bs, path, seg, seglen, file_owner, O_WRONLY | O_CREAT | O_CLOEXEC);
}

int bs_open_existing(struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner)
{
    char path[4096];
    bs_file_path(bs, seg, seglen, file_owner, path, sizeof(path));
    return open_placed(bs, path, seg, seglen, file_owner, O_WRONLY | O_CLOEXEC);
}

int bs_read(const struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner,
    uint64_t file_offset, void *buf, size_t len)
{
    char path[4096];
    bs_file_path(bs, seg, seglen, file_owner, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(file_offset + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        done += (size_t)r;
    }
    close(fd);
    return done == len ? 0 : -1;
}

static bool pin_match(const struct pin *p, const uint8_t *seg, size_t seglen, int64_t file_owner)
{
    return p->seglen == seglen && p->file_owner == file_owner && memcmp(p->seg, seg, seglen) == 0;
}

static void known_written(struct blockstore *bs, const uint8_t *seg, size_t seglen,
    int64_t file_owner, uint32_t block, bool forget);

/* Under mu. */
static struct pin *pin_find(const struct blockstore *bs, const uint8_t *seg, size_t seglen,
    int64_t file_owner, uint32_t block)
{
    struct pin *p;
    for (p = bs->pins; p; p = p->next)
        if (p->block == block && pin_match(p, seg, seglen, file_owner))
            break;
    return p;
}

int bs_pin(struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner,
    uint32_t block)
{
    /* The bytes are about to change: nothing known of them holds any more. */
    known_written(bs, seg, seglen, file_owner, block, true);
    pthread_mutex_lock(&bs->mu);
    struct pin *p = pin_find(bs, seg, seglen, file_owner, block);
    if (p) {
        p->overlapped = true;
    } else if ((p = calloc(1, sizeof(*p)))) {
        memcpy(p->seg, seg, seglen);
        p->seglen = seglen;
        p->file_owner = file_owner;
        p->block = block;
        p->failures = bs->pin_failures;
        p->next = bs->pins;
        bs->pins = p;
    } else {
        bs->pin_failures++;
        bs->unpinned++;
    }
    if (p)
        p->count++;
    pthread_mutex_unlock(&bs->mu);
    return p ? 0 : -1;
}

void bs_unpin(struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner,
    uint32_t block)
{
    bool found = false;
    pthread_mutex_lock(&bs->mu);
    for (struct pin **pp = &bs->pins; *pp; pp = &(*pp)->next) {
        struct pin *p = *pp;
        if (p->block == block && pin_match(p, seg, seglen, file_owner)) {
            if (--p->count == 0) {
                *pp = p->next;
                free(p);
            }
            found = true;
            break;
        }
    }
    if (!found && bs->unpinned)
        bs->unpinned--; /* the write whose pin could not be recorded */
    pthread_mutex_unlock(&bs->mu);
    /* The write is over: a check that read the slot meanwhile may have seen either bytes.
     * What its commit recorded (bs_puts_committed) stays. */
    known_written(bs, seg, seglen, file_owner, block, false);
}

/* ---- what this run knows of each slot's bytes (loop thread only) ---- */

static size_t known_bucket(const struct blockstore *bs, const uint8_t *seg, size_t seglen,
    int64_t file_owner)
{
    uint64_t h = bs->seed ^ ((uint64_t)file_owner * 0x9E3779B97F4A7C15ull);
    for (size_t i = 0; i < seglen; i += 8) {
        uint64_t w = 0;
        memcpy(&w, seg + i, seglen - i < 8 ? seglen - i : 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    return (size_t)(h & (KNOWN_BUCKETS - 1));
}

static void known_free(struct bs_known *k)
{
    free(k->bits);
    free(k);
}

static size_t known_bad_bits(const struct bs_known *k)
{
    size_t n = 0;
    for (uint32_t w = 0; w < k->nwords; w++)
        n += (size_t)__builtin_popcountll(k->bits[2 * w + 1]);
    return n;
}

/* Forgets the least recently used file that no check and no queued bad slot holds. */
static bool known_evict(struct blockstore *bs)
{
    struct bs_known *k;
    TAILQ_FOREACH (k, &bs->known_lru, lru)
        if (k->checks == 0 && k->bad_queued == 0)
            break;
    if (!k)
        return false;
    struct bs_known **pp = &bs->known[known_bucket(bs, k->seg, k->seglen, k->file_owner)];
    while (*pp != k)
        pp = &(*pp)->hnext;
    *pp = k->hnext;
    TAILQ_REMOVE(&bs->known_lru, k, lru);
    bs->nknown--;
    bs->bad_slots -= known_bad_bits(k);
    known_free(k);
    return true;
}

/* The file's entry (most recently used now), created if asked; NULL if none. */
static struct bs_known *known_get(struct blockstore *bs, const uint8_t *seg, size_t seglen,
    int64_t file_owner, bool create)
{
    if (!bs->known || seglen > STORE_MAX_ID)
        return NULL;
    size_t b = known_bucket(bs, seg, seglen, file_owner);
    struct bs_known *k;
    for (k = bs->known[b]; k; k = k->hnext)
        if (k->file_owner == file_owner && k->seglen == seglen && memcmp(k->seg, seg, seglen) == 0)
            break;
    if (k) {
        TAILQ_REMOVE(&bs->known_lru, k, lru);
        TAILQ_INSERT_TAIL(&bs->known_lru, k, lru);
        return k;
    }
    if (!create || (bs->nknown >= BS_KNOWN_FILES_MAX && !known_evict(bs)) ||
        !(k = calloc(1, sizeof(*k))))
        return NULL;
    memcpy(k->seg, seg, seglen);
    k->seglen = (uint8_t)seglen;
    k->file_owner = file_owner;
    k->hnext = bs->known[b];
    bs->known[b] = k;
    TAILQ_INSERT_TAIL(&bs->known_lru, k, lru);
    bs->nknown++;
    return k;
}

static bool known_bit(const struct bs_known *k, uint32_t block, int which)
{
    uint32_t w = block / 64;
    return w < k->nwords && (k->bits[2 * w + which] >> (block % 64) & 1);
}

/* Records the verdict of one slot (which: 0 good, 1 bad); false when out of memory. */
static bool known_set(struct blockstore *bs, struct bs_known *k, uint32_t block, int which)
{
    uint32_t w = block / 64;
    if (block >= KNOWN_BLOCKS_MAX)
        return false;
    if (w >= k->nwords) {
        uint64_t *nb = realloc(k->bits, 2 * (size_t)(w + 1) * sizeof(*nb));
        if (!nb)
            return false;
        memset(nb + 2 * k->nwords, 0, 2 * (size_t)(w + 1 - k->nwords) * sizeof(*nb));
        k->bits = nb;
        k->nwords = w + 1;
    }
    bool was_bad = known_bit(k, block, 1);
    k->bits[2 * w + which] |= 1ull << (block % 64);
    k->bits[2 * w + !which] &= ~(1ull << (block % 64));
    bs->bad_slots += (size_t)which - (size_t)was_bad;
    return true;
}

static void known_clear(struct blockstore *bs, struct bs_known *k, uint32_t block)
{
    uint32_t w = block / 64;
    if (w < k->nwords) {
        bs->bad_slots -= known_bit(k, block, 1);
        k->bits[2 * w] &= ~(1ull << (block % 64));
        k->bits[2 * w + 1] &= ~(1ull << (block % 64));
    }
}

/* A write pins or unpins the slot: checks under way are stale; a pin also forgets. */
static void known_written(struct blockstore *bs, const uint8_t *seg, size_t seglen,
    int64_t file_owner, uint32_t block, bool forget)
{
    struct bs_known *k = known_get(bs, seg, seglen, file_owner, false);
    if (!k)
        return;
    k->writes++;
    if (forget)
        known_clear(bs, k, block);
}

enum bs_slot_state bs_slot_state(struct blockstore *bs, const uint8_t *seg, size_t seglen,
    int64_t file_owner, uint32_t block)
{
    struct bs_known *k = known_get(bs, seg, seglen, file_owner, false);
    if (!k)
        return BS_SLOT_UNCHECKED;
    return known_bit(k, block, 1) ? BS_SLOT_BAD
        : known_bit(k, block, 0)  ? BS_SLOT_GOOD
                                  : BS_SLOT_UNCHECKED;
}

void bs_check_begin(struct blockstore *bs, const uint8_t *seg, size_t seglen, int64_t file_owner,
    uint32_t block, struct bs_check *ck)
{
    ck->file = known_get(bs, seg, seglen, file_owner, true);
    ck->block = block;
    if (ck->file) {
        ck->file->checks++;
        ck->writes = ck->file->writes;
    }
}

bool bs_check_end(struct blockstore *bs, struct bs_check *ck, enum bs_verdict v)
{
    struct bs_known *k = ck->file;
    if (!k)
        return false;
    ck->file = NULL;
    k->checks--;
    pthread_mutex_lock(&bs->mu);
    bool settled = k->writes == ck->writes && bs->unpinned == 0 &&
        !pin_find(bs, k->seg, k->seglen, k->file_owner, ck->block);
    pthread_mutex_unlock(&bs->mu);
    if (!settled || v == BS_VERDICT_NONE ||
        (v == BS_VERDICT_BAD && known_bit(k, ck->block, 1)) || /* another check found it */
        !known_set(bs, k, ck->block, v == BS_VERDICT_BAD))
        return false;
    if (v == BS_VERDICT_BAD) {
        if (bs->nbad == bs->bad_cap) {
            size_t cap = bs->bad_cap ? bs->bad_cap * 2 : 16;
            struct store_slot *nb = realloc(bs->bad, cap * sizeof(*nb));
            if (!nb)
                return true; /* readers skip it; its row is found bad again after a restart */
            bs->bad = nb;
            bs->bad_cap = cap;
        }
        struct store_slot *sl = &bs->bad[bs->nbad++];
        memcpy(sl->segment_id, k->seg, k->seglen);
        sl->segment_id_len = k->seglen;
        sl->file_owner = k->file_owner;
        sl->block = ck->block;
        k->bad_queued++;
    }
    return true;
}

size_t bs_bad_slots(const struct blockstore *bs)
{
    return bs->bad_slots;
}

size_t bs_bad_take(struct blockstore *bs, struct store_slot *out, size_t max)
{
    size_t n = 0, i = 0;
    for (; i < bs->nbad && n < max; i++) {
        struct store_slot *sl = &bs->bad[i];
        struct bs_known *k = known_get(bs, sl->segment_id, sl->segment_id_len, sl->file_owner,
            false);
        if (!k)
            continue;
        k->bad_queued--;
        if (known_bit(k, sl->block, 1)) /* else written since: the new bytes are not bad */
            out[n++] = *sl;
    }
    memmove(bs->bad, bs->bad + i, (bs->nbad - i) * sizeof(*bs->bad));
    bs->nbad -= i;
    return n;
}

/*
 * Loop: a commit gave the slot a row. A file made from a spare whose every slot has had one
 * holds none of the spare's old bytes any more: it leaves the list (no tidy needed).
 */
static void spare_slot_rowed(struct blockstore *bs, const struct store_slot *sl)
{
    struct spare_pool *sp = &bs->spares;
    pthread_mutex_lock(&sp->mu);
    for (size_t i = 0; i < sp->ntaken; i++) {
        struct spare_taken *t = &sp->taken_files[i];
        if (!file_key_is(&t->key, sl->segment_id, sl->segment_id_len, sl->file_owner))
            continue;
        if (sl->block < SPARE_SLOTS_MAX && sl->block < t->nslots &&
            !(t->rowed[sl->block / 64] & (1ull << (sl->block % 64)))) {
            t->rowed[sl->block / 64] |= 1ull << (sl->block % 64);
            if (++t->filled == t->nslots)
                sp->taken_files[i] = sp->taken_files[--sp->ntaken];
        }
        break;
    }
    pthread_mutex_unlock(&sp->mu);
}

void bs_puts_committed(void *arg, const struct store_slot *slots, size_t n)
{
    struct blockstore *bs = arg;
    for (size_t i = 0; i < n; i++) {
        const struct store_slot *sl = &slots[i];
        spare_slot_rowed(bs, sl);
        pthread_mutex_lock(&bs->mu);
        const struct pin *p = pin_find(bs, sl->segment_id, sl->segment_id_len, sl->file_owner,
            sl->block);
        /* Only this write touched the slot since its pin: its verified bytes are there. */
        bool sole = p && p->count == 1 && !p->overlapped && p->failures == bs->pin_failures;
        pthread_mutex_unlock(&bs->mu);
        struct bs_known *k = sole
            ? known_get(bs, sl->segment_id, sl->segment_id_len, sl->file_owner, true)
            : NULL;
        if (k)
            known_set(bs, k, sl->block, 0);
    }
}

/*
 * Under mu: is fd still the file at path? Reclaim moves a file out of its name under mu, and
 * may make it a spare that a new segment takes: a punch must not follow the file there.
 */
static bool fd_is_path(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
        a.st_dev == b.st_dev;
}

/* Under mu. */
static bool file_pinned(const struct blockstore *bs, const struct store_reclaim *r, int64_t block)
{
    for (const struct pin *p = bs->pins; p; p = p->next)
        if ((block < 0 || p->block == (uint32_t)block) &&
            pin_match(p, r->segment_id, r->segment_id_len, r->file_owner))
            return true;
    return false;
}

/* Under mu: does a committed row still use the file (block < 0) or the slot? */
static bool row_exists(struct blockstore *bs, const struct store_reclaim *r, int64_t block)
{
    int used = block < 0
        ? store_file_in_use(bs->reader, r->segment_id, r->segment_id_len, r->file_owner)
        : store_slot_in_use(bs->reader, r->segment_id, r->segment_id_len, r->file_owner,
              (uint32_t)block);
    return used != 0; /* a row, or an error: keep the bytes */
}

static int reclaim_cmp(const void *a, const void *b)
{
    const struct store_reclaim *x = a, *y = b;
    int c = memcmp(x->segment_id, y->segment_id,
        x->segment_id_len < y->segment_id_len ? x->segment_id_len : y->segment_id_len);
    if (c == 0)
        c = (int)x->segment_id_len - (int)y->segment_id_len;
    if (c == 0)
        c = (x->file_owner > y->file_owner) - (x->file_owner < y->file_owner);
    return c;
}

/* One file's deleted slots: unlink the file when nothing uses it, else punch the slots. */
/*
 * Frees a file nobody names any more: cut down RECLAIM_STEP bytes at a time with a pause
 * between, then unlinked. Freeing 32 MiB at once holds the filesystem journal for about
 * 10 ms, and clients' fdatasyncs wait behind it (bench/README.md, evict_e2e).
 */
#define RECLAIM_STEP (2u * 1024 * 1024)
#define RECLAIM_PAUSE_US 500

static void release_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat sb;
    if (fd >= 0 && fstat(fd, &sb) == 0) {
        for (off_t size = sb.st_size; size > (off_t)RECLAIM_STEP;) {
            size -= RECLAIM_STEP;
            if (ftruncate(fd, size) != 0)
                break;
            usleep(RECLAIM_PAUSE_US);
        }
    }
    if (fd >= 0)
        close(fd);
    if (unlink(path) != 0)
        log_warn("reclaim: unlink %s: %s", path, strerror(errno));
}

/*
 * Under mu: punches r's slot of fd (the file at path) if no write has pinned it and no row
 * names it (and, with all_pins, every write's pin is recorded). 1 punched, 0 left alone,
 * -1 when fd is no longer the file at path (reclaimed whole meanwhile: leave it alone).
 */
static int punch_unused_slot(struct blockstore *bs, int fd, const char *path,
    const struct store_reclaim *r, bool all_pins, const char *what)
{
    if (!fd_is_path(fd, path))
        return -1;
    if ((all_pins && bs->unpinned != 0) || file_pinned(bs, r, r->block) ||
        row_exists(bs, r, r->block))
        return 0;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)r->block * BS_SLOT_SIZE,
            BS_SLOT_SIZE) != 0) {
        log_warn("%s: punching %s: %s", what, path, strerror(errno));
        return 0;
    }
    return 1;
}

/* ---- spare files: freed data files written over by new segments ---- */

static void spare_path(const struct spare_pool *sp, uint64_t seq, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%" PRIu64, sp->dir, seq);
}

/* Under sp->mu: adds a file the pool has room for; false if it has none. */
static bool spare_push(struct spare_pool *sp, const struct spare *f)
{
    if (sp->n == BS_SPARE_FILES_MAX || sp->bytes + f->bytes > sp->limit)
        return false;
    sp->files[sp->n++] = *f;
    sp->bytes += f->bytes;
    return true;
}

/* Under sp->mu: takes the pool's file at i out of it. */
static struct spare spare_remove(struct spare_pool *sp, size_t i)
{
    struct spare f = sp->files[i];
    sp->files[i] = sp->files[--sp->n];
    sp->bytes -= f.bytes;
    return f;
}

/* Is there room on the filesystem to keep bytes more as spares, the pool's limit besides? */
static bool spare_room(const struct spare_pool *sp, uint64_t limit, uint64_t bytes)
{
    struct statvfs sv;
    if (statvfs(sp->dir, &sv) != 0)
        return false;
    uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    return avail >= limit + bytes + BS_SPARE_FREE_MARGIN;
}

/*
 * Worker: a file nobody names any more (path) becomes a spare if it holds at least
 * BS_SPARE_MIN_BYTES and both the pool and the filesystem have room; else it is released.
 */
static void spare_keep_or_release(struct blockstore *bs, const char *path)
{
    struct spare_pool *sp = &bs->spares;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        release_file(path);
        return;
    }
    struct spare f = {0, (uint64_t)sb.st_size, (uint64_t)sb.st_blocks * 512};
    pthread_mutex_lock(&sp->mu);
    uint64_t limit = sp->limit;
    bool fits = sp->n < BS_SPARE_FILES_MAX && sp->bytes + f.bytes <= limit;
    f.seq = sp->seq++;
    pthread_mutex_unlock(&sp->mu);
    if (f.bytes < BS_SPARE_MIN_BYTES || f.size < BS_SPARE_MIN_BYTES || !fits ||
        !spare_room(sp, limit, f.bytes)) {
        release_file(path);
        return;
    }
    char dst[4096];
    spare_path(sp, f.seq, dst, sizeof(dst));
    if (rename(path, dst) != 0) {
        log_warn("spare file %s: rename from %s: %s", dst, path, strerror(errno));
        release_file(path);
        return;
    }
    pthread_mutex_lock(&sp->mu);
    bool kept = spare_push(sp, &f); /* the pool may have filled meanwhile */
    sp->kept += kept;
    pthread_mutex_unlock(&sp->mu);
    if (!kept)
        release_file(dst);
}

/* 0, or the errno of syncing the directory holding path (which makes a rename in it durable). */
static int dir_sync(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = 0;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = dfd < 0 ? errno : fsync(dfd) != 0 ? errno : 0;
    if (dfd >= 0)
        close(dfd);
    if (err)
        log_error("data directory %s: fsync: %s", dir, strerror(err));
    return err;
}

/* Under place_mu. */
static struct file_key *placing_find(struct spare_pool *sp, const uint8_t *seg, size_t seglen,
    int64_t file_owner)
{
    for (size_t i = 0; i < sp->nplacing; i++)
        if (file_key_is(&sp->placing[i], seg, seglen, file_owner))
            return &sp->placing[i];
    return NULL;
}

/* Under place_mu, which it releases while it waits: until no spare is being placed at the
 * file (spare_into_place). */
static void placed_wait(struct spare_pool *sp, const uint8_t *seg, size_t seglen,
    int64_t file_owner)
{
    while (placing_find(sp, seg, seglen, file_owner))
        pthread_cond_wait(&sp->placed, &sp->place_mu);
}

/* Worker: open(path, flags), once a spare renamed to path (if it is one) has a durable name. */
static int open_placed(struct blockstore *bs, const char *path, const uint8_t *seg, size_t seglen,
    int64_t file_owner, int flags)
{
    struct spare_pool *sp = &bs->spares;
    pthread_mutex_lock(&sp->place_mu);
    placed_wait(sp, seg, seglen, file_owner);
    int fd = open(path, flags, FS_FILE_MODE);
    int err = errno;
    pthread_mutex_unlock(&sp->place_mu);
    errno = err;
    return fd;
}

/*
 * Worker: path (a data file that does not exist) becomes the largest spare no longer than
 * want, renamed into place, its name made durable (its directory synced) before any block is
 * written to it, by this worker or any other (open_placed waits): the blocks' own syncs then
 * write over allocated space and need no journal commit of their own. 0 (a spare is in place,
 * or none fit: the caller creates the file), or -1 with errno (the directory could not be
 * synced: the file is unlinked before anyone opens it, its blocks were never written).
 */
static int spare_into_place(struct blockstore *bs, const char *path, uint64_t want,
    const uint8_t *seg, size_t seglen, int64_t file_owner)
{
    struct spare_pool *sp = &bs->spares;
    pthread_mutex_lock(&sp->place_mu);
    pthread_mutex_lock(&sp->mu);
    size_t best = sp->n;
    /* With BS_SPARE_TAKEN_MAX files untidied, none: they wait for a tidy first. */
    for (size_t i = 0; i < sp->n && sp->ntaken < BS_SPARE_TAKEN_MAX; i++)
        if (sp->files[i].size <= want &&
            (best == sp->n || sp->files[i].size > sp->files[best].size))
            best = i;
    if (best == sp->n || sp->nplacing == BS_SPARE_TAKEN_MAX ||
        placing_find(sp, seg, seglen, file_owner)) {
        pthread_mutex_unlock(&sp->mu);
        pthread_mutex_unlock(&sp->place_mu);
        return 0;
    }
    struct spare f = spare_remove(sp, best);
    pthread_mutex_unlock(&sp->mu);
    char src[4096];
    spare_path(sp, f.seq, src, sizeof(src));
    /* NOREPLACE: a file created meanwhile (before place_mu was taken) keeps its bytes. */
    if (renameat2(AT_FDCWD, src, AT_FDCWD, path, RENAME_NOREPLACE) != 0) {
        int err = errno;
        pthread_mutex_unlock(&sp->place_mu);
        bool back = false;
        if (err == EEXIST) {
            pthread_mutex_lock(&sp->mu);
            back = spare_push(sp, &f);
            pthread_mutex_unlock(&sp->mu);
        } else if (err != ENOENT) {
            log_warn("spare file %s: rename to %s: %s", src, path, strerror(err));
            if (err == EINVAL || err == ENOSYS || err == EOPNOTSUPP) {
                log_warn("spare files off: the cache filesystem cannot rename without replacing");
                pthread_mutex_lock(&sp->mu);
                sp->off = true;
                pthread_mutex_unlock(&sp->mu);
                bs_spare_limit(bs, 0);
            }
        }
        if (!back && err != ENOENT)
            release_file(src);
        return 0;
    }
    sp->placing[sp->nplacing++] = file_key(seg, seglen, file_owner);
    pthread_mutex_lock(&sp->mu);
    sp->taken++;
    /* Room was checked above; only a tidy that could not start puts files back meanwhile. */
    if (sp->ntaken < BS_SPARE_TAKEN_MAX) {
        struct spare_taken *t = &sp->taken_files[sp->ntaken++];
        memset(t, 0, sizeof(*t));
        t->key = file_key(seg, seglen, file_owner);
        t->at = time(NULL);
        t->nslots = (uint32_t)((f.size + BS_SLOT_SIZE - 1) / BS_SLOT_SIZE);
    }
    pthread_mutex_unlock(&sp->mu);
    pthread_mutex_unlock(&sp->place_mu);
    log_debug("data file %s made from spare %" PRIu64 " (%" PRIu64 " bytes on disk)", path, f.seq,
        f.bytes);
    int err = dir_sync(path);
    pthread_mutex_lock(&sp->place_mu);
    /*
     * A name that may not be durable takes no block: nobody has opened the file (opens wait
     * above), and the caller's pins keep reclaim away, so it goes here. A later write creates
     * the file anew; a crash before this unlink leaves a file no row names (reconciled).
     */
    if (err && unlink(path) != 0)
        log_error("data file %s: unlink: %s", path, strerror(errno));
    struct file_key *pl = placing_find(sp, seg, seglen, file_owner); /* before the count drops */
    *pl = sp->placing[--sp->nplacing];
    pthread_cond_broadcast(&sp->placed);
    pthread_mutex_unlock(&sp->place_mu);
    errno = err;
    return err ? -1 : 0;
}

/*
 * Worker: punches the slots of a file made from a spare that hold its old bytes: each
 * allocated slot no row names and no write has pinned, checked and punched under mu as
 * reclaim does. A file whose segment was written whole has none.
 */
static void spare_tidy_file(struct blockstore *bs, const struct spare_taken *t)
{
    const struct file_key *k = &t->key;
    char path[4096];
    bs_file_path(bs, k->seg, k->seglen, k->file_owner, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* reclaimed whole meanwhile */
    struct store_reclaim r = {.segment_id_len = k->seglen, .file_owner = k->file_owner};
    memcpy(r.segment_id, k->seg, k->seglen);
    off_t at = 0, end;
    bool moved = false;
    while (
        !moved && (at = lseek(fd, at, SEEK_DATA)) >= 0 && (end = lseek(fd, at, SEEK_HOLE)) > at) {
        for (uint64_t b = (uint64_t)at / BS_SLOT_SIZE; !moved && (off_t)(b * BS_SLOT_SIZE) < end;
             b++) {
            r.block = (uint32_t)b;
            pthread_mutex_lock(&bs->mu);
            moved = punch_unused_slot(bs, fd, path, &r, true, "spare tidy") < 0;
            pthread_mutex_unlock(&bs->mu);
        }
        at = end;
    }
    close(fd);
}

struct spare_tidy_job {
    struct blockstore *bs;
    size_t n;
    struct spare_taken files[BS_SPARE_TAKEN_MAX];
};

static void spare_tidy_work(void *arg)
{
    struct spare_tidy_job *j = arg;
    for (size_t i = 0; i < j->n; i++)
        spare_tidy_file(j->bs, &j->files[i]);
}

/* Takes the files taken before `before` off the list, into a tidy job. */
static struct spare_tidy_job *spare_tidy_take(struct blockstore *bs, time_t before)
{
    struct spare_pool *sp = &bs->spares;
    struct spare_tidy_job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->bs = bs;
    pthread_mutex_lock(&sp->mu);
    for (size_t i = 0; i < sp->ntaken;) {
        if (sp->taken_files[i].at <= before) {
            j->files[j->n++] = sp->taken_files[i];
            sp->taken_files[i] = sp->taken_files[--sp->ntaken];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&sp->mu);
    return j;
}

void bs_spare_tidy(struct blockstore *bs)
{
    struct spare_tidy_job *j = spare_tidy_take(bs, time(NULL) - BS_SPARE_TIDY_S);
    if (j && j->n && worker_submit(bs->wp, spare_tidy_work, free, j) == 0)
        return;
    if (j && j->n) { /* back on the list for the next tidy */
        pthread_mutex_lock(&bs->spares.mu);
        for (size_t i = 0; i < j->n && bs->spares.ntaken < BS_SPARE_TAKEN_MAX; i++)
            bs->spares.taken_files[bs->spares.ntaken++] = j->files[i];
        pthread_mutex_unlock(&bs->spares.mu);
    }
    free(j);
}

struct spare_release_job {
    struct blockstore *bs;
    size_t n;
    struct spare files[BS_SPARE_FILES_MAX];
};

static void spare_release_work(void *arg)
{
    struct spare_release_job *j = arg;
    for (size_t i = 0; i < j->n; i++) {
        char path[4096];
        spare_path(&j->bs->spares, j->files[i].seq, path, sizeof(path));
        release_file(path);
    }
}

static void spare_release_done(void *arg)
{
    free(arg);
}

/* Takes spares out of the pool until it holds at most keep bytes; a worker releases them. */
static void spare_trim(struct blockstore *bs, uint64_t keep)
{
    struct spare_pool *sp = &bs->spares;
    struct spare_release_job *j = calloc(1, sizeof(*j));
    if (!j)
        return; /* they stay spares: the pool still bounds them */
    j->bs = bs;
    pthread_mutex_lock(&sp->mu);
    while (sp->n && sp->bytes > keep)
        j->files[j->n++] = spare_remove(sp, sp->n - 1);
    pthread_mutex_unlock(&sp->mu);
    if (j->n && worker_submit(bs->wp, spare_release_work, spare_release_done, j) == 0)
        return;
    spare_release_work(j); /* no worker to take it (stopping): here, then */
    free(j);
}

void bs_spare_limit(struct blockstore *bs, uint64_t limit)
{
    pthread_mutex_lock(&bs->spares.mu);
    bs->spares.limit = limit = bs->spares.off ? 0 : limit;
    bool over = bs->spares.bytes > limit;
    pthread_mutex_unlock(&bs->spares.mu);
    if (over)
        spare_trim(bs, limit);
}

void bs_spare_drop(struct blockstore *bs)
{
    pthread_mutex_lock(&bs->spares.mu);
    bool any = bs->spares.n > 0;
    pthread_mutex_unlock(&bs->spares.mu);
    if (any) {
        log_warn("cache filesystem nearly full: spare data files released");
        spare_trim(bs, 0);
    }
}

void bs_spare_stats(struct blockstore *bs, struct bs_spare_stats *out)
{
    pthread_mutex_lock(&bs->spares.mu);
    *out = (struct bs_spare_stats){bs->spares.n, bs->spares.bytes, bs->spares.kept,
        bs->spares.taken, bs->spares.ntaken};
    pthread_mutex_unlock(&bs->spares.mu);
}

/* Start-up: the spares a previous run left, kept while the pool has room (bs_spare_limit may
 * trim them later); anything else in the folder goes. */
static void spare_adopt(struct blockstore *bs)
{
    struct spare_pool *sp = &bs->spares;
    DIR *dd = opendir(sp->dir);
    struct dirent *e;
    sp->limit = UINT64_MAX; /* all of them, for now */
    while (dd && (e = readdir(dd))) {
        if (e->d_name[0] == '.')
            continue;
        char *end;
        errno = 0;
        unsigned long long seq = strtoull(e->d_name, &end, 10);
        struct stat sb;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", sp->dir, e->d_name);
        if (errno || *end || e->d_name[0] < '0' || e->d_name[0] > '9' ||
            fstatat(dirfd(dd), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode) ||
            !spare_push(sp,
                &(struct spare){seq, (uint64_t)sb.st_size, (uint64_t)sb.st_blocks * 512})) {
            if (unlink(path) != 0)
                log_warn("spare files: unlink %s: %s", path, strerror(errno));
            continue;
        }
        if (seq >= sp->seq)
            sp->seq = seq + 1;
    }
    if (dd)
        closedir(dd);
    sp->limit = 0; /* none kept until bs_spare_limit, which trims these to the limit it sets */
}

static void reclaim_file(struct blockstore *bs, const struct store_reclaim *r, size_t n)
{
    char path[4096];
    bs_file_path(bs, r->segment_id, r->segment_id_len, r->file_owner, path, sizeof(path));
    pthread_mutex_lock(&bs->mu);
    if (!file_pinned(bs, r, -1) && !row_exists(bs, r, -1)) {
        /*
         * Under mu the file only leaves its name (a rename: quick); the unlink, which frees
         * its pages and extents (tens of ms for 32 MiB), runs after, so that a pin on the
         * loop never waits for it. A write from now on creates a new file under the name.
         * A crash in between leaves a '~reclaim.N' that start-up reconciliation deletes.
         */
        char trash[4096 + 32];
        const char *slash = strrchr(path, '/');
        snprintf(trash, sizeof(trash), "%.*s/~reclaim.%llu", (int)(slash - path), path,
            (unsigned long long)atomic_fetch_add(&bs->trash_seq, 1));
        int moved = rename(path, trash) == 0 ? 1 : errno == ENOENT ? 0 : -1;
        int err = errno;
        /* A write whose pin could not be recorded may still hold the file: not a spare. */
        bool keepable = bs->unpinned == 0;
        pthread_mutex_unlock(&bs->mu);
        if (moved < 0)
            log_warn("reclaim: rename %s: %s", path, strerror(err));
        else if (moved && keepable)
            spare_keep_or_release(bs, trash);
        else if (moved)
            release_file(trash);
        bs->reclaimed += n;
        return;
    }
    pthread_mutex_unlock(&bs->mu);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    for (size_t i = 0; fd >= 0 && i < n; i++) {
        pthread_mutex_lock(&bs->mu); /* per slot: a pin never waits for more than one punch */
        int punched = punch_unused_slot(bs, fd, path, &r[i], false, "reclaim");
        pthread_mutex_unlock(&bs->mu);
        if (punched < 0)
            break; /* reclaimed whole meanwhile (by another job) */
        bs->reclaimed += (unsigned)punched;
    }
    if (fd >= 0)
        close(fd);
}

static void reclaim_work(void *arg)
{
    struct reclaim_job *j = arg;
    qsort(j->items, j->n, sizeof(*j->items), reclaim_cmp);
    for (size_t i = 0; i < j->n;) {
        size_t k = i + 1;
        while (k < j->n && reclaim_cmp(&j->items[i], &j->items[k]) == 0)
            k++;
        reclaim_file(j->bs, &j->items[i], k - i);
        j->bs->pending -= k - i;
        i = k;
    }
}

static void reclaim_done(void *arg)
{
    struct reclaim_job *j = arg;
    free(j->items);
    free(j);
}

void bs_reclaim(void *arg, struct store_reclaim *items, size_t n)
{
    struct blockstore *bs = arg;
    struct reclaim_job *j = malloc(sizeof(*j));
    if (j) {
        j->bs = bs;
        j->items = items;
        j->n = n;
        bs->pending += n;
        if (worker_submit(bs->wp, reclaim_work, reclaim_done, j) == 0)
            return;
        bs->pending -= n;
        free(j);
    }
    /* The rows are gone, so nothing is served; the space returns at the next start-up. */
    log_warn("reclaim: out of memory; %zu freed blocks keep their disk space until restart", n);
    free(items);
}

uint64_t bs_reclaim_pending(const struct blockstore *bs)
{
    return bs->pending;
}

uint64_t bs_reclaimed(const struct blockstore *bs)
{
    return bs->reclaimed;
}

/* ---- holds: segments reads in flight read (eviction leaves them alone) ---- */

static struct hold *hold_find(const struct blockstore *bs, const uint8_t *seg, size_t seglen)
{
    struct hold *h;
    for (h = bs->holds; h; h = h->next)
        if (h->seglen == seglen && memcmp(h->seg, seg, seglen) == 0)
            break;
    return h;
}

int bs_hold(struct blockstore *bs, const uint8_t *seg, size_t seglen)
{
    if (seglen > STORE_MAX_ID)
        return -1;
    pthread_mutex_lock(&bs->hold_mu);
    struct hold *h = hold_find(bs, seg, seglen);
    if (!h && (h = calloc(1, sizeof(*h)))) {
        memcpy(h->seg, seg, seglen);
        h->seglen = seglen;
        h->next = bs->holds;
        bs->holds = h;
    }
    if (h)
        h->count++;
    pthread_mutex_unlock(&bs->hold_mu);
    return h ? 0 : -1;
}

void bs_release(struct blockstore *bs, const uint8_t *seg, size_t seglen)
{
    pthread_mutex_lock(&bs->hold_mu);
    for (struct hold **hp = &bs->holds; *hp; hp = &(*hp)->next) {
        struct hold *h = *hp;
        if (h->seglen == seglen && memcmp(h->seg, seg, seglen) == 0) {
            if (--h->count == 0) {
                *hp = h->next;
                free(h);
            }
            break;
        }
    }
    pthread_mutex_unlock(&bs->hold_mu);
}

void bs_holds_lock(struct blockstore *bs)
{
    pthread_mutex_lock(&bs->hold_mu);
}

void bs_holds_unlock(struct blockstore *bs)
{
    pthread_mutex_unlock(&bs->hold_mu);
}

bool bs_held_locked(const struct blockstore *bs, const uint8_t *seg, size_t seglen)
{
    return hold_find(bs, seg, seglen) != NULL;
}

int bs_open(const char *db_path, struct worker_pool *wp, struct blockstore **out)
{
    struct blockstore *bs = calloc(1, sizeof(*bs));
    if (!bs)
        return -1;
    pthread_mutex_init(&bs->mu, NULL);
    pthread_mutex_init(&bs->hold_mu, NULL);
    pthread_mutex_init(&bs->spares.mu, NULL);
    pthread_mutex_init(&bs->spares.place_mu, NULL);
    pthread_cond_init(&bs->spares.placed, NULL);
    bs->wp = wp;
    TAILQ_INIT(&bs->known_lru);
    if (getrandom(&bs->seed, sizeof(bs->seed), GRND_NONBLOCK) != sizeof(bs->seed))
        bs->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)bs;
    if (!(bs->known = calloc(KNOWN_BUCKETS, sizeof(*bs->known))))
        goto fail;
    const char *slash = strrchr(db_path, '/');
    size_t dl = slash ? (size_t)(slash - db_path) : 1;
    if (!(bs->dir = malloc(dl + 6)))
        goto fail;
    snprintf(bs->dir, dl + 6, "%.*s/data", (int)dl, slash ? db_path : ".");
    if (mkdir(bs->dir, FS_DIR_MODE) != 0 && errno != EEXIST) {
        log_error("block store %s: %s", bs->dir, strerror(errno));
        goto fail;
    }
    size_t sl = strlen(bs->dir) + sizeof("/" BS_SPARE_DIR);
    if (!(bs->spares.dir = malloc(sl)))
        goto fail;
    snprintf(bs->spares.dir, sl, "%s/" BS_SPARE_DIR, bs->dir);
    if (mkdir(bs->spares.dir, FS_DIR_MODE) != 0 && errno != EEXIST) {
        log_error("block store %s: %s", bs->spares.dir, strerror(errno));
        goto fail;
    }
    spare_adopt(bs);
    char err[512];
    if (store_open_reader(db_path, &bs->reader, err, sizeof(err)) != 0) {
        log_error("block store: reclaim connection: %s", err);
        goto fail;
    }
    *out = bs;
    return 0;
fail:
    bs_close(bs);
    return -1;
}

void bs_close(struct blockstore *bs)
{
    if (!bs)
        return;
    if (bs->loop_store)
        store_set_put_hook(bs->loop_store, NULL, NULL);
    while (!TAILQ_EMPTY(&bs->known_lru)) {
        struct bs_known *k = TAILQ_FIRST(&bs->known_lru);
        TAILQ_REMOVE(&bs->known_lru, k, lru);
        known_free(k);
    }
    free(bs->known);
    free(bs->bad);
    struct spare_tidy_job *tidy = spare_tidy_take(bs, (time_t)INT64_MAX); /* no writes now */
    if (tidy)
        spare_tidy_work(tidy);
    free(tidy);
    store_close(bs->reader);
    while (bs->pins) {
        struct pin *p = bs->pins;
        bs->pins = p->next;
        free(p);
    }
    while (bs->holds) {
        struct hold *h = bs->holds;
        bs->holds = h->next;
        free(h);
    }
    pthread_mutex_destroy(&bs->mu);
    pthread_mutex_destroy(&bs->hold_mu);
    pthread_mutex_destroy(&bs->spares.mu);
    pthread_mutex_destroy(&bs->spares.place_mu);
    pthread_cond_destroy(&bs->spares.placed);
    free(bs->spares.dir);
    free(bs->dir);
    free(bs);
}

/* ---- start-up reconciliation ---- */

/* Rows whose file is missing or too short to hold their bytes, collected for dropping. */
struct missing {
    struct blockstore *bs;
    struct store_block_place *bad;
    size_t n, cap;
    char last[4096]; /* the file whose size is known */
    off_t size;
};

static int check_place(void *arg, const struct store_block_place *p)
{
    struct missing *m = arg;
    char path[4096];
    bs_file_path(m->bs, p->segment_id, p->segment_id_len, p->file_owner, path, sizeof(path));
    if (strcmp(path, m->last) != 0) { /* rows come ordered by file: one stat per file */
        struct stat sb;
        m->size = stat(path, &sb) == 0 ? sb.st_size : -1;
        snprintf(m->last, sizeof(m->last), "%s", path);
    }
    uint64_t end = (uint64_t)p->block * BS_SLOT_SIZE + p->length;
    if (m->size >= 0 && (uint64_t)m->size >= end)
        return 0;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct store_block_place *nb = realloc(m->bad, cap * sizeof(*nb));
        if (!nb)
            return -1;
        m->bad = nb;
        m->cap = cap;
    }
    m->bad[m->n++] = *p;
    return 0;
}

/* Drops rows whose bytes are missing (collected first: no delete while the walk runs). */
static int drop_rows_without_bytes(struct blockstore *bs, struct store *st, uint64_t *dropped)
{
    struct missing m = {.bs = bs, .size = -1};
    int rc = store_each_block(st, check_place, &m);
    for (size_t i = 0; rc == 0 && i < m.n; i++)
        rc = store_block_drop(st, m.bad[i].segment_id, m.bad[i].segment_id_len, m.bad[i].file_owner,
                 m.bad[i].block) < 0
            ? -1
            : 0;
    free(m.bad);
    *dropped = m.n;
    return rc;
}

/* Files no row refers to (an AddData that never committed, a reclaim cut short). */
static int delete_unreferenced_files(struct blockstore *bs, struct store *st, uint64_t *deleted)
{
    DIR *top = opendir(bs->dir);
    struct dirent *e;
    while (top && (e = readdir(top))) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, BS_SPARE_DIR) == 0) /* spare_adopt's */
            continue;
        char sub[4096];
        snprintf(sub, sizeof(sub), "%s/%s", bs->dir, e->d_name);
        DIR *dd = opendir(sub);
        struct dirent *f;
        while (dd && (f = readdir(dd))) {
            if (f->d_name[0] == '.')
                continue;
            char path[4096 + 256];
            snprintf(path, sizeof(path), "%s/%s", sub, f->d_name);
            const char *dot = strchr(f->d_name, '.');
            size_t hl = dot ? (size_t)(dot - f->d_name) : strlen(f->d_name);
            uint8_t seg[STORE_MAX_ID];
            int64_t owner = dot ? strtoll(dot + 1, NULL, 10) : STORE_OWNER_SHARED;
            int used = 0;
            if (hl % 2 == 0 && hl / 2 <= STORE_MAX_ID && hl > 0 &&
                unhex(f->d_name, hl / 2, seg) == 0)
                used = store_file_in_use(st, seg, hl / 2, owner);
            if (used == 0 && unlink(path) == 0)
                (*deleted)++;
        }
        if (dd)
            closedir(dd);
    }
    if (top)
        closedir(top);
    return 0;
}

int bs_reconcile(struct blockstore *bs, struct store *st)
{
    uint64_t dropped = 0, deleted = 0;
    if (store_begin(st) != 0)
        return -1;
    if (drop_rows_without_bytes(bs, st, &dropped) != 0 ||
        (dropped && store_drop_orphan_labels(st) != 0) || store_commit(st) != 0) {
        log_error("block store reconcile: %s", store_errmsg(st));
        store_rollback(st);
        return -1;
    }
    if (delete_unreferenced_files(bs, st, &deleted) != 0)
        return -1;
    if (dropped || deleted)
        log_warn("block store reconciled: %" PRIu64 " blocks whose bytes were missing dropped, "
                 "%" PRIu64 " unreferenced data files deleted",
            dropped, deleted);
    bs->loop_store = st;
    store_set_put_hook(st, bs_puts_committed, bs);
    return 0;
}
