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
#define CONFIG_DEFAULT_MAX_CONNECTIONS_PER_UID 256
#define CONFIG_DEFAULT_HELLO_TIMEOUT 10     /* seconds from accept to a complete Hello */
#define CONFIG_DEFAULT_HELLO_IDLE_TIMEOUT 5 /* seconds silent before the Hello */
#define CONFIG_MAX_TIMEOUT 3600

enum service_mode {
    MODE_DISABLED,
    MODE_LOCAL,
    MODE_DISTRIBUTED,
    MODE_HOSTED_CLIENT,
    MODE_HOSTED_SERVER,
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
    unsigned max_connections_per_uid;
    unsigned hello_timeout, hello_idle_timeout; /* seconds */
    size_t memory_budget;                       /* bytes; 0 = the default (budget.h) */
};

void config_defaults(struct config *cfg);
/*
 * Reads cfg->config_path over cfg. Returns 0, or -1 with a message in err naming the file,
 * the line and what is wrong there. Lines may be of any length (libinih's own limit is 199
 * characters: longer ones are handed to it shortened, their value kept here).
 */
int config_load_file(struct config *cfg, char *err, size_t errlen);
/* Applies PEERDIST_SOCKET, PEERDIST_DB, PEERDIST_STATE_DIR. */
void config_apply_env(struct config *cfg);

const char *config_mode_name(enum service_mode mode);
int config_parse_mode(const char *name, enum service_mode *out);
/* Whether this peerdistd runs the mode (the network modes are named but not built yet). */
bool config_mode_implemented(enum service_mode mode);
/* A byte count: digits with an optional binary suffix K, M, G or T (1024-based). */
int config_parse_bytes(const char *text, uint64_t *out);

#endif
