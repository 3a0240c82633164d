/* SPDX-License-Identifier: MIT */
/*
 * main.c - peerdistd start-up and shut-down: options, configuration, the
 * database, the socket, signals (TERM/INT stop cleanly, HUP re-reads the
 * configuration file's mode, log level and the cache's bounds) and the event loop.
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "evict.h"
#include "flush.h"
#include "fsutil.h"
#include "log.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: peerdistd [options]\n"
        "  -c, --config PATH     configuration file (default %s; env PEERDIST_CONFIG)\n"
        "  -s, --socket PATH     Unix socket to listen on (default %s; env PEERDIST_SOCKET)\n"
        "  -d, --db PATH         cache database (default %s; env PEERDIST_DB)\n"
        "      --state-dir PATH  state directory (default %s; env PEERDIST_STATE_DIR)\n"
        "  -m, --mode MODE       disabled | local | distributed (hosted-client, hosted-server:\n"
        "                        not implemented yet, refused)\n"
        "  -l, --log-level LVL   error | warn | info | debug (default info)\n"
        "  -V, --version         print the version and exit\n"
        "  -h, --help            this text\n"
        "peerdistd runs in the foreground and logs to stderr; see peerdistd(8).\n",
        CONFIG_DEFAULT_PATH, CONFIG_DEFAULT_SOCKET, CONFIG_DEFAULT_DB, CONFIG_DEFAULT_STATE_DIR);
}

struct flags {
    const char *config, *socket, *db, *state_dir, *mode, *log_level;
};

static int parse_flags(int argc, char **argv, struct flags *fl)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"socket", required_argument, NULL, 's'},
        {"db", required_argument, NULL, 'd'},
        {"state-dir", required_argument, NULL, 'S'},
        {"mode", required_argument, NULL, 'm'},
        {"log-level", required_argument, NULL, 'l'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:s:d:m:l:Vh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': fl->config = optarg; break;
        case 's': fl->socket = optarg; break;
        case 'd': fl->db = optarg; break;
        case 'S': fl->state_dir = optarg; break;
        case 'm': fl->mode = optarg; break;
        case 'l': fl->log_level = optarg; break;
        case 'V': printf("peerdistd %s\n", PEERDIST_SOFTWARE_VERSION); exit(0);
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "peerdistd: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* Precedence: flag > environment > file > built-in default (DESIGN.md, Configuration). */
static int build_config(const struct flags *fl, struct config *cfg)
{
    char err[512];
    config_defaults(cfg);
    const char *env_config = getenv("PEERDIST_CONFIG");
    const char *path = fl->config ? fl->config : (env_config && *env_config ? env_config : NULL);
    if (path) {
        snprintf(cfg->config_path, sizeof(cfg->config_path), "%s", path);
        cfg->config_explicit = true;
    }
    if (config_load_file(cfg, err, sizeof(err)) != 0) {
        log_error("configuration: %s", err);
        return -1;
    }
    config_apply_env(cfg);
    if (fl->socket)
        snprintf(cfg->socket_path, sizeof(cfg->socket_path), "%s", fl->socket);
    if (fl->db)
        snprintf(cfg->db_path, sizeof(cfg->db_path), "%s", fl->db);
    if (fl->state_dir)
        snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s", fl->state_dir);
    if (fl->mode && config_parse_mode(fl->mode, &cfg->mode) != 0) {
        log_error("--mode: '%s' is not a mode", fl->mode);
        return -1;
    }
    if (fl->log_level && log_parse_level(fl->log_level, &cfg->log_level) != 0) {
        log_error("--log-level: '%s' is not a level", fl->log_level);
        return -1;
    }
    if (config_check(cfg, err, sizeof(err)) != 0) {
        log_error("configuration: %s", err);
        return -1;
    }
    /* Saying so beats running a network mode silently as local. */
    if (!config_mode_implemented(cfg->mode)) {
        log_error("mode %s is not implemented in peerdistd %s (it runs disabled, local and "
                  "distributed); refusing to start",
            config_mode_name(cfg->mode), PEERDIST_SOFTWARE_VERSION);
        return -1;
    }
    return 0;
}

/* The systemd notify protocol is one datagram; no libsystemd needed. */
static void sd_notify_msg(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof(sun.sun_path))
        return;
    memcpy(sun.sun_path, path, len);
    if (sun.sun_path[0] == '@')
        sun.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun,
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    close(fd);
}

/* Every local user may use the API (DESIGN.md, Identity): say so when the socket's directory
 * (the database directory, say, which is 0750 when the daemon makes it) keeps them out. */
static void warn_unreachable_socket(const struct daemon *d)
{
    char dir[PATH_MAX];
    struct stat st;
    fs_dirname(d->cfg.socket_path, dir, sizeof(dir));
    if (stat(dir, &st) == 0 && !(st.st_mode & S_IXOTH))
        log_warn("the socket's directory %s is mode %04o: other users cannot reach %s (give it "
                 "o+x, or put the socket in a directory of its own)",
            dir, (unsigned)(st.st_mode & 07777), d->cfg.socket_path);
}

/* Distributed mode's keys on a reload: serve and serve_rate_limit take effect (the serving
 * code reads them from d->cfg for each request); the sockets' keys wait for a restart. */
