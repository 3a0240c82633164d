/* SPDX-License-Identifier: MIT */
/*
 * discovery.c - MS-PCCRD (peer.h; branchcache-protocols.md §4): WS-Discovery Probes and
 * ProbeMatches over UDP multicast on port 3702, IPv4 239.255.255.250 and IPv6 FF02::C, on
 * every interface in use. Answers Probes for segments peer-serve.c can serve (after a random
 * delay, within rate limits), sends Probes for peer-fetch.c and reports the ProbeMatches that
 * come back from the receiving interface's own subnet. The XML is the codec's (pccrd.h).
 *
 * Sockets: one per family bound to the discovery port (joined to the group on each
 * interface; Probes come in, ProbeMatches go out from it), and one per interface and family
 * on an ephemeral port with IP_MULTICAST_IF / IPV6_MULTICAST_IF set to that interface (our
 * Probes go out from it; ProbeMatches come back to it). IP_PKTINFO tells which interface a
 * datagram came in on. Everything runs on the event loop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "pccrd.h"
#include "peer.h"

#define DISCO_PORT PCCRD_PORT
#define DISCO_GROUP4 PCCRD_MCAST_V4
#define DISCO_GROUP6 PCCRD_MCAST_V6
/* Interfaces in use at most, and addresses kept per interface and family. */
#define DISCO_IFACES_MAX 32
#define DISCO_ADDRS_MAX 16
/* Interfaces and their addresses are looked at again this often (DHCP, hot-plug). */
#define DISCO_RESCAN_MS 30000
/* The largest datagram read; larger ones are truncated and dropped as malformed. */
#define DISCO_DATAGRAM_MAX 65507
/* §4.5 server backoff: an answer leaves 1 ms .. APP_MAX_DELAY after its Probe. */
#define DISCO_REPLY_DELAY_MAX_MS 65
/* Answers waiting for their delay at most; Probes past it go unanswered. */
#define DISCO_PENDING_MAX 256
/* Answers per second: all peers together, and one peer (source address); a token bucket each,
 * holding at most BURST answers. A flood of Probes gets at most BURST + RATE x seconds. The
 * per-peer figures leave room for iPXE, which probes each segment on its own (V2 content:
 * one segment per block, 32 blocks at once, each Probe sent twice). */
#define DISCO_ANSWER_RATE 256
#define DISCO_ANSWER_BURST 256
#define DISCO_PEER_RATE 64
#define DISCO_PEER_BURST 128
#define DISCO_PEERS_TRACKED 256
/* A Probe seen again (retransmission, or heard on two interfaces) within this many MessageIDs
 * is not answered twice. */
#define DISCO_SEEN_MAX 64
/* Probers recorded (segment ID, peer, time) for discovery_recent_probers, oldest dropped. */
#define DISCO_PROBERS_LOG 2048
/* Probes of ours outstanding at most, IDs per Probe message, matches reported per probe. */
#define DISCO_PROBES_MAX 256
#define DISCO_IDS_PER_MESSAGE 16
#define DISCO_MATCHES_MAX 256
/* WS-Discovery's repeat (SOAP-over-UDP UDP_MULTICAST_REPEAT 1): each Probe message goes out
 * once more, with the same MessageID, after a third of the window (at most this long). */
#define DISCO_REPEAT_MAX_MS 250
/* Malformed datagrams: one log line per this many seconds, with the count since. */
#define DISCO_MALFORMED_LOG_SECONDS 10
/*
 * §4.5 reply suppression (Windows 7's rule, n = 10): the ProbeMatches our own Probes got for a
 * segment are remembered (block counts of the first DISCO_SUPPRESS_N peers); a Probe for it is
 * then not answered when at least n peers answered with the whole segment, answered with
 * probability 1/3 when at least n answered but fewer whole, answered otherwise. Remembered
 * for DISCO_HEARD_MAX segments, in a table indexed by the ID's first bytes (a collision
 * forgets the older segment: the rule then answers, as it would without the data).
 */
#define DISCO_SUPPRESS_N 10
#define DISCO_HEARD_MAX 1024

struct disco_addr {
    int family;
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } a;
    unsigned prefix; /* bits */
};

struct disco_iface {
    char name[IF_NAMESIZE];
    unsigned index;
    struct disco_addr addrs[2 * DISCO_ADDRS_MAX];
    unsigned naddrs;
    bool joined4, joined6;
    int send4, send6; /* ephemeral-port sockets for our Probes, -1 if none */
    struct event *ev4, *ev6;
    bool seen; /* rescan mark */
};

/* One answer waiting for its delay (§4.5). */
struct disco_answer {
    struct disco *disco;
    struct event *ev;
    int fd;
    struct sockaddr_storage to;
    socklen_t to_len;
    unsigned ifindex;
    struct disco_addr from; /* our address on the receiving interface */
    uint8_t *msg;
    size_t len;
    struct disco_answer *next, *prev;
};

struct disco_bucket {
    struct sockaddr_storage peer; /* port 0: a peer is its address */
    double tokens;
    uint64_t at_ms;
    uint64_t probes;   /* Probes heard from it (peerdistctl peers) */
    int64_t last_seen; /* wall clock of its last Probe */
};

struct disco_prober {
    uint64_t at_ms;
    uint8_t id[PEER_ID_MAX];
    uint8_t id_len;
    struct disco_addr peer;
};

struct disco_heard {
    uint8_t id[PEER_ID_MAX];
    uint8_t id_len;
    uint8_t ncounts;
    uint32_t replies;
    uint32_t counts[DISCO_SUPPRESS_N]; /* V1 BlockCount, or V2 1 = whole, 0 = part */
};

struct disco_seen {
    char message_id[PCCRD_URI_MAX];
    struct disco_addr peer;
};

struct disco_message {
    char message_id[PCCRD_URI_MAX];
    size_t first, n; /* the probe's IDs this message carries */
    uint8_t *buf;
    size_t len;
};

struct discovery_probe {
    struct disco *disco;
    int version;
    size_t n;
    uint8_t (*ids)[PEER_ID_MAX];
    size_t *id_lens;
    struct disco_message *msgs;
    size_t nmsgs;
    struct event *repeat_ev, *done_ev;
    discovery_match_fn on_match;
    discovery_done_fn on_done;
    void *arg;
    /* Reported (peer, ID) pairs: each once per probe. */
    struct {
        struct sockaddr_storage peer;
        size_t idx;
    } reported[DISCO_MATCHES_MAX];
    size_t nreported;
    unsigned busy;  /* inside a callback */
    bool cancelled; /* freed once no callback runs */
    struct discovery_probe *next, *prev;
};

