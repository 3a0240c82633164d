/* SPDX-License-Identifier: MIT */
/*
 * peer.h - distributed mode (peerdistd.conf(5), mode = distributed): the three parts and what
 * they ask of each other.
 *   discovery.c   MS-PCCRD: WS-Discovery Probes and ProbeMatches over UDP multicast; answers
 *                 Probes for what peer-serve.c can serve; sends Probes for peer-fetch.c.
 *   peer-serve.c  MS-PCCRR server: HTTP POST on peer_port (libevent evhttp), blocks AES-CBC
 *                 encrypted with the segment's key; which segments can be served.
 *   peer-fetch.c  a read that misses locally: Probes, then GETBLKS from the peers that
 *                 answered, every block verified against the reader's hash before it is
 *                 stored (as AddData would) and returned.
 * Each *_init does nothing (and returns 0) unless the mode is distributed. Everything here
 * runs on the event loop unless a function says otherwise.
 */
#ifndef PEERDIST_DAEMON_PEER_H
#define PEERDIST_DAEMON_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

struct daemon;

/* A segment ID (HoHoDk): 32 bytes for V1, 32 (SHA-512 truncated) for V2. */
#define PEER_ID_MAX 64
/* Blocks of one V1 segment at most (32 MiB of 64 KiB blocks); a V2 segment is block 0. */
#define PEER_SEGMENT_BLOCKS_MAX 512
/*
 * Bytes one read or write on an MS-PCCRR connection moves at most (both ends). libevent's
 * default of 16 KiB, in practice 4 KiB reads, cost a 64 KiB block about 17 reads and 17
 * FIONREAD ioctls on the fetching side and 5 writes on the serving side.
 */
#define PEER_HTTP_IO_MAX (256 * 1024)

/* ---- peer-serve.c ---- */

int peer_serve_init(struct daemon *d);
void peer_serve_free(struct daemon *d);

/* What this daemon can serve of one segment (bound to its ID, secret held: DESIGN.md). */
struct peer_segment_info {
    int version;           /* 1 or 2: the content information version the segment comes from */
    uint32_t blocks_held;  /* blocks this daemon can serve (V1 BlockCount) */
    uint32_t total_blocks; /* blocks of the segment (bitmap bits that count) */
    uint8_t bitmap[PEER_SEGMENT_BLOCKS_MAX / 8]; /* bit i (LSB first) = block i held */
};
/* true and *out filled if the segment has at least one block this daemon serves. Fast:
 * called for every segment ID of every Probe. */
bool peer_serve_segment(struct daemon *d, const uint8_t *id, size_t id_len,
    struct peer_segment_info *out);
/* Bytes of blocks served to peers since start (plaintext block bytes; CacheInfo's
 * peer_served_bytes). */
uint64_t peer_serve_served_bytes(struct daemon *d);
/* One peer this daemon served (or answered), for the Peers reply. */
struct peer_served {
    struct sockaddr_storage addr; /* the peer's address, port 0 */
    socklen_t addr_len;
    uint64_t bytes;    /* block bytes served to it since start */
    uint64_t requests; /* PCCRR requests it sent since start */
    unsigned active;   /* its requests being answered now */
    time_t last_seen;  /* its last request (wall clock) */
};
/* Up to max peers, most recently new first; how many were written. */
size_t peer_serve_peers(struct daemon *d, struct peer_served *out, size_t max);
/*
 * The same total as peer_serve_served_bytes, as a macro over the head of d->serve, not a call:
 * for evict.c's CacheInfo, which may not call peer-serve.c (peer-serve.c drops bad blocks'
 * rows through flush.c's gate, and flush.c runs eviction passes). Needs daemon.h.
 */
struct peer_serve_counts {
    uint64_t served_bytes;
};
#define PEER_SERVE_BYTES(d) \
    ((d)->serve ? ((const struct peer_serve_counts *)(d)->serve)->served_bytes : 0)

/* ---- discovery.c ---- */

int discovery_init(struct daemon *d);
void discovery_free(struct daemon *d);

