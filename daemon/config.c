/*
 * config.c - the peerdistd configuration file (INI, read with libinih) and
 * the environment overrides. Unknown keys and bad values are errors, so a
 * typo never silently leaves a default in force.
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mode_names[] = {
    [MODE_DISABLED] = "disabled",
    [MODE_LOCAL] = "local",
    [MODE_DISTRIBUTED] = "distributed",
    [MODE_HOSTED_CLIENT] = "hosted-client",
    [MODE_HOSTED_SERVER] = "hosted-server",
};

const char *config_mode_name(enum service_mode mode)
{
    return mode_names[mode];
}

int config_parse_mode(const char *name, enum service_mode *out)
{
    for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++) {
        if (strcmp(name, mode_names[i]) == 0) {
            *out = (enum service_mode)i;
            return 0;
        }
    }
    return -1;
}

static void copy_path(char *dst, const char *src)
{
    snprintf(dst, PATH_MAX, "%s", src);
}

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    copy_path(cfg->config_path, CONFIG_DEFAULT_PATH);
    copy_path(cfg->socket_path, CONFIG_DEFAULT_SOCKET);
    copy_path(cfg->db_path, CONFIG_DEFAULT_DB);
    copy_path(cfg->state_dir, CONFIG_DEFAULT_STATE_DIR);
    cfg->mode = MODE_LOCAL;
    cfg->log_level = LOG_LVL_INFO;
    cfg->max_connections = CONFIG_DEFAULT_MAX_CONNECTIONS;
    cfg->disk_reserve = CONFIG_DEFAULT_DISK_RESERVE;
}

int config_parse_bytes(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(text, &end, 10);
    if (errno || end == text || text[0] == '-')
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    case 'T': shift = 40; break;
    case '\0': break;
    default: return -1;
    }
    if (*end && end[1])
        return -1;
    if (shift && n > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)n << shift;
    return 0;
}

struct ini_ctx {
    struct config *cfg;
    char *err;
    size_t errlen;
};

static int set_key(struct ini_ctx *ctx, const char *name, const char *value)
{
    struct config *cfg = ctx->cfg;
    if (strcmp(name, "mode") == 0) {
        if (config_parse_mode(value, &cfg->mode) == 0)
            return 0;
        snprintf(ctx->err, ctx->errlen,
            "mode: '%s' is not one of disabled, local, "
            "distributed, hosted-client, hosted-server",
            value);
        return -1;
    }
    if (strcmp(name, "log_level") == 0) {
        if (log_parse_level(value, &cfg->log_level) == 0)
            return 0;
        snprintf(ctx->err, ctx->errlen, "log_level: '%s' is not one of error, warn, info, debug",
            value);
        return -1;
    }
    if (strcmp(name, "max_connections") == 0) {
        char *end;
        errno = 0;
        unsigned long n = strtoul(value, &end, 10);
        if (errno || *end || end == value || n < 1 || n > CONFIG_MAX_CONNECTIONS_LIMIT) {
            snprintf(ctx->err, ctx->errlen, "max_connections: '%s' is not a number in 1..%d", value,
                CONFIG_MAX_CONNECTIONS_LIMIT);
            return -1;
        }
        cfg->max_connections = (unsigned)n;
        return 0;
    }
    if (strcmp(name, "disk_reserve") == 0) {
        if (config_parse_bytes(value, &cfg->disk_reserve) == 0)
            return 0;
        snprintf(ctx->err, ctx->errlen,
            "disk_reserve: '%s' is not a byte count (digits, optional K, M, G or T)", value);
        return -1;
    }
    char *dst = strcmp(name, "socket") == 0 ? cfg->socket_path
        : strcmp(name, "database") == 0     ? cfg->db_path
        : strcmp(name, "state_dir") == 0    ? cfg->state_dir
                                            : NULL;
    if (!dst) {
        snprintf(ctx->err, ctx->errlen, "unknown key '%s'", name);
        return -1;
    }
    if (value[0] != '/' || strlen(value) >= PATH_MAX) {
        snprintf(ctx->err, ctx->errlen, "%s: '%s' is not an absolute path", name, value);
        return -1;
    }
    copy_path(dst, value);
    return 0;
}

static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *ctx = user;
    if (strcmp(section, "peerdistd") != 0) {
        snprintf(ctx->err, ctx->errlen, "unknown section [%s] (expected [peerdistd])", section);
        return 0;
    }
    return set_key(ctx, name, value) == 0;
}

int config_load_file(struct config *cfg, char *err, size_t errlen)
{
    FILE *f = fopen(cfg->config_path, "r");
    if (!f) {
        if (errno == ENOENT && !cfg->config_explicit)
            return 0; /* no default file: built-in defaults */
        snprintf(err, errlen, "%s: %s", cfg->config_path, strerror(errno));
        return -1;
    }
    char why[256] = "";
    struct ini_ctx ctx = {cfg, why, sizeof(why)};
    int line = ini_parse_file(f, on_ini_entry, &ctx);
    fclose(f);
    if (line != 0) {
        snprintf(err, errlen, "%s:%d: %s", cfg->config_path, line, why[0] ? why : "syntax error");
        return -1;
    }
    return 0;
}

void config_apply_env(struct config *cfg)
{
    const char *v;
    if ((v = getenv("PEERDIST_SOCKET")) && *v)
        copy_path(cfg->socket_path, v);
    if ((v = getenv("PEERDIST_DB")) && *v)
        copy_path(cfg->db_path, v);
    if ((v = getenv("PEERDIST_STATE_DIR")) && *v)
        copy_path(cfg->state_dir, v);
}