struct disco {
    struct daemon *d;
    int rx4, rx6;
    struct event *rx4_ev, *rx6_ev, *rescan_ev;
    struct disco_iface ifaces[DISCO_IFACES_MAX];
    unsigned nifaces;
    uint8_t *rxbuf;
    /* ProbeMatch header values (§4.2): InstanceId at start, MessageNumber per message. */
    uint64_t instance_id;
    uint64_t message_number;
    char endpoint[PCCRD_URI_MAX]; /* urn:uuid:..., new each start */
    uint64_t rng;
    /* Answering. */
    struct disco_answer *answers;
    unsigned npending;
    struct disco_bucket all;
    struct disco_bucket peers[DISCO_PEERS_TRACKED];
    unsigned npeers;
    struct disco_seen seen[DISCO_SEEN_MAX];
    unsigned seen_next;
    struct disco_prober probers[DISCO_PROBERS_LOG];
    unsigned probers_next, nprobers;
    struct disco_heard heard[DISCO_HEARD_MAX];
    /* Probing. */
    struct discovery_probe *probes;
    unsigned nprobes;
    /* Scratch for the codec (large: up to 255 IDs). */
    struct pccrd_probe probe;
    struct pccrd_match match;
    char out[PCCRD_MSG_MAX];
    /* Rate-limited log of dropped datagrams. */
    time_t malformed_logged;
    unsigned long malformed_count;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t rng_next(struct disco *g)
{
    /* xorshift64*: delays and nothing secret (MessageIDs come from getrandom). */
    g->rng ^= g->rng >> 12;
    g->rng ^= g->rng << 25;
    g->rng ^= g->rng >> 27;
    return g->rng * 2685821657736338717ull;
}

static void random_bytes(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = getrandom(p, len, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* No entropy source at all: fall back on the clock (uniqueness, not secrecy). */
            uint64_t t = now_ms() ^ (uint64_t)getpid() << 32;
            for (size_t i = 0; i < len; i++, t = t * 6364136223846793005ull + 1)
                p[i] = (uint8_t)(t >> 56);
            return;
        }
        p += r, len -= (size_t)r;
    }
}

/* "urn:uuid:" and a random (version 4) UUID. */
static void new_message_id(char *out, size_t outlen)
{
    uint8_t u[16];
    random_bytes(u, sizeof(u));
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    snprintf(out, outlen,
        "urn:uuid:%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
        u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static void log_malformed(struct disco *g, const char *what, const struct sockaddr_storage *from)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (from->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)from)->sin_addr, host, sizeof(host));
    else if (from->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)from)->sin6_addr, host, sizeof(host));
    g->malformed_count++;
    time_t now = time(NULL);
    if (now - g->malformed_logged >= DISCO_MALFORMED_LOG_SECONDS) {
        log_warn("discovery: dropped a malformed datagram from %s (%s); %lu dropped since the "
                 "last such line",
            host, what, g->malformed_count);
        g->malformed_logged = now;
        g->malformed_count = 0;
    } else {
        log_debug("discovery: dropped a malformed datagram from %s (%s)", host, what);
    }
}

/* ---- addresses and interfaces ---- */

static void addr_from_sockaddr(const struct sockaddr_storage *ss, struct disco_addr *out)
{
    memset(out, 0, sizeof(*out));
    out->family = ss->ss_family;
    if (ss->ss_family == AF_INET)
        out->a.v4 = ((const struct sockaddr_in *)ss)->sin_addr;
    else if (ss->ss_family == AF_INET6)
        out->a.v6 = ((const struct sockaddr_in6 *)ss)->sin6_addr;
}

static bool addr_equal(const struct disco_addr *a, const struct disco_addr *b)
{
    if (a->family != b->family)
        return false;
    if (a->family == AF_INET)
        return a->a.v4.s_addr == b->a.v4.s_addr;
    return memcmp(&a->a.v6, &b->a.v6, sizeof(a->a.v6)) == 0;
}

/* Whether x lies in the prefix of net (same family). */
static bool addr_in_subnet(const struct disco_addr *net, const struct disco_addr *x)
{
    if (net->family != x->family)
        return false;
    const uint8_t *a = net->family == AF_INET ? (const uint8_t *)&net->a.v4 : net->a.v6.s6_addr;
    const uint8_t *b = x->family == AF_INET ? (const uint8_t *)&x->a.v4 : x->a.v6.s6_addr;
    unsigned bits = net->prefix, max = net->family == AF_INET ? 32 : 128;
    if (bits > max)
        bits = max;
    for (unsigned i = 0; i < bits / 8; i++)
        if (a[i] != b[i])
            return false;
    if (bits % 8) {
        uint8_t mask = (uint8_t)(0xff << (8 - bits % 8));
        if ((a[bits / 8] & mask) != (b[bits / 8] & mask))
            return false;
    }
    return true;
}

static unsigned prefix_len(const struct sockaddr *mask)
{
    const uint8_t *p;
    size_t n;
    if (!mask)
        return 0;
    if (mask->sa_family == AF_INET) {
        p = (const uint8_t *)&((const struct sockaddr_in *)mask)->sin_addr;
        n = 4;
    } else {
        p = ((const struct sockaddr_in6 *)mask)->sin6_addr.s6_addr;
        n = 16;
    }
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++)
        bits += (unsigned)__builtin_popcount(p[i]);
    return bits;
}

static struct disco_iface *iface_by_index(struct disco *g, unsigned index)
{
    for (unsigned i = 0; i < g->nifaces; i++)
        if (g->ifaces[i].index == index)
            return &g->ifaces[i];
    return NULL;
}

/* Whether cfg.interfaces (comma-separated, empty = all) names the interface. */
static bool iface_wanted(const char *list, const char *name)
{
    if (!list[0])
        return true;
    size_t len = strlen(name);
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ' && *e != '\t')
            e++;
        if ((size_t)(e - p) == len && memcmp(p, name, len) == 0)
            return true;
        p = e;
    }
    return false;
}

/*
 * Whether a datagram from `from` that came in on interface `ifc` is from that interface's own
 * subnet: an address in one of its prefixes, or an IPv6 link-local address (scope: the link).
 */
