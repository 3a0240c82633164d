/* SPDX-License-Identifier: MIT */
/*
 * content-internal.h - what the files of the content module share: content handles
 * (content.c), content information and trust (content-info.c), AddData intake and
 * verification (content-add.c), the write/sync/commit pipeline (content-commit.c), and reads
 * (content-read.c). Everything here runs on the loop thread except op_work, group_sync_work
 * and read_work, which run on workers and touch only their op's units (or read's pieces), the
 * handle's content information (read-only once complete) and the block store's files.
 */
#ifndef PEERDIST_CONTENT_INTERNAL_H
#define PEERDIST_CONTENT_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <peerdist.h>

#include "content.h"
#include "contentinfo.h"
#include "daemon.h"
#include "flush.h"

/* Bytes of incomplete blocks (V1) or segments (V2) held per handle (DESIGN.md, Bad bytes). */
#define CONTENT_HELD_MAX (64u * 1024 * 1024)
/* Content information accepted per handle (about 127 GiB of V1 content). */
#define CONTENT_INFO_MAX CI_STREAM_DEFAULT_MAX
/*
 * Memory one connection may make the daemon hold across all its handles: content
 * information fed plus bytes of incomplete blocks. Without it, 4096 handles of
 * 64 MiB each would let one client take 256 GiB. The same bytes count against the
 * daemon-wide memory budget too (budget.h), which bounds a uid's connections together.
 */
#define CONTENT_CONN_MEMORY_MAX (256u * 1024 * 1024)
/*
 * Reads of one connection waiting for a worker (a first read's check) or for the stream read
 * ahead of them. A waiting read has no reply in the output buffer yet, so the output limit
 * does not slow its sender: past this, reads are refused with ERROR_NOT_ENOUGH_MEMORY.
 */
#define CONTENT_CONN_READS_MAX 256
/* Room past a fetched block's bytes in its op's buffer: a block cipher's last block, so the
 * peer's message decrypts straight into it (op.fill). */
#define CONTENT_FILL_SLACK 32
/* V1 blocks per segment: the most one segment's slot table holds. */
#define CONTENT_SLOTS_MAX CI_V1_BLOCKS_PER_SEGMENT

struct content_handle;
#define SLOT_NONE INT64_MIN /* no readable bytes for this block */

/* Reads' slot map (content-read.c): per block of one segment, the file holding bytes this handle may read, or SLOT_NONE. */
struct slots {
    const struct ci_info *ci;
    const struct ci_segment *seg;
    struct blockstore *bs;
    uint32_t uid;
    size_t seg_index; /* which segment is loaded; SIZE_MAX none */
    /* Rows were only added since the segment was loaded: a block it lacks may be there now
     * (slot_get loads the segment again before calling it missing). */
    bool maybe_more;
    int64_t file[CONTENT_SLOTS_MAX];
};

struct read_op;

struct content_daemon {
    struct daemon *d;
    /*
     * Group sync: AddData ops whose bytes are written wait here; one job on a syncer
     * thread fdatasyncs every file the waiting ops wrote (once per file), then their
     * metadata commits and they reply. Many 1 MiB AddData calls share one
     * fdatasync per file instead of paying one each.
     */
    struct op *sync_head, **sync_tail;
    /*
     * Batches handed to the syncer, in the order they were (each by its first op, linked by
     * batch_next): up to SYNCS_IN_FLIGHT sync at once, and they commit in this order, a
     * batch whose sync ended early waiting for those before it.
     */
    struct op *batches, **batches_tail;
    unsigned nsyncing; /* batches whose sync has not ended */
    /*
     * Writes deferred while the flush write gate is closed (flush.h): synced AddData ops
     * waiting to commit, and Completes waiting to promote and reply. gate_waiter runs them.
     */
    struct op *commit_wait, **commit_wait_tail;
    LIST_HEAD(, content_handle) complete_wait;
    struct flush_waiter gate_waiter;
    /* Rows of blocks found bad on a read leave the index once the gate opens (content-read.c). */
    struct flush_waiter drop_waiter;
    struct add_timing timing; /* AddData's stages (content_add_timing) */
};

