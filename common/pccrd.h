/* SPDX-License-Identifier: MIT */
/* pccrd.h - MS-PCCRD, BranchCache discovery (a WS-Discovery profile): building and parsing
 * Probe and ProbeMatches messages, V1 and V2 forms. Pure functions, no I/O; the parsers use
 * libxml2 with entity expansion, DTD loading and network access off and a size cap, and never
 * trust a count found in the XML. Layouts: branchcache-protocols.md §4 (and §9.10-14). */
#ifndef PEERDIST_PCCRD_H
#define PEERDIST_PCCRD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Transport (§4.1): Probes multicast to these, ProbeMatches unicast to the Probe's source. */
#define PCCRD_PORT 3702
#define PCCRD_MCAST_V4 "239.255.255.250"
#define PCCRD_MCAST_V6 "ff02::c"

/* Largest message built or parsed: the largest UDP payload (IPv4), so any datagram fits and
 * nothing longer reaches libxml2 (longer input is refused unparsed). */
#define PCCRD_MSG_MAX 65507u
/* Segment IDs in one Probe or V1 ProbeMatch (the V2 form counts them in one byte). */
#define PCCRD_IDS_MAX 255u
#define PCCRD_ID_MAX 64u
/* A V2 availability bitmap: 2 bits per requested segment (§4.4). */
#define PCCRD_BITMAP_MAX ((PCCRD_IDS_MAX * 2u + 7u) / 8u)
/* wsa:MessageID / RelatesTo / EndpointReference texts kept ("urn:uuid:" + 36 is 45). */
#define PCCRD_URI_MAX 128u
/* "urn:uuid:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" and its NUL. */
#define PCCRD_UUID_URN_SIZE 46u
/* XAddrs entries kept from a ProbeMatch, and their text: "[v6 address%zone]:65535". */
#define PCCRD_XADDRS_MAX 4u
#define PCCRD_XADDR_HOST_MAX 64u

/* The two message forms (§4.3): V1 "PeerDist:PeerDistData" (upper-case hex scopes, strcmp0),
 * V2 "PeerDist:PeerDistDataV2" (one base64 scope: u16 size, u8 count, the IDs). */
enum pccrd_form { PCCRD_FORM_V1 = 1, PCCRD_FORM_V2 = 2 };

enum pccrd_error {
    PCCRD_OK = 0,
    PCCRD_E_SIZE = -1,   /* input over PCCRD_MSG_MAX, or empty */
    PCCRD_E_XML = -2,    /* not well-formed, or a DTD / entity declaration / reference */
    PCCRD_E_SHAPE = -3,  /* not the expected SOAP envelope, action or elements */
    PCCRD_E_FIELD = -4,  /* a field's text is wrong: hex, base64, ID size, count, XAddrs */
    PCCRD_E_SPACE = -5,  /* builder: output buffer too small, or too many IDs */
    PCCRD_E_RANDOM = -6, /* no random bytes for a MessageID */
};
const char *pccrd_strerror(int err);

/* A fresh random (version 4) "urn:uuid:..." in out. */
int pccrd_uuid_urn(char out[PCCRD_UUID_URN_SIZE]);

/* ---- Probe ---- */

/* A parsed Probe. IDs are copied out (nothing points into the input). */
struct pccrd_probe {
    enum pccrd_form form;
    char message_id[PCCRD_URI_MAX]; /* wsa:MessageID, to echo in RelatesTo */
    size_t n_ids;
    size_t id_len[PCCRD_IDS_MAX];
    uint8_t ids[PCCRD_IDS_MAX][PCCRD_ID_MAX];
};

/*
 * Builds a Probe for n segment IDs (1..PCCRD_IDS_MAX, each 1..PCCRD_ID_MAX bytes; a V2-form
 * Probe needs them all the same size) in the given form, with MessageID message_id (a
 * "urn:uuid:..." from pccrd_uuid_urn(); the caller keeps it to match ProbeMatches' RelatesTo).
 * Writes UTF-8 XML (no NUL) at out; *out_len its length. 0 or a negative enum pccrd_error.
 */
int pccrd_probe_build(enum pccrd_form form, const uint8_t *const *ids, const size_t *id_lens,
    size_t n, const char *message_id, char *out, size_t cap, size_t *out_len);