static bool from_local_subnet(const struct disco_iface *ifc, const struct disco_addr *from)
{
    if (from->family == AF_INET6 && IN6_IS_ADDR_LINKLOCAL(&from->a.v6))
        return true;
    for (unsigned i = 0; i < ifc->naddrs; i++)
        if (addr_in_subnet(&ifc->addrs[i], from))
            return true;
    return false;
}

/* Our address on ifc to announce to a peer at `to`: the one whose subnet holds it, else the
 * interface's first of that family (IPv6: link-local for a link-local peer). */
static bool iface_addr_for(const struct disco_iface *ifc, const struct disco_addr *to,
    struct disco_addr *out)
{
    const struct disco_addr *first = NULL;
    for (unsigned i = 0; i < ifc->naddrs; i++) {
        const struct disco_addr *a = &ifc->addrs[i];
        if (a->family != to->family)
            continue;
        bool ll = a->family == AF_INET6 && IN6_IS_ADDR_LINKLOCAL(&a->a.v6);
        bool to_ll = to->family == AF_INET6 && IN6_IS_ADDR_LINKLOCAL(&to->a.v6);
        if ((ll && to_ll) || (!ll && !to_ll && addr_in_subnet(a, to))) {
            *out = *a;
            return true;
        }
        if (!first)
            first = a;
    }
    if (!first)
        return false;
    *out = *first;
    return true;
}

static void on_send_readable(evutil_socket_t fd, short what, void *arg);

static int open_send_socket(struct disco *g, struct disco_iface *ifc, int family)
{
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1, zero = 0, hops = 1;
    bool ok;
    if (family == AF_INET) {
        struct ip_mreqn mr = {.imr_ifindex = (int)ifc->index};
        ok = setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &mr, sizeof(mr)) == 0 &&
            setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &zero, sizeof(zero)) == 0 &&
            setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &hops, sizeof(hops)) == 0 &&
            setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) == 0;
    } else {
        int index = (int)ifc->index;
        ok = setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &index, sizeof(index)) == 0 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &zero, sizeof(zero)) == 0 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops)) == 0 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) == 0;
    }
    struct event *ev = ok ? event_new(g->d->base, fd, EV_READ | EV_PERSIST, on_send_readable, g)
                          : NULL;
    if (!ev || event_add(ev, NULL) != 0) {
        log_warn("discovery: %s: cannot set up an IPv%c socket for Probes: %s", ifc->name,
            family == AF_INET ? '4' : '6', strerror(errno));
        if (ev)
            event_free(ev);
        close(fd);
        return -1;
    }
    if (family == AF_INET)
        ifc->send4 = fd, ifc->ev4 = ev;
    else
        ifc->send6 = fd, ifc->ev6 = ev;
    return 0;
}

static void join_group(struct disco *g, struct disco_iface *ifc, int family)
{
    int rc;
    if (family == AF_INET) {
        struct ip_mreqn mr = {.imr_ifindex = (int)ifc->index};
        inet_pton(AF_INET, DISCO_GROUP4, &mr.imr_multiaddr);
        rc = setsockopt(g->rx4, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof(mr));
    } else {
        struct ipv6_mreq mr = {.ipv6mr_interface = ifc->index};
        inet_pton(AF_INET6, DISCO_GROUP6, &mr.ipv6mr_multiaddr);
        rc = setsockopt(g->rx6, IPPROTO_IPV6, IPV6_JOIN_GROUP, &mr, sizeof(mr));
    }
    if (rc != 0 && errno != EADDRINUSE) {
        log_warn("discovery: %s: cannot join %s: %s", ifc->name,
            family == AF_INET ? DISCO_GROUP4 : DISCO_GROUP6, strerror(errno));
        return;
    }
    if (family == AF_INET)
        ifc->joined4 = true;
    else
        ifc->joined6 = true;
}

static void iface_close(struct disco_iface *ifc)
{
    if (ifc->ev4)
        event_free(ifc->ev4);
    if (ifc->ev6)
        event_free(ifc->ev6);
    if (ifc->send4 >= 0)
        close(ifc->send4);
    if (ifc->send6 >= 0)
        close(ifc->send6);
    ifc->ev4 = ifc->ev6 = NULL;
    ifc->send4 = ifc->send6 = -1;
}

/*
 * The interfaces in use, from getifaddrs: up, multicast-capable, with an address, named by
 * cfg.interfaces when it names any. New ones are joined and get their Probe sockets; gone
 * ones are closed (the kernel drops their memberships with them).
 */
static void rescan(struct disco *g)
{
    struct ifaddrs *ifa0;
    if (getifaddrs(&ifa0) != 0) {
        log_warn("discovery: cannot list the interfaces: %s", strerror(errno));
        return;
    }
    for (unsigned i = 0; i < g->nifaces; i++) {
        g->ifaces[i].seen = false;
        g->ifaces[i].naddrs = 0;
    }
    const struct config *cfg = &g->d->cfg;
    for (struct ifaddrs *ifa = ifa0; ifa; ifa = ifa->ifa_next) {
        if (!ifa->ifa_addr || !(ifa->ifa_flags & IFF_UP) || !(ifa->ifa_flags & IFF_MULTICAST) ||
            (ifa->ifa_flags & IFF_LOOPBACK))
            continue;
        int fam = ifa->ifa_addr->sa_family;
        if (!((fam == AF_INET && cfg->ipv4 && g->rx4 >= 0) ||
                (fam == AF_INET6 && cfg->ipv6 && g->rx6 >= 0)))
            continue;
        if (!iface_wanted(cfg->interfaces, ifa->ifa_name))
            continue;
        unsigned index = if_nametoindex(ifa->ifa_name);
        if (index == 0)
            continue;
        struct disco_iface *ifc = iface_by_index(g, index);
        if (!ifc) {
            if (g->nifaces == DISCO_IFACES_MAX) {
                log_warn("discovery: more than %d interfaces; %s not used", DISCO_IFACES_MAX,
                    ifa->ifa_name);
                continue;
            }
            ifc = &g->ifaces[g->nifaces++];
            memset(ifc, 0, sizeof(*ifc));
            snprintf(ifc->name, sizeof(ifc->name), "%s", ifa->ifa_name);
            ifc->index = index;
            ifc->send4 = ifc->send6 = -1;
            log_info("discovery: using interface %s", ifc->name);
        }
        ifc->seen = true;
        unsigned same = 0; /* addresses of this family kept so far: a cap per family */
        for (unsigned k = 0; k < ifc->naddrs; k++)
            same += ifc->addrs[k].family == fam;
        if (same < DISCO_ADDRS_MAX) {
            struct disco_addr *a = &ifc->addrs[ifc->naddrs++];
            addr_from_sockaddr((const struct sockaddr_storage *)(void *)ifa->ifa_addr, a);
            a->prefix = prefix_len(ifa->ifa_netmask);
        }
    }
    freeifaddrs(ifa0);
    for (unsigned i = 0; i < g->nifaces;) {
        struct disco_iface *ifc = &g->ifaces[i];
        if (!ifc->seen) {
            log_info("discovery: interface %s gone or without an address", ifc->name);
            iface_close(ifc);
            g->ifaces[i] = g->ifaces[--g->nifaces];
            continue;
        }
        bool has4 = false, has6 = false;
        for (unsigned k = 0; k < ifc->naddrs; k++)
            has4 |= ifc->addrs[k].family == AF_INET, has6 |= ifc->addrs[k].family == AF_INET6;
        if (has4 && !ifc->joined4)
            join_group(g, ifc, AF_INET);
        if (has6 && !ifc->joined6)
            join_group(g, ifc, AF_INET6);
        if (has4 && ifc->send4 < 0)
            open_send_socket(g, ifc, AF_INET);
        if (has6 && ifc->send6 < 0)
            open_send_socket(g, ifc, AF_INET6);
        i++;
    }
}