/* Bytes of one incomplete block, held until the rest arrives. */
struct held {
    size_t seg;
    uint32_t block, len, filled;
    uint8_t *buf, *have; /* have: one bit per byte */
    struct held *next;
};

/* One complete block on its way through the worker. */
struct unit {
    size_t seg;
    uint32_t block, len;
    const uint8_t *data;
    uint8_t *own; /* data came from held bytes */
    int64_t owner;
    enum { UNIT_OK, UNIT_BAD_HASH, UNIT_IO } result;
    int err;
    bool synced; /* its file was fdatasync'ed by a group sync */
};

/*
 * A pending AddData. Reads waiting for a worker embed one too (content-read.c), using only
 * request_id, h, c, cd, aborted and link: on the handle's ops, Close and Cancel answer them.
 */
struct op {
    uint64_t request_id;
    uint64_t offset; /* content offset of data[0], for log lines */
    struct content_handle *h;
    struct conn *c;
    struct content_daemon *cd;
    atomic_bool aborted; /* answered with ERROR_OPERATION_ABORTED; commit nothing */
    uint8_t *data;
    size_t len;     /* bytes of the call: what the reply counts */
    size_t charged; /* bytes of the memory budget the op holds (its copy of the data) */
    struct unit *units;
    size_t nunits;
    struct op *sync_next;  /* on the group-sync list or batch */
    struct op *batch_next; /* a batch's first op: the next batch (content_daemon.batches) */
    bool batch_synced;     /* a batch's first op: its sync has ended */
    /* Bytes fetched from a peer (content_add_fetched): no reply, this instead; never aborted
     * by Cancel, committed unless the handle closed. */
    void (*done)(void *arg, uint32_t status);
    void *done_arg;
    /* Fetched bytes still sealed: fill writes the op's len plaintext bytes to data (which
     * has CONTENT_FILL_SLACK bytes of room past them, for a cipher's padding) on the
     * worker, before they are verified; nonzero fails every unit (as a bad hash). */
    int (*fill)(void *arg, uint8_t *out, size_t len);
    void *fill_arg;
    LIST_ENTRY(op) link;
    /* When (daemon_mono_ms) each stage began: set by the loop, the worker and the syncer in
     * turn, each before handing the op on; read by the loop once it is answered. */
    double began_ms[ADD_STAGES];
};

struct content_handle {
    uint64_t id;
    uint8_t tag[STORE_TAG_SIZE];
    unsigned refs; /* the connection's list, plus each op */
    bool closed;
    struct ci_stream *stream;
    struct ci_info *ci;        /* set at Complete; read-only afterwards (workers read it) */
    bool *bound;               /* per segment: hashes bound to the segment ID (shareable) */
    uint64_t read_lo, read_hi; /* the range reads serve: [S, S+L) */
    uint64_t add_lo, add_hi;   /* the blocks the content information lists, whole */
    uint64_t cursor;
    struct held *held;
    size_t held_bytes;
    size_t ci_bytes; /* content information fed (counted in content_conn.memory) */
    LIST_HEAD(, op) ops;
    struct slots *slots;  /* reads' cached slot map of one segment (content-read.c) */
    uint64_t slots_gen;   /* d->blocks_gen it was loaded at */
    uint64_t slots_added; /* d->blocks_added it was loaded at */
    /* The segment a read last marked used, and when (evict_touch: once a second at most). */
    size_t touched_seg;
    int64_t touched_at;
    /*
     * Stream reads run one at a time, so each starts at the cursor the one before it left:
     * while one waits for a worker (stream_busy), later ones wait here in request order.
     */
    bool stream_busy;
    struct read_op *stream_wait, **stream_wait_tail;
    uint64_t complete_id; /* a Complete waiting for the write gate (complete_wait) */
    struct conn *complete_conn;
    LIST_ENTRY(content_handle) wait_link;
    LIST_ENTRY(content_handle) link;
};

