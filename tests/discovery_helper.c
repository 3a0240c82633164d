/* SPDX-License-Identifier: MIT */
/*
 * discovery_helper.c - daemon/discovery.c alone on an event loop, for test_discovery.py: a
 * struct daemon in mode distributed with discovery_init and nothing else, a stub
 * peer_serve_segment answering for the segments named with --hold, and commands on stdin:
 *   probe V WINDOW_MS HEX...   discovery_probe_start; prints "match ..." lines, then "done"
 *   probec V WINDOW_MS HEX...  the same, cancelling from inside the first on_match; prints
 *                              "cancelled" then, once the window is past, "window-passed"
 *   probers HEX SECONDS        prints "probers N" (discovery_recent_probers)
 *   quit
 * Options: --port P (peer_port), --hold HEX:VERSION:HELD:TOTAL, --no-ipv4, --no-ipv6,
 * --interfaces LIST. Prints "ready" once discovery is up.
 */
#include <ctype.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "log.h"
#include "peer.h"

#define HOLD_MAX 16

struct hold {
    uint8_t id[PEER_ID_MAX];
    size_t id_len;
    struct peer_segment_info info;
};
static struct hold holds[HOLD_MAX];
static size_t nholds;
static struct daemon dmn;
static struct event *stdin_ev, *after_ev;
static char line[8192];
static size_t line_len;

static size_t unhex(const char *s, size_t slen, uint8_t *out, size_t cap)
{
    if (slen % 2 || slen / 2 > cap)
        return 0;
    for (size_t i = 0; i < slen / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return 0;
        out[i] = (uint8_t)v;
    }
    return slen / 2;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02X", p[i]);
    out[2 * n] = 0;
}

bool peer_serve_segment(struct daemon *d, const uint8_t *id, size_t id_len,
    struct peer_segment_info *out)
{
    (void)d;
    for (size_t i = 0; i < nholds; i++)
        if (holds[i].id_len == id_len && memcmp(holds[i].id, id, id_len) == 0) {
            *out = holds[i].info;
            return true;
        }
    return false;
}

struct run {
    bool cancel_in_match;
    struct discovery_probe *p;
};

static void on_match(void *arg, const struct discovery_match *m)
{
    struct run *r = arg;
    char host[INET6_ADDRSTRLEN] = "?", id[2 * PEER_ID_MAX + 1];
    unsigned port = 0;
    if (m->peer.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&m->peer;
        inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
        port = ntohs(s->sin_port);
    } else {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&m->peer;
        inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
        port = ntohs(s->sin6_port);
    }
    hex(m->segment_id, m->segment_id_len, id);
    printf("match %s %s %u %d %u %02x\n", id, host, port, m->version, m->block_count,
        m->bitmap && m->bitmap_len ? m->bitmap[0] : 0);
    if (r->cancel_in_match && r->p) {
        discovery_probe_cancel(r->p);
        discovery_probe_cancel(r->p); /* twice: the second does nothing */
        r->p = NULL;
        printf("cancelled\n");
        fflush(stdout);
        free(r); /* no callback runs after the cancel */
        return;
    }
    fflush(stdout);
}

static void on_done(void *arg)
{
    struct run *r = arg;
    if (r->p) /* cancelling from on_done is harmless */
        discovery_probe_cancel(r->p);
    printf("done\n");
    fflush(stdout);
    free(r);
}

static void on_after(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    free(arg);
    printf("window-passed\n");
    fflush(stdout);
}

