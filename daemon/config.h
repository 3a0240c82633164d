/* SPDX-License-Identifier: MIT */
/*
 * config.h - peerdistd settings: built-in defaults, then the INI file, then
 * the environment, then command-line flags (each overrides the one before).
 * The keys are documented in docs/peerdistd.conf.5.md.
 */
#ifndef PEERDIST_CONFIG_H
#define PEERDIST_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define CONFIG_DEFAULT_PATH "/etc/peerdist/peerdistd.conf"
#define CONFIG_DEFAULT_SOCKET "/run/peerdist/peerdistd.sock"
#define CONFIG_DEFAULT_DB "/var/cache/peerdist/cache.db"
#define CONFIG_DEFAULT_STATE_DIR "/var/lib/peerdist"
#define CONFIG_DEFAULT_MAX_CONNECTIONS 1024
#define CONFIG_MAX_CONNECTIONS_LIMIT 65536
/* Bytes kept free on the cache filesystem for deletes (disk.h); 0 turns the reserve off. */
#define CONFIG_DEFAULT_DISK_RESERVE (64ull * 1024 * 1024)
/* Bytes of freed data files kept to be written over by new segments (blockstore.h, spare
 * files), at most an eighth of the cache limit; 0 keeps none. */
#define CONFIG_DEFAULT_SPARE_POOL (256ull * 1024 * 1024)
#define CONFIG_DEFAULT_MAX_CONNECTIONS_PER_UID 256
#define CONFIG_DEFAULT_HELLO_TIMEOUT 10     /* seconds from accept to a complete Hello */
#define CONFIG_DEFAULT_HELLO_IDLE_TIMEOUT 5 /* seconds silent before the Hello */
#define CONFIG_MAX_TIMEOUT 3600
/* The cache's bounds (docs/cache.md): cache_size is a percent of the cache filesystem or a
 * byte count of at least CONFIG_CACHE_SIZE_MIN (so a new 32 MiB segment never evicts itself);
 * max_age is how long a segment stays after its last use (Windows' SegmentTTL is 28 days). */
#define CONFIG_DEFAULT_CACHE_SIZE "5%"
#define CONFIG_CACHE_SIZE_MIN (64ull * 1024 * 1024)
#define CONFIG_DEFAULT_MAX_AGE "28d"
#define CONFIG_MAX_AGE_MAX (100ull * 365 * 86400) /* a century: no overflow in timestamps */
/* Distributed mode (docs/peerdistd.conf.5.md): the MS-PCCRR port (Windows' ConnectPort and
 * ListenPort are 80), and the interface list ("" = every multicast-capable interface). */
#define CONFIG_DEFAULT_PEER_PORT 80
#define CONFIG_INTERFACES_MAX 256 /* bytes of the interfaces value, NUL included */

enum service_mode {
    MODE_DISABLED,
    MODE_LOCAL,
    MODE_DISTRIBUTED,
    MODE_HOSTED_CLIENT,
    MODE_HOSTED_SERVER,
};

/* Where a cache setting came from (peerdistctl cache shows it). */
enum config_source {
    CONFIG_SRC_DEFAULT,
    CONFIG_SRC_FILE,
    CONFIG_SRC_OVERRIDE, /* <state_dir>/cache.conf, written by CacheSet (evict.h) */
};

/* cache_size as written: a percent of the cache filesystem, or bytes. */
struct config_cache_size {
    bool percent;
    unsigned pct;   /* 1..100 when percent */
    uint64_t bytes; /* >= CONFIG_CACHE_SIZE_MIN otherwise */
    char text[32];  /* as written ("5%", "512M") */
    enum config_source source;
};

struct config_max_age {
    uint64_t seconds; /* > 0 */
    char text[32];    /* as written ("28d") */
    enum config_source source;
};