static void on_rescan(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    rescan(arg);
}

/* ---- datagrams ---- */

/* Reads one datagram with the interface it came in on; its length, or -1 (nothing, or
 * dropped). */
static ssize_t recv_datagram(struct disco *g, int fd, struct sockaddr_storage *from,
    socklen_t *from_len, unsigned *ifindex)
{
    struct iovec iov = {.iov_base = g->rxbuf, .iov_len = DISCO_DATAGRAM_MAX};
    union {
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_name = from,
        .msg_namelen = sizeof(*from),
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = ctl.buf,
        .msg_controllen = sizeof(ctl.buf)};
    ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            log_debug("discovery: recvmsg: %s", strerror(errno));
        return -1;
    }
    *from_len = mh.msg_namelen;
    *ifindex = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            *ifindex = (unsigned)pi.ipi_ifindex;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            *ifindex = pi.ipi6_ifindex;
        }
    }
    if (mh.msg_flags & MSG_TRUNC) {
        log_malformed(g, "too large", from);
        return -1;
    }
    return n;
}

/* Sends msg to `to` out of interface ifindex from address `src` (unicast answers). */
static int send_from(int fd, const uint8_t *msg, size_t len, const struct sockaddr_storage *to,
    socklen_t to_len, unsigned ifindex, const struct disco_addr *src)
{
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct msghdr mh = {.msg_name = (void *)to,
        .msg_namelen = to_len,
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = ctl.buf};
    struct cmsghdr *c = (struct cmsghdr *)ctl.buf;
    if (to->ss_family == AF_INET) {
        struct in_pktinfo pi = {.ipi_ifindex = (int)ifindex, .ipi_spec_dst = src->a.v4};
        mh.msg_controllen = CMSG_SPACE(sizeof(pi));
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
    } else {
        struct in6_pktinfo pi = {.ipi6_addr = src->a.v6, .ipi6_ifindex = ifindex};
        mh.msg_controllen = CMSG_SPACE(sizeof(pi));
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
    }
    return sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

static void format_addr(const struct disco_addr *a, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    inet_ntop(a->family, a->family == AF_INET ? (const void *)&a->a.v4 : (const void *)&a->a.v6,
        host, sizeof(host));
    snprintf(out, outlen, "%s", host);
}

/* ---- answering Probes ---- */

static bool bucket_take(struct disco_bucket *b, unsigned rate, unsigned burst, uint64_t now)
{
    b->tokens += (double)(now - b->at_ms) * rate / 1000.0;
    if (b->tokens > burst)
        b->tokens = burst;
    b->at_ms = now;
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}

/* The peer's bucket; a new peer takes the slot of the one heard from longest ago. */
static struct disco_bucket *peer_bucket(struct disco *g, const struct disco_addr *peer,
    uint64_t now)
{
    struct disco_bucket *oldest = NULL;
    for (unsigned i = 0; i < g->npeers; i++) {
        struct disco_addr a;
        addr_from_sockaddr(&g->peers[i].peer, &a);
        if (addr_equal(&a, peer))
            return &g->peers[i];
        if (!oldest || g->peers[i].at_ms < oldest->at_ms)
            oldest = &g->peers[i];
    }
    struct disco_bucket *b = g->npeers < DISCO_PEERS_TRACKED ? &g->peers[g->npeers++] : oldest;
    memset(b, 0, sizeof(*b));
    b->peer.ss_family = (sa_family_t)peer->family;
    if (peer->family == AF_INET)
        ((struct sockaddr_in *)&b->peer)->sin_addr = peer->a.v4;
    else
        ((struct sockaddr_in6 *)&b->peer)->sin6_addr = peer->a.v6;
    b->tokens = DISCO_PEER_BURST;
    b->at_ms = now;
    return b;
}

static void record_prober(struct disco *g, const uint8_t *id, size_t id_len,
    const struct disco_addr *peer, uint64_t now)
{
    if (id_len > PEER_ID_MAX)
        return;
    struct disco_prober *p = &g->probers[g->probers_next];
    p->at_ms = now;
    memcpy(p->id, id, id_len);
    p->id_len = (uint8_t)id_len;
    p->peer = *peer;
    g->probers_next = (g->probers_next + 1) % DISCO_PROBERS_LOG;
    if (g->nprobers < DISCO_PROBERS_LOG)
        g->nprobers++;
}

static bool seen_before(struct disco *g, const char *message_id, const struct disco_addr *peer)
{
    for (unsigned i = 0; i < DISCO_SEEN_MAX; i++)
        if (addr_equal(&g->seen[i].peer, peer) && strcmp(g->seen[i].message_id, message_id) == 0)
            return true;
    struct disco_seen *s = &g->seen[g->seen_next];
    g->seen_next = (g->seen_next + 1) % DISCO_SEEN_MAX;
    snprintf(s->message_id, sizeof(s->message_id), "%s", message_id);
    s->peer = *peer;
    return false;
}

static void answer_free(struct disco *g, struct disco_answer *a)
{
    if (a->prev)
        a->prev->next = a->next;
    else
        g->answers = a->next;
    if (a->next)
        a->next->prev = a->prev;
    g->npending--;
    event_free(a->ev);
    free(a->msg);
    free(a);
}

static void on_answer_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct disco_answer *a = arg;
    struct disco *g = a->disco;
    if (send_from(a->fd, a->msg, a->len, &a->to, a->to_len, a->ifindex, &a->from) != 0) {
        char host[INET6_ADDRSTRLEN];
        struct disco_addr to;
        addr_from_sockaddr(&a->to, &to);
        format_addr(&to, host, sizeof(host));
        log_debug("discovery: ProbeMatch to %s not sent: %s", host, strerror(errno));
    }
    answer_free(g, a);
}