/*
 * Parses a Probe (either form; the form is the Types element's). Checks the Action, Types
 * and MatchBy; V1 scopes are whitespace-separated hex IDs (matching is case-sensitive on
 * upper case, §4.3, so lower-case hex is refused), V2 one base64 scope whose count must agree
 * with its length. Empty or malformed Scopes, or more than PCCRD_IDS_MAX IDs: refused (§4.5).
 */
int pccrd_probe_parse(const char *xml, size_t len, struct pccrd_probe *out);

/* ---- ProbeMatches ---- */

/* What a ProbeMatch says (built from this, or parsed into it). */
struct pccrd_match {
    enum pccrd_form form;
    char message_id[PCCRD_URI_MAX]; /* its own wsa:MessageID */
    char relates_to[PCCRD_URI_MAX]; /* the Probe's MessageID */
    char endpoint[PCCRD_URI_MAX];   /* wsa:EndpointReference/Address: "urn:uuid:<peer GUID>" */
    uint64_t instance_id;           /* AppSequence InstanceId (service start time) */
    uint64_t message_number;        /* AppSequence MessageNumber */
    uint32_t metadata_version;      /* 1 for the V1 form, 2 for V2 */
    /* XAddrs: "address:port" ("[v6]:port"), the first PCCRD_XADDRS_MAX kept when parsing */
    size_t n_xaddrs;
    struct pccrd_xaddr {
        char host[PCCRD_XADDR_HOST_MAX]; /* numeric address text, no brackets */
        uint16_t port;
    } xaddrs[PCCRD_XADDRS_MAX];
    /* V1: the matched IDs and their 8-hex-digit BlockCounts, same order */
    size_t n_ids;
    size_t id_len[PCCRD_IDS_MAX];
    uint8_t ids[PCCRD_IDS_MAX][PCCRD_ID_MAX];
    uint32_t block_counts[PCCRD_IDS_MAX];
    /* V2: the availability bitmap over the Probe's IDs, 2 bits each, MSB first (§4.4) */
    size_t bitmap_len;
    uint8_t bitmap[PCCRD_BITMAP_MAX];
};

/*
 * Builds a ProbeMatches message with one ProbeMatch from m (form, message_id, relates_to,
 * endpoint, instance_id, message_number, xaddrs; V1: n_ids IDs with block_counts; V2:
 * bitmap). metadata_version 0 means the form's (1 or 2). Element prefixes are exactly those
 * iPXE's text scan looks for (<wsd:Scopes>, <wsd:XAddrs>, <PeerDist:BlockCount>, no
 * attributes; §4.4, §9.12). 0 or a negative enum pccrd_error.
 */
int pccrd_match_build(const struct pccrd_match *m, char *out, size_t cap, size_t *out_len);

/*
 * Parses a ProbeMatches message (its first ProbeMatch): Action, RelatesTo, Types (the form),
 * XAddrs (at least one valid "address:port"), V1 Scopes + BlockCount (exactly 8 hex digits
 * per scope), V2 Scopes (the bitmap). Zero BlockCounts are kept: the caller skips them as
 * iPXE does. 0 or a negative enum pccrd_error.
 */
int pccrd_match_parse(const char *xml, size_t len, struct pccrd_match *out);

/* ---- helpers ---- */

/* Bit pair i of a V2 availability bitmap: have = "I have this segment", complete = "I have
 * all of it" (high bit then low bit, MSB first). bitmap must hold (2 * (i + 1) + 7) / 8. */
void pccrd_bitmap_set(uint8_t *bitmap, size_t i, bool have, bool complete);
void pccrd_bitmap_get(const uint8_t *bitmap, size_t bitmap_len, size_t i, bool *have,
    bool *complete);
/* Bytes of a bitmap for n segments. */
size_t pccrd_bitmap_len(size_t n);

/* "a.b.c.d:port" or "[v6]:port" for an AF_INET/AF_INET6 address (its port ignored) and port,
 * as XAddrs carries it. 0 or PCCRD_E_FIELD / PCCRD_E_SPACE. */
int pccrd_xaddr_format(const struct sockaddr *sa, uint16_t port, char *out, size_t cap);

#endif