struct config {
    char config_path[PATH_MAX];
    bool config_explicit; /* named by flag or environment: must exist */
    char socket_path[PATH_MAX];
    char db_path[PATH_MAX];
    char state_dir[PATH_MAX];
    enum service_mode mode;
    enum log_level log_level;
    unsigned max_connections;
    uint64_t disk_reserve;
    uint64_t spare_pool;
    unsigned max_connections_per_uid;
    unsigned hello_timeout, hello_idle_timeout; /* seconds */
    size_t memory_budget;                       /* bytes; 0 = the default (budget.h) */
    struct config_cache_size cache_size;
    struct config_max_age max_age;
    uint64_t uid_quota; /* bytes a uid's labels may keep; 0 = no quota */
    /* Distributed mode. peer_port, interfaces, ipv4 and ipv6 need a restart; serve and
     * serve_rate_limit follow a reload (SIGHUP). */
    uint16_t peer_port;                     /* MS-PCCRR HTTP port, 1..65535 (default 80) */
    char interfaces[CONFIG_INTERFACES_MAX]; /* "eth0,eth1"; "" = every multicast-capable one */
    bool ipv4, ipv6;                        /* discovery and retrieval over each family */
    bool serve;                             /* false: fetch from peers, serve nothing */
    uint64_t serve_rate_limit;              /* upload bytes per second in all; 0 = unlimited */
};

void config_defaults(struct config *cfg);
/*
 * Reads cfg->config_path over cfg. Returns 0, or -1 with a message in err naming the file,
 * the line and what is wrong there. Lines may be of any length (libinih's own limit is 199
 * characters: longer ones are handed to it shortened, their value kept here).
 */
int config_load_file(struct config *cfg, char *err, size_t errlen);
/* What no single key can say wrong: mode distributed with ipv4 and ipv6 both off. 0, or -1 with
 * a message in err (config_load_file calls it; main.c again after the flags). */
int config_check(const struct config *cfg, char *err, size_t errlen);
/* Applies PEERDIST_SOCKET, PEERDIST_DB, PEERDIST_STATE_DIR. */
void config_apply_env(struct config *cfg);

const char *config_mode_name(enum service_mode mode);
int config_parse_mode(const char *name, enum service_mode *out);
/* Whether this peerdistd runs the mode (the network modes are named but not built yet). */
bool config_mode_implemented(enum service_mode mode);
/* A byte count: digits with an optional binary suffix K, M, G or T (1024-based). */
int config_parse_bytes(const char *text, uint64_t *out);
/*
 * cache_size: "N%" (1..100) or a byte count of at least CONFIG_CACHE_SIZE_MIN. 0, or -1 with
 * what is wrong in why (naming the key).
 */
int config_parse_cache_size(const char *text, struct config_cache_size *out, char *why,
    size_t whylen);
/* max_age: a positive number with an optional suffix s, m, h or d (seconds without). */
int config_parse_max_age(const char *text, struct config_max_age *out, char *why, size_t whylen);
/*
 * The byte limit cache_size stands for: a percent of the filesystem holding db_path's
 * directory (statvfs), never below CONFIG_CACHE_SIZE_MIN; the bytes as written otherwise.
 */
uint64_t config_cache_limit(const struct config_cache_size *cs, const char *db_path);
const char *config_source_name(enum config_source src);
/* yes/no (also true/false, on/off, 1/0): 0, or -1 if the text is none of those. */
int config_parse_bool(const char *text, bool *out);
/*
 * interfaces: comma-separated interface names (spaces around the commas allowed), each
 * 1..15 characters without '/', ':' or white space, no name twice; "" = every interface.
 * Written to out (the names joined by ',', at most CONFIG_INTERFACES_MAX bytes). 0, or -1 with
 * what is wrong in why.
 */
int config_parse_interfaces(const char *text, char *out, size_t outlen, char *why, size_t whylen);
/*
 * Calls fn for each name in a normalized interfaces value (as config_parse_interfaces writes
 * it); stops at the first nonzero return and returns it, else 0.
 */
int config_each_interface(const char *interfaces, int (*fn)(void *arg, const char *name),
    void *arg);

#endif