static struct discovery_probe *probe_by_message(struct disco *g, const char *relates_to,
    size_t *msg_index);

static struct disco_heard *heard_slot(struct disco *g, const uint8_t *id, size_t id_len)
{
    uint32_t h = 0;
    for (size_t i = 0; i < id_len && i < 4; i++)
        h = h << 8 | id[i];
    return &g->heard[h % DISCO_HEARD_MAX];
}

/* A ProbeMatch of one peer for a segment we probed for (see DISCO_SUPPRESS_N). */
static void heard_note(struct disco *g, const uint8_t *id, size_t id_len, uint32_t count)
{
    struct disco_heard *h = heard_slot(g, id, id_len);
    if (h->id_len != id_len || memcmp(h->id, id, id_len) != 0) {
        memset(h, 0, sizeof(*h));
        memcpy(h->id, id, id_len);
        h->id_len = (uint8_t)id_len;
    }
    h->replies++;
    if (h->ncounts < DISCO_SUPPRESS_N)
        h->counts[h->ncounts++] = count;
}

/* Whether to leave a segment we hold out of an answer (§4.5 reply suppression). */
static bool heard_suppress(struct disco *g, const uint8_t *id, size_t id_len,
    const struct peer_segment_info *info, int form)
{
    const struct disco_heard *h = heard_slot(g, id, id_len);
    if (h->id_len != id_len || memcmp(h->id, id, id_len) != 0 || h->replies < DISCO_SUPPRESS_N)
        return false;
    uint32_t whole = form == PCCRD_FORM_V1 ? info->total_blocks : 1, full = 0;
    for (unsigned i = 0; i < h->ncounts; i++)
        full += whole > 0 && h->counts[i] >= whole;
    if (full >= DISCO_SUPPRESS_N)
        return true;
    return rng_next(g) % 3 != 0; /* answer with probability 1/3 */
}

static void handle_probe(struct disco *g, int fd, const uint8_t *buf, size_t len,
    const struct sockaddr_storage *from, socklen_t from_len, unsigned ifindex)
{
    struct disco_iface *ifc = iface_by_index(g, ifindex);
    if (!ifc)
        return; /* an interface not in use */
    struct pccrd_probe *probe = &g->probe;
    int rc = pccrd_probe_parse((const char *)buf, len, probe);
    if (rc == PCCRD_E_SHAPE) {
        /* Other WS-Discovery traffic shares the group (devices' Hello, Bye, Probes for
         * printers): not ours, not malformed. */
        log_debug("discovery: a datagram on port %d that is not a PeerDist Probe", DISCO_PORT);
        return;
    }
    if (rc != 0) {
        log_malformed(g, pccrd_strerror(rc), from);
        return;
    }
    size_t mi;
    if (probe_by_message(g, probe->message_id, &mi)) {
        /* One of ours, heard back through another interface on the same link. */
        log_debug("discovery: our own Probe came back on %s; not answered", ifc->name);
        return;
    }
    struct disco_addr peer, ours;
    addr_from_sockaddr(from, &peer);
    uint64_t now = now_ms();
    if (seen_before(g, probe->message_id, &peer))
        return;
    struct disco_bucket *bucket = peer_bucket(g, &peer, now);
    bucket->probes++;
    bucket->last_seen = (int64_t)time(NULL);
    /* What we hold, ID by ID; a ProbeMatch lists held IDs (V1) or a bit pair per ID (V2). */
    struct pccrd_match *m = &g->match;
    memset(m, 0, sizeof(*m));
    m->form = probe->form;
    unsigned held = 0;
    for (size_t i = 0; i < probe->n_ids; i++) {
        struct peer_segment_info info;
        record_prober(g, probe->ids[i], probe->id_len[i], &peer, now);
        bool have = peer_serve_segment(g->d, probe->ids[i], probe->id_len[i], &info) &&
            info.blocks_held > 0 &&
            !heard_suppress(g, probe->ids[i], probe->id_len[i], &info, (int)probe->form);
        held += have;
        if (probe->form == PCCRD_FORM_V1) {
            if (have) {
                memcpy(m->ids[m->n_ids], probe->ids[i], probe->id_len[i]);
                m->id_len[m->n_ids] = probe->id_len[i];
                m->block_counts[m->n_ids++] = info.blocks_held;
            }
        } else {
            pccrd_bitmap_set(m->bitmap, i, have, have && info.blocks_held >= info.total_blocks);
        }
    }
    if (probe->form == PCCRD_FORM_V2)
        m->bitmap_len = pccrd_bitmap_len(probe->n_ids);
    if (held == 0)
        return; /* §4.5: silent when no requested ID is held */
    char host[INET6_ADDRSTRLEN];
    format_addr(&peer, host, sizeof(host));
    if (g->npending >= DISCO_PENDING_MAX ||
        !bucket_take(bucket, DISCO_PEER_RATE, DISCO_PEER_BURST, now) ||
        !bucket_take(&g->all, DISCO_ANSWER_RATE, DISCO_ANSWER_BURST, now)) {
        log_debug("discovery: Probe from %s not answered: over the answer limits", host);
        return;
    }
    if (!iface_addr_for(ifc, &peer, &ours))
        return;
    /* XAddrs: this host's address on the receiving interface, and peer_port. */
    m->n_xaddrs = 1;
    format_addr(&ours, m->xaddrs[0].host, sizeof(m->xaddrs[0].host));
    m->xaddrs[0].port = (uint16_t)g->d->cfg.peer_port;
    new_message_id(m->message_id, sizeof(m->message_id));
    snprintf(m->relates_to, sizeof(m->relates_to), "%s", probe->message_id);
    snprintf(m->endpoint, sizeof(m->endpoint), "%s", g->endpoint);
    m->instance_id = g->instance_id;
    m->message_number = ++g->message_number;
    size_t out_len;
    if ((rc = pccrd_match_build(m, g->out, sizeof(g->out), &out_len)) != 0) {
        log_warn("discovery: cannot build a ProbeMatch: %s", pccrd_strerror(rc));
        return;
    }
    struct disco_answer *a = calloc(1, sizeof(*a));
    if (!a || !(a->msg = malloc(out_len)) || !(a->ev = evtimer_new(g->d->base, on_answer_due, a))) {
        log_warn("discovery: out of memory answering a Probe");
        if (a)
            free(a->msg);
        free(a);
        return;
    }
    memcpy(a->msg, g->out, out_len);
    a->len = out_len;
    a->disco = g;
    a->fd = fd;
    memcpy(&a->to, from, from_len);
    a->to_len = from_len;
    a->ifindex = ifindex;
    a->from = ours;
    a->next = g->answers;
    if (g->answers)
        g->answers->prev = a;
    g->answers = a;
    g->npending++;
    unsigned delay = 1 + (unsigned)(rng_next(g) % DISCO_REPLY_DELAY_MAX_MS);
    struct timeval tv = {.tv_sec = 0, .tv_usec = (suseconds_t)delay * 1000};
    evtimer_add(a->ev, &tv);
    log_debug("discovery: answering a V%d Probe from %s on %s (%u held) in %u ms", (int)probe->form,
        host, ifc->name, held, delay);
}