static void command(char *cmd)
{
    char *argv[300];
    int argc = 0;
    for (char *t = strtok(cmd, " \t\r"); t && argc < 300; t = strtok(NULL, " \t\r"))
        argv[argc++] = t;
    if (argc == 0)
        return;
    if (strcmp(argv[0], "quit") == 0) {
        event_base_loopbreak(dmn.base);
        return;
    }
    if (strcmp(argv[0], "probers") == 0 && argc == 3) {
        uint8_t id[PEER_ID_MAX];
        size_t n = unhex(argv[1], strlen(argv[1]), id, sizeof(id));
        printf("probers %u\n", discovery_recent_probers(&dmn, id, n, (unsigned)atoi(argv[2])));
        fflush(stdout);
        return;
    }
    if ((strcmp(argv[0], "probe") == 0 || strcmp(argv[0], "probec") == 0) && argc >= 4) {
        static uint8_t ids[256][PEER_ID_MAX];
        const uint8_t *idp[256];
        size_t lens[256], n = 0;
        for (int i = 3; i < argc && n < 256; i++, n++) {
            lens[n] = unhex(argv[i], strlen(argv[i]), ids[n], PEER_ID_MAX);
            idp[n] = ids[n];
        }
        struct run *r = calloc(1, sizeof(*r));
        r->cancel_in_match = argv[0][5] == 'c';
        unsigned window = (unsigned)atoi(argv[2]);
        r->p = discovery_probe_start(&dmn, atoi(argv[1]), idp, lens, n, window, on_match, on_done,
            r);
        if (!r->p) {
            free(r);
            printf("probe-null\n");
        } else if (r->cancel_in_match) {
            struct timeval tv = {.tv_sec = (window + 300) / 1000,
                .tv_usec = ((window + 300) % 1000) * 1000};
            after_ev = evtimer_new(dmn.base, on_after, NULL);
            evtimer_add(after_ev, &tv);
        }
        fflush(stdout);
        return;
    }
    printf("unknown command\n");
    fflush(stdout);
}

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
    (void)what, (void)arg;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) {
        event_base_loopbreak(dmn.base);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            line[line_len] = 0;
            command(line);
            line_len = 0;
        } else if (line_len < sizeof(line) - 1) {
            line[line_len++] = buf[i];
        }
    }
}

int main(int argc, char **argv)
{
    config_defaults(&dmn.cfg);
    dmn.cfg.mode = MODE_DISTRIBUTED;
    log_set_level(LOG_LVL_DEBUG);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            dmn.cfg.peer_port = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-ipv4") == 0)
            dmn.cfg.ipv4 = false;
        else if (strcmp(argv[i], "--no-ipv6") == 0)
            dmn.cfg.ipv6 = false;
        else if (strcmp(argv[i], "--interfaces") == 0 && i + 1 < argc)
            snprintf(dmn.cfg.interfaces, sizeof(dmn.cfg.interfaces), "%s", argv[++i]);
        else if (strcmp(argv[i], "--hold") == 0 && i + 1 < argc && nholds < HOLD_MAX) {
            struct hold *h = &holds[nholds++];
            char *spec = argv[++i], *colon = strchr(spec, ':');
            unsigned v, held, total;
            if (!colon || sscanf(colon, ":%u:%u:%u", &v, &held, &total) != 3 ||
                !(h->id_len = unhex(spec, (size_t)(colon - spec), h->id, PEER_ID_MAX))) {
                fprintf(stderr, "bad --hold %s\n", spec);
                return 2;
            }
            h->info.version = (int)v;
            h->info.blocks_held = held;
            h->info.total_blocks = total;
            for (unsigned b = 0; b < held && b < PEER_SEGMENT_BLOCKS_MAX; b++)
                h->info.bitmap[b / 8] |= (uint8_t)(1u << (b % 8));
        } else {
            fprintf(stderr,
                "usage: discovery_helper [--port P] [--hold HEX:V:HELD:TOTAL]... "
                "[--no-ipv4] [--no-ipv6] [--interfaces LIST]\n");
            return 2;
        }
    }
    if (!(dmn.base = event_base_new()) || discovery_init(&dmn) != 0)
        return 1;
    stdin_ev = event_new(dmn.base, 0, EV_READ | EV_PERSIST, on_stdin, NULL);
    event_add(stdin_ev, NULL);
    printf("ready\n");
    fflush(stdout);
    event_base_dispatch(dmn.base);
    discovery_free(&dmn);
    event_free(stdin_ev);
    if (after_ev)
        event_free(after_ev);
    event_base_free(dmn.base);
    return 0;
}
