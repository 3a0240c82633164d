/* SPDX-License-Identifier: MIT */
/*
 * handles.h - the library's HANDLE table. Every HANDLE the library gives out
 * (ports, events, instances, content handles) is an opaque number looked up
 * here, never a pointer, so a stale or forged handle gets ERROR_INVALID_HANDLE
 * instead of a crash. Objects are reference counted: a lookup takes a
 * reference, hobj_put drops it, the last put destroys the object.
 */
#ifndef PEERDIST_HANDLES_H
#define PEERDIST_HANDLES_H

#include <peerdist.h>
#include <stdatomic.h>

enum handle_type {
    HT_PORT = 1 << 0,
    HT_EVENT = 1 << 1,
    HT_INSTANCE = 1 << 2,
    HT_CONTENT = 1 << 3,
    HT_STREAM = 1 << 4,
    HT_CONTENTINFO = 1 << 5,
};

struct hobj {
    atomic_int refs;
    enum handle_type type;
    void (*destroy)(struct hobj *obj);
};

/* Sets up refs = 1 (the table's reference once inserted). */
void hobj_init(struct hobj *obj, enum handle_type type, void (*destroy)(struct hobj *));
void hobj_get(struct hobj *obj);
void hobj_put(struct hobj *obj);

/* Returns the new handle, or NULL when out of memory (the object is untouched). */
HANDLE handle_insert(struct hobj *obj);
/* A referenced object if h is live and of one of the types in mask, else NULL. */
struct hobj *handle_lookup(HANDLE h, unsigned mask);
/* Takes h out of the table; the table's reference passes to the caller. */
struct hobj *handle_remove(HANDLE h, unsigned mask);

/*
 * fork(): every handle the child inherits is forgotten there (ERROR_INVALID_HANDLE, and
 * its value is never given out again), since the threads and locks behind it stayed in
 * the parent. The objects are left as they are (the parent's), except that
 * handle_on_fork(type, fn) has fn(obj) run for each inherited object of that type, in the
 * child, single-threaded, before anything else: to close the child's copies of its file
 * descriptors (async-signal-safe calls only, no locks).
 */
void handle_on_fork(enum handle_type type, void (*fn)(struct hobj *obj));

#endif
