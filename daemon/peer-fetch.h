/* SPDX-License-Identifier: MIT */
/*
 * peer-fetch.h - what the content module asks of the fetcher (peer-fetch.c) and what the
 * fetcher asks back through callbacks: a read that misses locally waits on a fetch of the
 * segment holding its offset; the fetch wakes it each time a verified block is stored and
 * once more when it ends. Everything here runs on the loop.
 */
#ifndef PEERDIST_DAEMON_PEER_FETCH_H
#define PEERDIST_DAEMON_PEER_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct conn;
struct content_handle;
struct fetch;

/* How long the Probes' answers are gathered before a segment counts as held by nobody. */
#define PEER_FETCH_DISCOVERY_MS 500
/* Segments one Probe asks for: the read's and the ones after it (their fetches then start
 * from the answers kept, without probing). */
#define PEER_FETCH_PROBE_SEGMENTS 16
/* How long a ProbeMatch is used for later fetches of its segment, and how many are kept. */
#define PEER_FETCH_MATCH_SECONDS 10
#define PEER_FETCH_MATCHES_MAX 1024
/* The request timer of MS-PCCRR. A request unanswered this long is sent again; a peer is
 * distrusted when a request sent after that goes unanswered too (peer-fetch.c, no_answer). */
#define PEER_FETCH_REQUEST_SECONDS 2
/* Connections to one peer, each with one request in flight (HTTP/1.1 without pipelining). */
#define PEER_FETCH_CONNS_PER_PEER 8
/* Peers one fetch uses at once. */
#define PEER_FETCH_PEERS_MAX 8
/*
 * Test hook: "ip:port[,ip:port...]" (IPv4) in this variable makes every fetch take those
 * peers as if they had answered its Probes (no Probe is sent), then close the discovery
 * window; everything after (local-subnet check, distrust, verification) is as for peers that
 * answered. For tests without multicast (tests/test_peer_fetch.c).
 */
#define PEER_FETCH_TEST_PEERS_ENV "PEERDIST_TEST_PEERS"
/* A peer that sent a block failing its hash, a malformed message or nothing in time twice. */
#define PEER_FETCH_DISTRUST_SECONDS 60

enum peer_fetch_event {
    PEER_FETCH_PROGRESS, /* a verified block of the segment was stored */
    PEER_FETCH_ENDED,    /* the fetch is over (all fetched, no peer has the rest, or closed) */
};

/* A read waiting on a fetch (embedded in the read; content-read.c). */
struct peer_fetch_wait {
    void (*fn)(struct peer_fetch_wait *w, enum peer_fetch_event ev);
    struct fetch *f; /* NULL once detached */
    LIST_ENTRY(peer_fetch_wait) link;
};

/* True if reads of this daemon may fetch from peers (mode = distributed). */
bool peer_fetch_enabled(const struct conn *c);
/*
 * Waits w on the fetch of segment seg of h's content information, starting one (Probes
 * first) if none runs: it fetches the blocks missing[b] says are missing, from block `from`
 * to the end of the segment (read-ahead), storing each verified block as h's AddData would.
 * -1 if no fetch can run (nothing to probe with, out of memory): the bytes are held by nobody.
 */
int peer_fetch_wait(struct conn *c, struct content_handle *h, size_t seg, uint32_t from,
    const bool *missing, uint32_t nblocks, struct peer_fetch_wait *w);
/* The read stops waiting (answered, timed out, aborted); the fetch runs on. */
void peer_fetch_detach(struct peer_fetch_wait *w);
/* The handle closes: its fetches stop, their waiters get PEER_FETCH_ENDED. */
void peer_fetch_handle_closed(struct conn *c, struct content_handle *h);
/* fFlashCrowd for h's content (docs/peerdist.3.md): more than 3 distinct peers probed for
 * its segments in the last 10 s. */
bool peer_fetch_flash_crowd(struct conn *c, const struct content_handle *h);
/* PeersRequest (admins only; others ERROR_ACCESS_DENIED): recent peers and their counters. */
void peer_fetch_peers(struct conn *c, uint64_t id);

#endif