struct content_conn {
    uint64_t next_handle;
    unsigned nhandles;
    /* content information fed + held bytes, all handles (CONTENT_CONN_MEMORY_MAX), also
     * counted against the memory budget: taken in content-info.c and content-add.c, given
     * back there and by content_memory_give */
    size_t memory;
    unsigned reads_waiting; /* CONTENT_CONN_READS_MAX (content-read.c) */
    bool reads_refused;     /* logged once */
    LIST_HEAD(, content_handle) handles;
};

/* Position of content offset off: segment, block, and where the block lies. */
struct pos {
    size_t seg;
    uint32_t block;
    uint64_t start; /* content offset of the block */
    uint32_t len;
};

/*
 * The parts call downwards only (no cycle): content.c -> content-info.c, content-add.c,
 * content-read.c; content-add.c -> content-commit.c -> content-info.c; all -> content-handle.c.
 */

/* content-handle.c */
struct content_handle *content_find_handle(struct conn *c, uint64_t id);
/* The checks AddData and reads share (disabled mode, unknown handle, content information not
 * complete): the handle, or NULL with request id answered. */
struct content_handle *content_usable_handle(struct conn *c, uint64_t id, uint64_t handle);
void content_handle_unref(struct content_handle *h);
void content_held_free(struct held *hb);
void content_held_free_all(struct content_handle *h);
/* The hash the handle's content information lists for (seg, block); NULL if none. */
const uint8_t *content_listed_hash(const struct ci_info *ci, const struct ci_segment *seg,
    uint32_t block);
void content_pos_at(const struct ci_info *ci, uint64_t off, struct pos *p);

/* content-info.c: AddContentInformation, Complete (validation, promotion) */
void content_add_info(struct conn *c, uint64_t id, const Peerdist__AddContentInfoRequest *a);
void content_complete_info(struct conn *c, uint64_t id,
    const Peerdist__CompleteContentInfoRequest *a);
/* The gate opened: Completes deferred meanwhile promote and reply. */
void content_info_resume(struct content_daemon *cd);
/* n bytes of c's content memory (cc->memory) released: given back to the memory budget. */
void content_memory_give(struct conn *c, size_t n);

/* content-add.c: AddData intake and verification */
void content_add_data(struct conn *c, uint64_t id, const Peerdist__AddDataRequest *a);
/*
 * One whole block [off, off + len) fetched from a peer for h, stored exactly as h's AddData
 * would store it (verified against h's hash, the handle's tag, owner by the same rule,
 * eviction). Its bytes come from fill(fill_arg, out, len) on a worker (the peer's message is
 * decrypted there, off the loop); a fill that fails, or bytes failing their hash, are not
 * stored and done gets ERROR_INVALID_DATA. done(arg, status) runs on the loop once the block
 * is committed or failed (not if the handle closed first: then with
 * ERROR_OPERATION_ABORTED); fill_arg is the caller's to free there. 0, or -1 if refused now
 * (logged; done will not run).
 */
int content_add_fetched(struct conn *c, struct content_handle *h, uint64_t off, size_t len,
    int (*fill)(void *arg, uint8_t *out, size_t len), void *fill_arg,
    void (*done)(void *arg, uint32_t status), void *arg);

/* content-commit.c: write, group sync, commit, reply */
/* Worker done of an op whose bytes are written: it joins the next group sync. */
void content_op_written(void *arg);
void content_op_free(struct op *op);
/* A failed write or sync of a file fails every block of the op written to it. */
void content_mark_file_errors(struct op *op);
/* The write gate's waiter (flush.h): deferred commits, then deferred Completes. */
void content_gate_opened(struct flush_waiter *w);

/*
 * content-handle.c: op's blocks were committed (d->blocks_gen and d->blocks_added bumped once
 * for the commit, from gen_before): the handle's slot map, if it was current, takes the new
 * rows without a query. Only for a commit whose ops are all this handle's, each in turn.
 */
void content_slots_added(struct daemon *d, const struct op *op, uint64_t gen_before);

/* content-read.c */
void content_read(struct conn *c, uint64_t id, const Peerdist__ReadRequest *rq);

#endif