static void on_rx_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct disco *g = arg;
    struct sockaddr_storage from;
    socklen_t from_len;
    unsigned ifindex;
    /* A bounded turn: other events run between bursts of a flood. */
    for (int turn = 0; turn < 64; turn++) {
        ssize_t n = recv_datagram(g, fd, &from, &from_len, &ifindex);
        if (n < 0)
            return;
        handle_probe(g, fd, g->rxbuf, (size_t)n, &from, from_len, ifindex);
    }
}

/* ---- our Probes ---- */

static void probe_unlink(struct disco *g, struct discovery_probe *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else if (g->probes == p)
        g->probes = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->next = p->prev = NULL;
    g->nprobes--;
}

static void probe_free(struct discovery_probe *p)
{
    if (p->repeat_ev)
        event_free(p->repeat_ev);
    if (p->done_ev)
        event_free(p->done_ev);
    for (size_t i = 0; i < p->nmsgs; i++)
        free(p->msgs[i].buf);
    free(p->msgs);
    free(p->ids);
    free(p->id_lens);
    free(p);
}

/* Sends every message of p on every interface; how many sends went out. */
static unsigned probe_send(struct discovery_probe *p)
{
    struct disco *g = p->disco;
    unsigned sent = 0;
    struct sockaddr_in g4 = {.sin_family = AF_INET, .sin_port = htons(DISCO_PORT)};
    struct sockaddr_in6 g6 = {.sin6_family = AF_INET6, .sin6_port = htons(DISCO_PORT)};
    inet_pton(AF_INET, DISCO_GROUP4, &g4.sin_addr);
    inet_pton(AF_INET6, DISCO_GROUP6, &g6.sin6_addr);
    for (unsigned i = 0; i < g->nifaces; i++) {
        struct disco_iface *ifc = &g->ifaces[i];
        g6.sin6_scope_id = ifc->index;
        for (size_t m = 0; m < p->nmsgs; m++) {
            if (ifc->send4 >= 0) {
                if (sendto(ifc->send4, p->msgs[m].buf, p->msgs[m].len, MSG_DONTWAIT,
                        (struct sockaddr *)&g4, sizeof(g4)) >= 0)
                    sent++;
                else
                    log_debug("discovery: Probe on %s (IPv4): %s", ifc->name, strerror(errno));
            }
            if (ifc->send6 >= 0) {
                if (sendto(ifc->send6, p->msgs[m].buf, p->msgs[m].len, MSG_DONTWAIT,
                        (struct sockaddr *)&g6, sizeof(g6)) >= 0)
                    sent++;
                else
                    log_debug("discovery: Probe on %s (IPv6): %s", ifc->name, strerror(errno));
            }
        }
    }
    return sent;
}

static void on_probe_repeat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    probe_send(arg);
}

static void on_probe_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct discovery_probe *p = arg;
    probe_unlink(p->disco, p);
    p->cancelled = true; /* nothing more is reported; cancel from on_done is harmless */
    p->busy++;
    p->on_done(p->arg);
    p->busy--;
    probe_free(p);
}

struct discovery_probe *discovery_probe_start(struct daemon *d, int version,
    const uint8_t *const *ids, const size_t *id_lens, size_t n, unsigned window_ms,
    discovery_match_fn on_match, discovery_done_fn on_done, void *arg)
{
    struct disco *g = d->discovery;
    if (!g || g->nifaces == 0 || n == 0 || (version != 1 && version != 2))
        return NULL;
    if (g->nprobes >= DISCO_PROBES_MAX) {
        log_warn("discovery: %d probes already outstanding; this one is not sent",
            DISCO_PROBES_MAX);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (id_lens[i] == 0 || id_lens[i] > PEER_ID_MAX || (version == 2 && id_lens[i] != 32))
            return NULL;
    struct discovery_probe *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->disco = g;
    p->version = version;
    p->n = n;
    p->on_match = on_match;
    p->on_done = on_done;
    p->arg = arg;
    p->nmsgs = (n + DISCO_IDS_PER_MESSAGE - 1) / DISCO_IDS_PER_MESSAGE;
    p->ids = calloc(n, sizeof(*p->ids));
    p->id_lens = calloc(n, sizeof(*p->id_lens));
    p->msgs = calloc(p->nmsgs, sizeof(*p->msgs));
    p->repeat_ev = evtimer_new(d->base, on_probe_repeat, p);
    p->done_ev = evtimer_new(d->base, on_probe_done, p);
    if (!p->ids || !p->id_lens || !p->msgs || !p->repeat_ev || !p->done_ev)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        memcpy(p->ids[i], ids[i], id_lens[i]);
        p->id_lens[i] = id_lens[i];
    }
    for (size_t m = 0; m < p->nmsgs; m++) {
        struct disco_message *msg = &p->msgs[m];
        msg->first = m * DISCO_IDS_PER_MESSAGE;
        msg->n = n - msg->first < DISCO_IDS_PER_MESSAGE ? n - msg->first : DISCO_IDS_PER_MESSAGE;
        new_message_id(msg->message_id, sizeof(msg->message_id));
        int rc = pccrd_probe_build((enum pccrd_form)version, ids + msg->first, id_lens + msg->first,
            msg->n, msg->message_id, g->out, sizeof(g->out), &msg->len);
        if (rc != 0) {
            log_warn("discovery: cannot build a Probe: %s", pccrd_strerror(rc));
            goto fail;
        }
        if (!(msg->buf = malloc(msg->len)))
            goto fail;
        memcpy(msg->buf, g->out, msg->len);
    }
    if (probe_send(p) == 0) {
        log_debug("discovery: no Probe could be sent");
        goto fail;
    }
    p->next = g->probes;
    if (g->probes)
        g->probes->prev = p;
    g->probes = p;
    g->nprobes++;
    unsigned repeat = window_ms / 3 < DISCO_REPEAT_MAX_MS ? window_ms / 3 : DISCO_REPEAT_MAX_MS;
    struct timeval tv = {.tv_sec = window_ms / 1000, .tv_usec = (window_ms % 1000) * 1000};
    struct timeval rv = {.tv_sec = 0, .tv_usec = (suseconds_t)repeat * 1000};
    evtimer_add(p->done_ev, &tv);
    if (repeat > 0)
        evtimer_add(p->repeat_ev, &rv);
    return p;
fail:
    probe_free(p);
    return NULL;
}