/* One ProbeMatch: a peer that holds blocks of a segment. */
struct discovery_match {
    struct sockaddr_storage peer; /* where to POST: the ProbeMatch's source address with the
                                     port of its XAddrs (never another host than the source) */
    socklen_t peer_len;
    uint8_t segment_id[PEER_ID_MAX];
    size_t segment_id_len;
    int version;           /* form of the ProbeMatch: 1 or 2 */
    uint32_t block_count;  /* V1 BlockCount */
    const uint8_t *bitmap; /* V2 availability bitmap, or NULL; valid during the callback only */
    size_t bitmap_len;
};
typedef void (*discovery_match_fn)(void *arg, const struct discovery_match *m);
/* The discovery window closed: no more matches for this probe. */
typedef void (*discovery_done_fn)(void *arg);

struct discovery_probe;
/*
 * Sends Probes (V1 or V2 form) for n segment IDs on every interface in use, then reports
 * ProbeMatches as they come until window_ms has passed, then done (once; never from inside
 * this call). NULL if nothing can be sent (not distributed, no interface): the caller treats
 * the segments as held by nobody.
 */
struct discovery_probe *discovery_probe_start(struct daemon *d, int version,
    const uint8_t *const *ids, const size_t *id_lens, size_t n, unsigned window_ms,
    discovery_match_fn on_match, discovery_done_fn on_done, void *arg);
/* Stops reporting; neither callback runs after this. */
void discovery_probe_cancel(struct discovery_probe *p);
/* A host that sent Probes (the most recent DISCO_PEERS_TRACKED of them, discovery.c). */
struct discovery_prober_info {
    struct sockaddr_storage addr; /* port 0 */
    uint64_t probes;              /* Probes heard from it since it was first tracked */
    int64_t last_seen;            /* its last Probe (wall clock, Unix seconds) */
};
/* Up to max probers; how many were written. */
size_t discovery_probers(struct daemon *d, struct discovery_prober_info *out, size_t max);
/* Distinct peers that probed for this segment ID in the last `seconds` (fFlashCrowd). */
unsigned discovery_recent_probers(struct daemon *d, const uint8_t *id, size_t id_len,
    unsigned seconds);
/*
 * What discovery.c puts in a discovery_match. V1 form: block_count is the peer's BlockCount
 * (never 0: those are no match), bitmap NULL. V2 form: bitmap is one byte holding this
 * segment's bit pair from the ProbeMatch (0x80: the peer has it, always set; 0x40: it has all
 * of it), bitmap_len 1, block_count 1 when it has all of it, else 0. A match is reported once
 * per (peer address and port, segment) per probe, only from the receiving interface's subnet.
 */

/* ---- peer-fetch.c ---- */

int peer_fetch_init(struct daemon *d);
void peer_fetch_free(struct daemon *d);

/*
 * Verified block bytes fetched from peers since start (CacheInfoReply.peer_fetched_bytes).
 * A macro over the head of d->fetch, not a call: evict.c reads it, and a call from evict.c
 * into peer-fetch.c would close a cycle (peer-fetch.c stores through content-add.c, whose
 * commit tells evict.c what it added). Needs daemon.h.
 */
struct peer_fetch_counts {
    uint64_t fetched_bytes;
    uint64_t served_bytes; /* peer_serve_served_bytes, copied by peer_fetch_counts_refresh */
};
#define PEER_FETCH_BYTES(d) \
    ((d)->fetch ? ((const struct peer_fetch_counts *)(d)->fetch)->fetched_bytes : 0)
/* CacheInfoReply.peer_served_bytes as of the last peer_fetch_counts_refresh (same reason). */
#define PEER_SERVED_BYTES(d) \
    ((d)->fetch ? ((const struct peer_fetch_counts *)(d)->fetch)->served_bytes : 0)
/* Copies the served-bytes counter where PEER_SERVED_BYTES reads it (dispatch.c, before
 * CacheInfo). */
void peer_fetch_counts_refresh(struct daemon *d);

#endif
