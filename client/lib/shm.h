/* SPDX-License-Identifier: MIT */
/*
 * shm.h - the shared read region of an instance's connection: a sealed memfd the library
 * hands to peerdistd once per connection (ShmAttachRequest), cut into slots that reads in
 * flight borrow; the daemon writes a read's verified bytes into its slot (proto/README.md).
 */
#ifndef PEERDIST_SHM_H
#define PEERDIST_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

/* Region size and slot size: one slot holds one read's reply (PD_MAX_CHUNK). */
#define PD_SHM_SIZE (8u * 1024 * 1024)
#define PD_SHM_SLOT PD_MAX_CHUNK
/* Reads asking for fewer bytes go in the reply frame: the region saves nothing there. */
#define PD_SHM_MIN_READ (64u * 1024)

struct pd_shm;
struct pd_shm_region;

/* A slot borrowed by one read until its reply has been copied out. */
struct pd_shm_slot {
    struct pd_shm_region *reg; /* NULL: none */
    unsigned index;
};

/*
 * A free slot of the region attached to connection `generation` of conn, for a read of len
 * bytes; *sp is the instance's state, created on first use. The first call on a connection
 * creates the memfd and attaches it (a synchronous call). True with *slot and *offset (where
 * the daemon is to put the bytes); false: read in the reply frame (small read, every slot
 * busy, or the daemon declined the region on this connection: an older daemon answers 120).
 */
bool pd_shm_get(struct pd_shm **sp, struct pdconn *conn, uint64_t generation, size_t len,
    struct pd_shm_slot *slot, uint64_t *offset);
/* The slot's bytes (PD_SHM_SLOT of them). */
const uint8_t *pd_shm_data(const struct pd_shm_slot *slot);
/* Gives the slot back (none: nothing). */
void pd_shm_put(struct pd_shm_slot *slot);
/* The instance is gone: the region goes once no slot of it is borrowed. */
void pd_shm_free(struct pd_shm *s);

#endif