static void reload_peer_keys(struct daemon *d, const struct config *fresh)
{
    if (fresh->serve != d->cfg.serve)
        log_info("reload: serve %s -> %s", d->cfg.serve ? "yes" : "no",
            fresh->serve ? "yes" : "no");
    if (fresh->serve_rate_limit != d->cfg.serve_rate_limit)
        log_info("reload: serve_rate_limit %llu -> %llu bytes/s",
            (unsigned long long)d->cfg.serve_rate_limit,
            (unsigned long long)fresh->serve_rate_limit);
    d->cfg.serve = fresh->serve;
    d->cfg.serve_rate_limit = fresh->serve_rate_limit;
    if (fresh->peer_port != d->cfg.peer_port || strcmp(fresh->interfaces, d->cfg.interfaces) != 0 ||
        fresh->ipv4 != d->cfg.ipv4 || fresh->ipv6 != d->cfg.ipv6)
        log_warn("reload: peer_port, interfaces, ipv4 and ipv6 take effect at the next start "
                 "(still %u, '%s', ipv4 %s, ipv6 %s)",
            d->cfg.peer_port, d->cfg.interfaces, d->cfg.ipv4 ? "yes" : "no",
            d->cfg.ipv6 ? "yes" : "no");
}

static void reload_config(struct daemon *d)
{
    struct config fresh;
    char err[512];
    config_defaults(&fresh);
    snprintf(fresh.config_path, sizeof(fresh.config_path), "%s", d->cfg.config_path);
    fresh.config_explicit = d->cfg.config_explicit;
    if (config_load_file(&fresh, err, sizeof(err)) != 0) {
        log_error("reload: %s; keeping the running configuration", err);
        return;
    }
    log_set_level(fresh.log_level);
    d->cfg.log_level = fresh.log_level;
    evict_reload(d, &fresh); /* cache_size, max_age, uid_quota (an override still wins) */
    flush_evict_kick(d);
    reload_peer_keys(d, &fresh);
    if (!config_mode_implemented(fresh.mode)) {
        log_error("reload: mode %s is not implemented in peerdistd %s; keeping mode %s",
            config_mode_name(fresh.mode), PEERDIST_SOFTWARE_VERSION, config_mode_name(d->cfg.mode));
    } else if (fresh.mode != d->cfg.mode &&
        (fresh.mode == MODE_DISTRIBUTED || d->cfg.mode == MODE_DISTRIBUTED)) {
        /* Discovery's sockets and the peer listener are set up at start only. */
        log_warn("reload: mode %s -> %s needs a restart; keeping mode %s",
            config_mode_name(d->cfg.mode), config_mode_name(fresh.mode),
            config_mode_name(d->cfg.mode));
    } else if (fresh.mode != d->cfg.mode) {
        log_info("reload: mode %s -> %s", config_mode_name(d->cfg.mode),
            config_mode_name(fresh.mode));
        d->cfg.mode = fresh.mode;
        dispatch_broadcast_status(d);
    }
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    if (sig == SIGHUP) {
        log_info("SIGHUP: re-reading %s", d->cfg.config_path);
        reload_config(d);
        return;
    }
    log_info("%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    sd_notify_msg("STOPPING=1");
    d->stopping = true;
    event_base_loopbreak(d->base);
}

/* Allocations from this size on are mapped on their own (larger than any data-path buffer). */
#define MALLOC_MMAP_MIN (4 * 1024 * 1024)
/* Free memory at the top of a heap kept for reuse before glibc gives it back. */
#define MALLOC_KEEP_BYTES (32 * 1024 * 1024)

int main(int argc, char **argv)
{
    struct flags fl = {0};
    if (parse_flags(argc, argv, &fl) != 0)
        return 2;
    static struct daemon d;
    if (build_config(&fl, &d.cfg) != 0)
        return 1;
    log_set_level(d.cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    /*
     * The data path allocates and frees buffers of up to 1 MiB per call (AddData's copy, a
     * read's bytes). glibc's defaults mmap some of them and trim the heap after others, so
     * each call faulted fresh pages in again (9 % of the daemon's CPU in AddData). Kept in
     * the heap instead: free memory at the top of a heap is given back past
     * MALLOC_KEEP_BYTES; freed buffers below live blocks stay with the process for reuse, so
     * the resident size can stay near its peak of data-path buffers after a burst.
     */
    mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_MIN);
    mallopt(M_TRIM_THRESHOLD, MALLOC_KEEP_BYTES);

    int rc = 1;
    struct event *signals[3] = {NULL};
    if (daemon_init(&d) != 0)
        goto out;
    const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        signals[i] = evsignal_new(d.base, sigs[i], signal_cb, &d);
        if (!signals[i] || evsignal_add(signals[i], NULL) != 0)
            goto out;
    }
    if (server_listen(&d) != 0)
        goto out;
    warn_unreachable_socket(&d);
    log_info("peerdistd %s listening on %s, database %s, mode %s", PEERDIST_SOFTWARE_VERSION,
        d.cfg.socket_path, d.cfg.db_path, config_mode_name(d.cfg.mode));
    sd_notify_msg("READY=1");
    event_base_dispatch(d.base);
    daemon_stop(&d);
    rc = 0;
out:;
    /*
     * Stopping already: a second TERM or INT while the rest shuts down must not kill it.
     * Freeing a signal event puts back the disposition from before it was added (SIG_DFL),
     * so SIG_IGN goes in after the events are freed, with the two held off meanwhile.
     */
    sigset_t stop_sigs, old_mask;
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGTERM);
    sigaddset(&stop_sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_sigs, &old_mask);
    for (int i = 0; i < 3; i++)
        if (signals[i])
            event_free(signals[i]);
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    daemon_free(&d);
    if (rc == 0)
        log_info("stopped; database closed");
    return rc;
}
