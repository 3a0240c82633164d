/* SPDX-License-Identifier: MIT */
/*
 * shm.c - the shared read region (shm.h): a memfd sealed against shrinking and growing, so
 * the daemon may map it without a client being able to make it fault, passed once per
 * connection with SCM_RIGHTS. A region is retired when the connection changes (a daemon
 * still writing into the old one never meets a new read) and freed with its last slot.
 *
 * Locking: shm_mu guards every pd_shm and region; it is a leaf, never held across a call
 * into conn.c (on_reply callbacks give slots back under conn.c's lock).
 */
#include "shm.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SHM_SLOTS (PD_SHM_SIZE / PD_SHM_SLOT)

struct pd_shm_region {
    unsigned refs; /* 1 while current, plus one per borrowed slot */
    int fd;        /* until attached */
    uint8_t *base;
    uint64_t busy; /* bit i: slot i borrowed */
};

struct pd_shm {
    struct pd_shm_region *cur; /* attached to connection `gen` */
    uint64_t gen;
    uint64_t declined_gen; /* the daemon declined on this connection (or no memfd here) */
    bool attaching;        /* a thread is attaching: others read in-frame meanwhile */
    bool disabled;         /* PEERDIST_NO_SHM was set at the instance's first large read */
};

static pthread_mutex_t shm_mu = PTHREAD_MUTEX_INITIALIZER;

static void shm_fork_prepare(void)
{
    pthread_mutex_lock(&shm_mu);
}

static void shm_fork_release(void)
{
    pthread_mutex_unlock(&shm_mu);
}

__attribute__((constructor)) static void shm_init(void)
{
    pthread_atfork(shm_fork_prepare, shm_fork_release, shm_fork_release);
}

/* shm_mu held; the last reference frees the region. */
static void region_unref(struct pd_shm_region *r)
{
    if (--r->refs > 0)
        return;
    munmap(r->base, PD_SHM_SIZE);
    free(r);
}

/* A new memfd region, sealed and mapped, attached to the connection; NULL if not. */
static struct pd_shm_region *region_attach(struct pdconn *conn, uint64_t generation)
{
    struct pd_shm_region *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->refs = 1;
    r->fd = memfd_create("peerdist-read", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    r->base = MAP_FAILED;
    if (r->fd < 0 || ftruncate(r->fd, PD_SHM_SIZE) != 0 ||
        fcntl(r->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
        goto fail;
    r->base = mmap(NULL, PD_SHM_SIZE, PROT_READ, MAP_SHARED, r->fd, 0);
    if (r->base == MAP_FAILED)
        goto fail;
    Peerdist__ShmAttachRequest sa = PEERDIST__SHM_ATTACH_REQUEST__INIT;
    sa.size = PD_SHM_SIZE;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_SHM_ATTACH;
    req.shm_attach = &sa;
    if (pdconn_call_fd(conn, generation, &req, r->fd, NULL) == ERROR_SUCCESS) {
        close(r->fd); /* the mappings (ours, the daemon's) keep the memory */
        r->fd = -1;
        return r;
    }
fail:
    if (r->base != MAP_FAILED)
        munmap(r->base, PD_SHM_SIZE);
    if (r->fd >= 0)
        close(r->fd);
    free(r);
    return NULL;
}

bool pd_shm_get(struct pd_shm **sp, struct pdconn *conn, uint64_t generation, size_t len,
    struct pd_shm_slot *slot, uint64_t *offset)
{
    slot->reg = NULL;
    if (len < PD_SHM_MIN_READ || len > PD_SHM_SLOT)
        return false;
    pthread_mutex_lock(&shm_mu);
    struct pd_shm *s = *sp;
    if (!s) {
        if ((s = *sp = calloc(1, sizeof(*s))) == NULL)
            goto none;
        s->disabled = getenv("PEERDIST_NO_SHM") != NULL;
    }
    if (s->disabled)
        goto none;
    if (s->cur && generation < s->gen)
        goto none; /* a handle of an older connection: its request is not sent anyway */
    if (s->cur && s->gen != generation) {
        region_unref(s->cur); /* an older connection's: freed with its last slot */
        s->cur = NULL;
    }
    if (!s->cur) {
        if (s->attaching || s->declined_gen == generation)
            goto none;
        s->attaching = true;
        pthread_mutex_unlock(&shm_mu);
        struct pd_shm_region *r = region_attach(conn, generation);
        pthread_mutex_lock(&shm_mu);
        s->attaching = false;
        if (!r) {
            s->declined_gen = generation;
            goto none;
        }
        if (s->cur)
            region_unref(s->cur);
        s->cur = r;
        s->gen = generation;
    }
    for (unsigned i = 0; i < SHM_SLOTS; i++) {
        if (s->cur->busy & (1ull << i))
            continue;
        /* The lowest free slot: a reader with few reads in flight touches few pages. */
        s->cur->busy |= 1ull << i;
        s->cur->refs++;
        slot->reg = s->cur;
        slot->index = i;
        *offset = (uint64_t)i * PD_SHM_SLOT;
        pthread_mutex_unlock(&shm_mu);
        return true;
    }
none:
    pthread_mutex_unlock(&shm_mu);
    return false;
}

const uint8_t *pd_shm_data(const struct pd_shm_slot *slot)
{
    return slot->reg->base + (size_t)slot->index * PD_SHM_SLOT;
}

void pd_shm_put(struct pd_shm_slot *slot)
{
    if (!slot->reg)
        return;
    pthread_mutex_lock(&shm_mu);
    slot->reg->busy &= ~(1ull << slot->index);
    region_unref(slot->reg);
    pthread_mutex_unlock(&shm_mu);
    slot->reg = NULL;
}

void pd_shm_free(struct pd_shm *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&shm_mu);
    if (s->cur)
        region_unref(s->cur);
    pthread_mutex_unlock(&shm_mu);
    free(s);
}