void discovery_probe_cancel(struct discovery_probe *p)
{
    if (!p || p->cancelled)
        return;
    p->cancelled = true;
    probe_unlink(p->disco, p);
    if (!p->busy)
        probe_free(p);
    else {
        /* Inside on_match: freed when it returns. No timer may fire meanwhile. */
        evtimer_del(p->repeat_ev);
        evtimer_del(p->done_ev);
    }
}

/* The message of an outstanding probe a ProbeMatch relates to. */
static struct discovery_probe *probe_by_message(struct disco *g, const char *relates_to,
    size_t *msg_index)
{
    for (struct discovery_probe *p = g->probes; p; p = p->next)
        for (size_t m = 0; m < p->nmsgs; m++)
            if (strcmp(p->msgs[m].message_id, relates_to) == 0) {
                *msg_index = m;
                return p;
            }
    return NULL;
}

/* Reports one (peer, ID) of p unless reported already; false once p is cancelled. */
static bool report(struct discovery_probe *p, struct discovery_match *m, size_t idx)
{
    for (size_t i = 0; i < p->nreported; i++)
        if (p->reported[i].idx == idx &&
            memcmp(&p->reported[i].peer, &m->peer, sizeof(m->peer)) == 0)
            return true;
    if (p->nreported == DISCO_MATCHES_MAX)
        return true; /* enough peers for this probe */
    p->reported[p->nreported].peer = m->peer;
    p->reported[p->nreported].idx = idx;
    p->nreported++;
    heard_note(p->disco, p->ids[idx], p->id_lens[idx], m->block_count);
    memcpy(m->segment_id, p->ids[idx], p->id_lens[idx]);
    m->segment_id_len = p->id_lens[idx];
    p->busy++;
    p->on_match(p->arg, m);
    p->busy--;
    if (p->cancelled) {
        if (!p->busy)
            probe_free(p);
        return false;
    }
    return true;
}

static void handle_match(struct disco *g, const uint8_t *buf, size_t len,
    const struct sockaddr_storage *from, socklen_t from_len, unsigned ifindex)
{
    struct pccrd_match *pm = &g->match;
    int rc = pccrd_match_parse((const char *)buf, len, pm);
    if (rc != 0) {
        log_malformed(g, pccrd_strerror(rc), from);
        return;
    }
    size_t mi;
    struct discovery_probe *p = probe_by_message(g, pm->relates_to, &mi);
    if (!p) {
        log_debug("discovery: a ProbeMatch for no Probe of ours outstanding");
        return;
    }
    struct disco_addr src;
    addr_from_sockaddr(from, &src);
    char host[INET6_ADDRSTRLEN];
    format_addr(&src, host, sizeof(host));
    struct disco_iface *ifc = iface_by_index(g, ifindex);
    if (!ifc || !from_local_subnet(ifc, &src)) {
        log_debug("discovery: ProbeMatch from %s dropped: not on the subnet of the interface "
                  "it came in on",
            host);
        return;
    }
    for (unsigned i = 0; i < g->nifaces; i++)
        for (unsigned k = 0; k < g->ifaces[i].naddrs; k++)
            if (addr_equal(&g->ifaces[i].addrs[k], &src)) {
                log_debug("discovery: ProbeMatch from %s dropped: this host", host);
                return;
            }
    if ((int)pm->form != p->version) {
        log_debug("discovery: ProbeMatch from %s dropped: V%d form for a V%d Probe", host,
            (int)pm->form, p->version);
        return;
    }
    /* The peer is the ProbeMatch's source with the port of its first XAddrs entry: never
     * another host than the one that answered, whatever XAddrs names. */
    struct discovery_match m;
    memset(&m, 0, sizeof(m));
    memcpy(&m.peer, from, from_len);
    m.peer_len = from_len;
    if (from->ss_family == AF_INET)
        ((struct sockaddr_in *)&m.peer)->sin_port = htons(pm->xaddrs[0].port);
    else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&m.peer;
        s6->sin6_port = htons(pm->xaddrs[0].port);
        if (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr))
            s6->sin6_scope_id = ifindex;
    }
    m.version = (int)pm->form;
    const struct disco_message *msg = &p->msgs[mi];
    if (pm->form == PCCRD_FORM_V1) {
        /* V1: the IDs held, each with its BlockCount; zero counts are no match (as iPXE). */
        for (size_t k = 0; k < pm->n_ids; k++) {
            if (pm->block_counts[k] == 0)
                continue;
            for (size_t i = msg->first; i < msg->first + msg->n; i++) {
                if (p->id_lens[i] != pm->id_len[k] ||
                    memcmp(p->ids[i], pm->ids[k], pm->id_len[k]) != 0)
                    continue;
                m.block_count = pm->block_counts[k];
                if (!report(p, &m, i))
                    return;
            }
        }
        return;
    }
    /* V2: two bits per ID of the Probe, in its order (§4.4): have, have all. The match
     * carries this ID's pair as one byte, 0x80 = have, 0x40 = all; block_count 1 if all. */
    for (size_t i = 0; i < msg->n; i++) {
        bool have, complete;
        pccrd_bitmap_get(pm->bitmap, pm->bitmap_len, i, &have, &complete);
        if (!have)
            continue;
        uint8_t one = (uint8_t)(0x80 | (complete ? 0x40 : 0));
        m.bitmap = &one;
        m.bitmap_len = 1;
        m.block_count = complete ? 1 : 0;
        if (!report(p, &m, msg->first + i))
            return;
    }
}

