/* SPDX-License-Identifier: MIT */
/*
 * handles.c - HANDLE values encode a slot index and the slot's serial number,
 * so a closed handle is never mistaken for a later one in the same slot.
 * Values are multiples of 4 (the low bits stay free, as Windows keeps them:
 * OVERLAPPED.hEvent's low bit means "do not post to the port").
 */
#include "handles.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define TYPE_BITS 6 /* enum handle_type's bits */

#define SLOT_BITS 24
#define SLOT_MAX ((1u << SLOT_BITS) - 1)

struct slot {
    uint32_t serial;
    uint32_t next_free; /* index + 1 of the next free slot, 0 = none */
    struct hobj *obj;
};

static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static struct slot *slots;
static uint32_t nslots, free_head;
static void (*fork_hooks[TYPE_BITS])(struct hobj *obj); /* set at load, then only read */

void hobj_init(struct hobj *obj, enum handle_type type, void (*destroy)(struct hobj *))
{
    atomic_init(&obj->refs, 1);
    obj->type = type;
    obj->destroy = destroy;
}

void hobj_get(struct hobj *obj)
{
    atomic_fetch_add_explicit(&obj->refs, 1, memory_order_relaxed);
}

void hobj_put(struct hobj *obj)
{
    if (atomic_fetch_sub_explicit(&obj->refs, 1, memory_order_acq_rel) == 1)
        obj->destroy(obj);
}

static HANDLE encode(uint32_t index, uint32_t serial)
{
    return (HANDLE)(uintptr_t)((((uint64_t)serial << SLOT_BITS) | (index + 1)) << 2);
}

static struct slot *decode(HANDLE h)
{
    uint64_t v = (uint64_t)(uintptr_t)h;
    if (v & 3)
        return NULL;
    v >>= 2;
    uint32_t index = (uint32_t)(v & SLOT_MAX);
    if (index == 0 || index > nslots)
        return NULL;
    struct slot *s = &slots[index - 1];
    return s->obj && s->serial == (uint32_t)(v >> SLOT_BITS) ? s : NULL;
}

HANDLE handle_insert(struct hobj *obj)
{
    pthread_mutex_lock(&table_mu);
    if (!free_head) {
        uint32_t n = nslots ? nslots * 2 : 64;
        struct slot *grown = n <= SLOT_MAX ? realloc(slots, n * sizeof(*slots)) : NULL;
        if (!grown) {
            pthread_mutex_unlock(&table_mu);
            return NULL;
        }
        slots = grown;
        for (uint32_t i = n; i > nslots; i--) {
            slots[i - 1] = (struct slot){.serial = 0, .next_free = free_head, .obj = NULL};
            free_head = i;
        }
        nslots = n;
    }
    uint32_t index = free_head - 1;
    struct slot *s = &slots[index];
    free_head = s->next_free;
    s->serial = (s->serial + 1) & 0x3FFFFFFF; /* keeps the value below 2^56 */
    if (s->serial == 0)
        s->serial = 1;
    s->obj = obj;
    HANDLE h = encode(index, s->serial);
    pthread_mutex_unlock(&table_mu);
    return h;
}

struct hobj *handle_lookup(HANDLE h, unsigned mask)
{
    pthread_mutex_lock(&table_mu);
    struct slot *s = decode(h);
    struct hobj *obj = s && (s->obj->type & mask) ? s->obj : NULL;
    if (obj)
        hobj_get(obj);
    pthread_mutex_unlock(&table_mu);
    return obj;
}

struct hobj *handle_remove(HANDLE h, unsigned mask)
{
    pthread_mutex_lock(&table_mu);
    struct slot *s = decode(h);
    struct hobj *obj = s && (s->obj->type & mask) ? s->obj : NULL;
    if (obj) {
        s->obj = NULL;
        s->next_free = free_head;
        free_head = (uint32_t)(s - slots) + 1;
    }
    pthread_mutex_unlock(&table_mu);
    return obj;
}

void handle_on_fork(enum handle_type type, void (*fn)(struct hobj *obj))
{
    for (unsigned i = 0; i < TYPE_BITS; i++)
        if (type == 1u << i)
            fork_hooks[i] = fn;
}

/* The table is consistent at the fork: no thread is half-way through changing it. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&table_mu);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&table_mu);
}

/*
 * In the child: every slot in use becomes free with its serial kept, so the next handle
 * given out there has a new serial and no inherited value ever names a child's object.
 */
static void fork_child(void)
{
    for (uint32_t i = nslots; i > 0; i--) {
        struct slot *s = &slots[i - 1];
        if (!s->obj)
            continue;
        for (unsigned b = 0; b < TYPE_BITS; b++)
            if (s->obj->type == 1u << b && fork_hooks[b])
                fork_hooks[b](s->obj);
        s->obj = NULL; /* the parent's object: never destroyed here */
        s->next_free = free_head;
        free_head = i;
    }
    pthread_mutex_unlock(&table_mu); /* this thread took it in fork_prepare */
}

__attribute__((constructor)) static void handles_init(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}
