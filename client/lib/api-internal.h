/* SPDX-License-Identifier: MIT */
/*
 * api-internal.h - what the API files (api.c, api-client.c, api-content.c,
 * api-server.c) share: the instance and content-handle objects and the checks
 * every data-path call makes before talking to the daemon.
 */
#ifndef PEERDIST_API_INTERNAL_H
#define PEERDIST_API_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <peerdist.h>

#include "conn.h"
#include "handles.h"
#include "win32.h"

/*
 * A child handle: a content, stream or content-information handle. Embed it
 * first in the handle's own struct. It belongs to one instance; used with
 * another it is ERROR_INVALID_HANDLE, and PeerDistShutdown closes it.
 */
struct child {
    struct hobj h;
    uint64_t inst_serial; /* its instance's serial: an instance is known by it, never by address */
    HANDLE handle;
    uint64_t daemon_id;  /* the daemon's number for it, scoped to the connection */
    uint64_t generation; /* the connection it was opened on (pdconn_ensure) */
    HANDLE port;         /* where its operations complete */
    ULONG_PTR key;
    void (*on_close)(struct child *ch); /* optional: abort its pending work */
    LIST_ENTRY(child) link;
};

struct instance {
    struct hobj h;
    uint64_t serial; /* unique in the process: a later instance at the same address differs */
    struct pdconn *conn;
    pthread_mutex_t mu; /* guards children and shut */
    bool shut;          /* PeerDistShutdown began: no child may be added any more */
    LIST_HEAD(, child) children;
    struct pd_shm *shm; /* shm.c: the shared read region, made on the first large read */
};

struct content {
    struct child ch;
    PEERDIST_CONTENT_TAG tag;
};

/* A referenced instance, or NULL for an unknown or shut-down handle. */
struct instance *instance_get(HANDLE h);
void instance_put(struct instance *inst);

/*
 * Connected and enabled: ERROR_SUCCESS (and the connection generation), else
 * the synchronous error: PEERDIST_ERROR_SERVICE_UNAVAILABLE or
 * ERROR_ACCESS_DISABLED_BY_POLICY (DESIGN.md, Which failures are synchronous).
 */
DWORD pd_service_ready(struct instance *inst, uint64_t *generation);

/*
 * pd_service_ready, then a synchronous round trip whose reply must carry the body
 * `expect` (a Peerdist__Reply__BodyCase). ERROR_SUCCESS with *reply (the
 * caller's to free) and the connection generation, else the error.
 */
DWORD pd_call_expecting(struct instance *inst, Peerdist__Request *req, int expect,
    Peerdist__Reply **reply, uint64_t *generation);

/*
 * Gives ch a HANDLE and lists it under inst; ch->h must be initialised with hobj_init.
 * ERROR_SUCCESS with the handle in *out (from then on ch is the table's: a concurrent
 * Shutdown may free it), else ch is untouched and the caller's to free:
 * ERROR_INVALID_HANDLE when inst is being shut down, or ERROR_NOT_ENOUGH_MEMORY.
 */
DWORD child_register(struct instance *inst, struct child *ch, HANDLE *out);
/* A referenced child of inst with handle h and one of the types in mask, else NULL. */
struct child *child_get(struct instance *inst, HANDLE h, unsigned mask);
/* Unlists and unregisters; the caller gets the table's reference (NULL if not inst's). */
struct child *child_remove(struct instance *inst, HANDLE h, unsigned mask);

#endif