static void on_send_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct disco *g = arg;
    struct sockaddr_storage from;
    socklen_t from_len;
    unsigned ifindex;
    for (int turn = 0; turn < 64; turn++) {
        ssize_t n = recv_datagram(g, fd, &from, &from_len, &ifindex);
        if (n < 0)
            return;
        handle_match(g, g->rxbuf, (size_t)n, &from, from_len, ifindex);
    }
}

/* ---- flash crowd ---- */

unsigned discovery_recent_probers(struct daemon *d, const uint8_t *id, size_t id_len,
    unsigned seconds)
{
    struct disco *g = d->discovery;
    if (!g || id_len > PEER_ID_MAX)
        return 0;
    uint64_t now = now_ms(), since = now > seconds * 1000ull ? now - seconds * 1000ull : 0;
    struct disco_addr distinct[16];
    unsigned count = 0;
    for (unsigned k = 0; k < g->nprobers; k++) {
        const struct disco_prober *p =
            &g->probers[(g->probers_next + DISCO_PROBERS_LOG - 1 - k) % DISCO_PROBERS_LOG];
        if (p->at_ms < since)
            break; /* the log is in time order: everything older follows */
        if (p->id_len != id_len || memcmp(p->id, id, id_len) != 0)
            continue;
        bool dup = false;
        for (unsigned i = 0; i < count && !dup; i++)
            dup = addr_equal(&distinct[i], &p->peer);
        if (!dup) {
            distinct[count++] = p->peer;
            if (count == sizeof(distinct) / sizeof(distinct[0]))
                break; /* enough to say "a crowd" */
        }
    }
    return count;
}

/* ---- set-up ---- */

static int open_rx_socket(struct disco *g, int family)
{
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_warn("discovery: no IPv%c socket: %s", family == AF_INET ? '4' : '6', strerror(errno));
        return -1;
    }
    int one = 1, zero = 0;
    bool ok = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0;
    if (family == AF_INET) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(DISCO_PORT)};
        ok = ok && setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) == 0 &&
            setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &zero, sizeof(zero)) == 0 &&
            bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    } else {
        struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(DISCO_PORT)};
        ok = ok && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one)) == 0 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &zero, sizeof(zero)) == 0 &&
            bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    }
    struct event *ev = ok ? event_new(g->d->base, fd, EV_READ | EV_PERSIST, on_rx_readable, g)
                          : NULL;
    if (!ev || event_add(ev, NULL) != 0) {
        log_warn("discovery: cannot listen on UDP port %d (IPv%c): %s", DISCO_PORT,
            family == AF_INET ? '4' : '6', strerror(errno));
        if (ev)
            event_free(ev);
        close(fd);
        return -1;
    }
    if (family == AF_INET)
        g->rx4 = fd, g->rx4_ev = ev;
    else
        g->rx6 = fd, g->rx6_ev = ev;
    return 0;
}

int discovery_init(struct daemon *d)
{
    if (d->cfg.mode != MODE_DISTRIBUTED)
        return 0;
    struct disco *g = calloc(1, sizeof(*g));
    if (!g || !(g->rxbuf = malloc(DISCO_DATAGRAM_MAX))) {
        free(g);
        log_error("discovery: out of memory");
        return -1;
    }
    d->discovery = g;
    g->d = d;
    g->rx4 = g->rx6 = -1;
    random_bytes(&g->rng, sizeof(g->rng));
    g->rng |= 1;
    g->instance_id = (uint64_t)time(NULL); /* §4.2: grows on every restart, as Windows 7's */
    new_message_id(g->endpoint, sizeof(g->endpoint));
    g->all.tokens = DISCO_ANSWER_BURST;
    g->all.at_ms = now_ms();
    if (!d->cfg.ipv4 && !d->cfg.ipv6) {
        log_error("discovery: ipv4 and ipv6 are both off: distributed mode has no network");
        return -1;
    }
    if (d->cfg.ipv4)
        open_rx_socket(g, AF_INET);
    if (d->cfg.ipv6)
        open_rx_socket(g, AF_INET6);
    if (g->rx4 < 0 && g->rx6 < 0) {
        log_error("discovery: cannot listen for Probes on UDP port %d", DISCO_PORT);
        return -1;
    }
    if (!(g->rescan_ev = event_new(d->base, -1, EV_PERSIST, on_rescan, g))) {
        log_error("discovery: out of memory");
        return -1;
    }
    struct timeval tv = {.tv_sec = DISCO_RESCAN_MS / 1000, .tv_usec = 0};
    event_add(g->rescan_ev, &tv);
    rescan(g);
    if (g->nifaces == 0)
        log_warn("discovery: no interface to use yet (up, multicast, with an address%s); "
                 "looking again every %d s",
            d->cfg.interfaces[0] ? ", named in interfaces" : "", DISCO_RESCAN_MS / 1000);
    return 0;
}

void discovery_free(struct daemon *d)
{
    struct disco *g = d->discovery;
    if (!g)
        return;
    while (g->probes) {
        struct discovery_probe *p = g->probes;
        probe_unlink(g, p);
        probe_free(p);
    }
    while (g->answers)
        answer_free(g, g->answers);
    for (unsigned i = 0; i < g->nifaces; i++)
        iface_close(&g->ifaces[i]);
    if (g->rescan_ev)
        event_free(g->rescan_ev);
    if (g->rx4_ev)
        event_free(g->rx4_ev);
    if (g->rx6_ev)
        event_free(g->rx6_ev);
    if (g->rx4 >= 0)
        close(g->rx4);
    if (g->rx6 >= 0)
        close(g->rx6);
    free(g->rxbuf);
    free(g);
    d->discovery = NULL;
}

size_t discovery_probers(struct daemon *d, struct discovery_prober_info *out, size_t max)
{
    struct disco *g = d->discovery;
    size_t n = 0;
    for (unsigned i = 0; g && i < g->npeers && n < max; i++) {
        if (!g->peers[i].probes)
            continue;
        memset(&out[n], 0, sizeof(out[n]));
        out[n].addr = g->peers[i].peer;
        out[n].probes = g->peers[i].probes;
        out[n].last_seen = g->peers[i].last_seen;
        n++;
    }
    return n;
}
