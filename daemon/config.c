/* SPDX-License-Identifier: MIT */
/*
 * config.c - the peerdistd configuration file (INI, read with libinih) and
 * the environment overrides. Unknown keys and bad values are errors, so a
 * typo never silently leaves a default in force; every message names the
 * line and what is wrong on it.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/statvfs.h>

#include "budget.h"

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

bool config_mode_implemented(enum service_mode mode)
{
    return mode == MODE_DISABLED || mode == MODE_LOCAL || mode == MODE_DISTRIBUTED;
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
    cfg->max_connections_per_uid = CONFIG_DEFAULT_MAX_CONNECTIONS_PER_UID;
    cfg->hello_timeout = CONFIG_DEFAULT_HELLO_TIMEOUT;
    cfg->hello_idle_timeout = CONFIG_DEFAULT_HELLO_IDLE_TIMEOUT;
    cfg->memory_budget = 0;
    cfg->disk_reserve = CONFIG_DEFAULT_DISK_RESERVE;
    cfg->spare_pool = CONFIG_DEFAULT_SPARE_POOL;
    char why[160];
    config_parse_cache_size(CONFIG_DEFAULT_CACHE_SIZE, &cfg->cache_size, why, sizeof(why));
    config_parse_max_age(CONFIG_DEFAULT_MAX_AGE, &cfg->max_age, why, sizeof(why));
    cfg->cache_size.source = cfg->max_age.source = CONFIG_SRC_DEFAULT;
    cfg->uid_quota = 0;
    cfg->peer_port = CONFIG_DEFAULT_PEER_PORT;
    cfg->interfaces[0] = '\0';
    cfg->ipv4 = cfg->ipv6 = true;
    cfg->serve = true;
    cfg->serve_rate_limit = 0;
}

int config_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* An interface name as the kernel takes it (dev_valid_name): 1..IFNAMSIZ-1 bytes, not "." or
 * "..", no '/', ':' or white space. */
static bool valid_ifname(const char *name, size_t len)
{
    if (len == 0 || len > 15)
        return false;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c == ':' || isspace(c) || c < 0x21 || c > 0x7e)
            return false;
    }
    return true;
}

int config_parse_interfaces(const char *text, char *out, size_t outlen, char *why, size_t whylen)
{
    char buf[CONFIG_INTERFACES_MAX];
    size_t used = 0;
    buf[0] = '\0';
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '\0') {
        snprintf(out, outlen, "%s", "");
        return 0; /* every multicast-capable interface */
    }
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        size_t len = strcspn(p, ",");
        size_t name_len = len;
        while (name_len && isspace((unsigned char)p[name_len - 1]))
            name_len--;
        if (!valid_ifname(p, name_len)) {
            snprintf(why, whylen,
                "interfaces: '%.*s' is not an interface name (1 to 15 characters, no '/', ':' "
                "or spaces; names separated by commas)",
                (int)(name_len > 40 ? 40 : name_len), p);
            return -1;
        }
        /* The same name twice is a mistake worth hearing about. */
        for (const char *q = buf; *q;) {
            size_t ql = strcspn(q, ",");
            if (ql == name_len && memcmp(q, p, ql) == 0) {
                snprintf(why, whylen, "interfaces: '%.*s' is named twice", (int)name_len, p);
                return -1;
            }
            q += ql + (q[ql] == ',');
        }
        if (used + (used ? 1 : 0) + name_len + 1 > sizeof(buf) || used + name_len + 2 > outlen) {
            snprintf(why, whylen, "interfaces: the list is longer than %d bytes",
                CONFIG_INTERFACES_MAX - 1);
            return -1;
        }
        if (used)
            buf[used++] = ',';
        memcpy(buf + used, p, name_len);
        used += name_len;
        buf[used] = '\0';
        p += len;
        if (*p == '\0')
            break;
        p++; /* the comma; a name must follow */
    }
    snprintf(out, outlen, "%s", buf);
    return 0;
}

int config_each_interface(const char *interfaces, int (*fn)(void *arg, const char *name), void *arg)
{
    const char *p = interfaces;
    while (*p) {
        size_t len = strcspn(p, ",");
        char name[32];
        snprintf(name, sizeof(name), "%.*s", (int)(len < sizeof(name) ? len : sizeof(name) - 1), p);
        int rc = fn(arg, name);
        if (rc)
            return rc;
        p += len + (p[len] == ',');
    }
    return 0;
}

const char *config_source_name(enum config_source src)
{
    return src == CONFIG_SRC_OVERRIDE ? "override" : src == CONFIG_SRC_FILE ? "file" : "default";
}

int config_parse_cache_size(const char *text, struct config_cache_size *out, char *why,
    size_t whylen)
{
    struct config_cache_size cs = {0};
    size_t len = strlen(text);
    if (len == 0 || len >= sizeof(cs.text)) {
        snprintf(why, whylen, "cache_size: '%.40s' is not a percent (1%%..100%%) or a size", text);
        return -1;
    }
    if (text[len - 1] == '%') {
        char *end;
        errno = 0;
        unsigned long n = strtoul(text, &end, 10);
        if (errno || end != text + len - 1 || !isdigit((unsigned char)text[0]) || n < 1 ||
            n > 100) {
            snprintf(why, whylen, "cache_size: '%s' is not a percent in 1%%..100%%", text);
            return -1;
        }
        cs.percent = true;
        cs.pct = (unsigned)n;
    } else if (config_parse_bytes(text, &cs.bytes) != 0) {
        snprintf(why, whylen,
            "cache_size: '%s' is not a percent (5%%) or a size (bytes, or with K, M, G or T)",
            text);
        return -1;
    } else if (cs.bytes < CONFIG_CACHE_SIZE_MIN) {
        snprintf(why, whylen, "cache_size: '%s' is less than the minimum, %lluM", text,
            CONFIG_CACHE_SIZE_MIN >> 20);
        return -1;
    }
    memcpy(cs.text, text, len + 1);
    cs.source = out->source;
    *out = cs;
    return 0;
}

int config_parse_max_age(const char *text, struct config_max_age *out, char *why, size_t whylen)
{
    char *end;
    size_t len = strlen(text);
    errno = 0;
    unsigned long long n = strtoull(text, &end, 10);
    uint64_t unit = 1;
    switch (*end) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    case '\0': break;
    default: unit = 0;
    }
    if (errno || end == text || !isdigit((unsigned char)text[0]) || unit == 0 || (*end && end[1]) ||
        n == 0 || len >= sizeof(out->text) || n > CONFIG_MAX_AGE_MAX / unit) {
        snprintf(why, whylen,
            "max_age: '%.40s' is not a positive duration (seconds, or with s, m, h or d; at "
            "most %llud)",
            text, CONFIG_MAX_AGE_MAX / 86400);
        return -1;
    }
    out->seconds = n * unit;
    memcpy(out->text, text, len + 1);
    return 0;
}

uint64_t config_cache_limit(const struct config_cache_size *cs, const char *db_path)
{
    if (!cs->percent)
        return cs->bytes;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", db_path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    struct statvfs sv;
    uint64_t total = 0;
    if (statvfs(dir, &sv) == 0)
        total = (uint64_t)sv.f_blocks * (sv.f_frsize ? sv.f_frsize : sv.f_bsize);
    uint64_t limit = total / 100 * cs->pct;
    return limit < CONFIG_CACHE_SIZE_MIN ? CONFIG_CACHE_SIZE_MIN : limit;
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

/*
 * libinih is fed through our own reader (read_line), which knows each line whole: it counts
 * the lines, judges what libinih would misreport (a section line without its ']', a line
 * that is not "key = value", an indented line libinih would take as the continuation of the
 * one before, a section other than [peerdistd]) and hands libinih a line it can take whole:
 * a line past libinih's length limit goes to it shortened, as "key=\x01", its value kept here.
 */
struct ini_ctx {
    struct config *cfg;
    FILE *f;
    char *line; /* getline's buffer */
    size_t cap;
    int lineno;       /* the line handed to libinih last */
    bool in_section;  /* after [peerdistd] */
    bool after_key;   /* the last line with content was "key = value" */
    char *long_value; /* the value of line lineno, if libinih got it shortened */
    int err_line;     /* the first mistake's line (0: none yet) */
    char why[512];    /* and what it is */
};

#define LONG_VALUE_MARK "\x01"

static void mistake(struct ini_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void mistake(struct ini_ctx *ctx, const char *fmt, ...)
{
    if (ctx->err_line)
        return; /* the first one is reported */
    ctx->err_line = ctx->lineno;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->why, sizeof(ctx->why), fmt, ap);
    va_end(ap);
}

static int parse_uint(const char *value, unsigned long min, unsigned long max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(value, &end, 10);
    if (errno || *end || end == value || value[0] == '-' || n < min || n > max)
        return -1;
    *out = (unsigned)n;
    return 0;
}

/* Bytes, with an optional binary suffix K, M, G or T. */
static int set_number(struct ini_ctx *ctx, const char *name, const char *value, unsigned min,
    unsigned max, unsigned *out)
{
    if (parse_uint(value, min, max, out) == 0)
        return 0;
    mistake(ctx, "%s: '%s' is not a number in %u..%u", name, value, min, max);
    return -1;
}

static int set_key(struct ini_ctx *ctx, const char *name, const char *value)
{
    struct config *cfg = ctx->cfg;
    if (strcmp(name, "mode") == 0) {
        if (config_parse_mode(value, &cfg->mode) == 0)
            return 0;
        mistake(ctx,
            "mode: '%s' is not one of disabled, local, distributed, hosted-client, "
            "hosted-server",
            value);
        return -1;
    }
    if (strcmp(name, "log_level") == 0) {
        if (log_parse_level(value, &cfg->log_level) == 0)
            return 0;
        mistake(ctx, "log_level: '%s' is not one of error, warn, info, debug", value);
        return -1;
    }
    if (strcmp(name, "max_connections") == 0)
        return set_number(ctx, name, value, 1, CONFIG_MAX_CONNECTIONS_LIMIT, &cfg->max_connections);
    if (strcmp(name, "max_connections_per_uid") == 0)
        return set_number(ctx, name, value, 1, CONFIG_MAX_CONNECTIONS_LIMIT,
            &cfg->max_connections_per_uid);
    if (strcmp(name, "hello_timeout") == 0)
        return set_number(ctx, name, value, 1, CONFIG_MAX_TIMEOUT, &cfg->hello_timeout);
    if (strcmp(name, "hello_idle_timeout") == 0)
        return set_number(ctx, name, value, 1, CONFIG_MAX_TIMEOUT, &cfg->hello_idle_timeout);
    if (strcmp(name, "memory_budget") == 0) {
        uint64_t n;
        if (config_parse_bytes(value, &n) == 0 && n >= BUDGET_MIN && n <= SIZE_MAX) {
            cfg->memory_budget = (size_t)n;
            return 0;
        }
        mistake(ctx,
            "memory_budget: '%s' is not a size of at least %zuM (bytes, or with K, M, "
            "G or T)",
            value, BUDGET_MIN >> 20);
        return -1;
    }
    if (strcmp(name, "disk_reserve") == 0) {
        if (config_parse_bytes(value, &cfg->disk_reserve) == 0)
            return 0;
        mistake(ctx, "disk_reserve: '%s' is not a size (bytes, or with K, M, G or T)", value);
        return -1;
    }
    if (strcmp(name, "spare_pool") == 0) {
        if (config_parse_bytes(value, &cfg->spare_pool) == 0)
            return 0;
        mistake(ctx, "spare_pool: '%s' is not a size (bytes, or with K, M, G or T)", value);
        return -1;
    }
    if (strcmp(name, "cache_size") == 0 || strcmp(name, "max_age") == 0) {
        char why[160];
        int rc = name[0] == 'c' ? config_parse_cache_size(value, &cfg->cache_size, why, sizeof(why))
                                : config_parse_max_age(value, &cfg->max_age, why, sizeof(why));
        if (rc != 0) {
            mistake(ctx, "%s", why);
            return -1;
        }
        if (name[0] == 'c')
            cfg->cache_size.source = CONFIG_SRC_FILE;
        else
            cfg->max_age.source = CONFIG_SRC_FILE;
        return 0;
    }
    if (strcmp(name, "uid_quota") == 0) {
        if (config_parse_bytes(value, &cfg->uid_quota) == 0)
            return 0;
        mistake(ctx, "uid_quota: '%s' is not a size (bytes, or with K, M, G or T; 0: off)", value);
        return -1;
    }
    if (strcmp(name, "peer_port") == 0) {
        unsigned port;
        if (set_number(ctx, name, value, 1, 65535, &port) != 0)
            return -1;
        cfg->peer_port = (uint16_t)port;
        return 0;
    }
    if (strcmp(name, "interfaces") == 0) {
        char why[200];
        if (config_parse_interfaces(value, cfg->interfaces, sizeof(cfg->interfaces), why,
                sizeof(why)) == 0)
            return 0;
        mistake(ctx, "%s", why);
        return -1;
    }
    bool *flag = strcmp(name, "ipv4") == 0 ? &cfg->ipv4
        : strcmp(name, "ipv6") == 0        ? &cfg->ipv6
        : strcmp(name, "serve") == 0       ? &cfg->serve
                                           : NULL;
    if (flag) {
        if (config_parse_bool(value, flag) == 0)
            return 0;
        mistake(ctx, "%s: '%s' is not yes or no", name, value);
        return -1;
    }
    if (strcmp(name, "serve_rate_limit") == 0) {
        if (config_parse_bytes(value, &cfg->serve_rate_limit) == 0)
            return 0;
        mistake(ctx,
            "serve_rate_limit: '%s' is not a rate (bytes per second, or with K, M, G or T; 0: "
            "unlimited)",
            value);
        return -1;
    }
    char *dst = strcmp(name, "socket") == 0 ? cfg->socket_path
        : strcmp(name, "database") == 0     ? cfg->db_path
        : strcmp(name, "state_dir") == 0    ? cfg->state_dir
                                            : NULL;
    if (!dst) {
        mistake(ctx, "unknown key '%s'", name);
        return -1;
    }
    if (strlen(value) >= PATH_MAX) {
        mistake(ctx, "%s: a path of %zu bytes is longer than %d", name, strlen(value),
            PATH_MAX - 1);
        return -1;
    }
    if (value[0] != '/') {
        mistake(ctx, "%s: '%s' is not an absolute path", name, value);
        return -1;
    }
    copy_path(dst, value);
    return 0;
}

static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *ctx = user;
    if (ctx->err_line)
        return 1; /* already failed: the first mistake is the one reported */
    if (!ctx->in_section) {
        mistake(ctx, "'%s' before the [peerdistd] section line", name);
        return 0;
    }
    if (ctx->long_value && strcmp(value, LONG_VALUE_MARK) == 0)
        value = ctx->long_value;
    return set_key(ctx, name, value) == 0;
}

static char *skip_space(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    return s;
}

static void trim_end(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
}

/* Where an inline comment (';' after whitespace, as libinih has it) starts in s, or its end. */
static char *comment_start(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == ';' && p > s && isspace((unsigned char)p[-1]))
            return p;
    return s + strlen(s);
}

/* Copies line (whole) into str for libinih: num bytes of room, newline and NUL included. */
static char *hand_over(char *str, int num, const char *line)
{
    snprintf(str, (size_t)num, "%s\n", line);
    return str;
}

/* A key line: handed over as it is if it fits, else as "key=\x01" with its value kept. */
static char *hand_key(struct ini_ctx *ctx, char *str, int num, char *s)
{
    if (strlen(s) + 2 <= (size_t)num)
        return hand_over(str, num, s);
    char *end = comment_start(s);
    *end = '\0';
    size_t name_len = strcspn(s, "=:");
    char *value = skip_space(s + name_len + 1);
    trim_end(value);
    s[name_len] = '\0';
    trim_end(s);
    if (strlen(s) + strlen("=" LONG_VALUE_MARK) + 2 > (size_t)num) {
        mistake(ctx, "a key name of %zu characters", strlen(s));
        return hand_over(str, num, "");
    }
    if (!(ctx->long_value = strdup(value))) {
        mistake(ctx, "out of memory");
        return hand_over(str, num, "");
    }
    snprintf(str, (size_t)num, "%s=" LONG_VALUE_MARK "\n", s);
    return str;
}

/* libinih's reader (fgets-like); see struct ini_ctx. */
static char *read_line(char *str, int num, void *stream)
{
    struct ini_ctx *ctx = stream;
    if (getline(&ctx->line, &ctx->cap, ctx->f) < 0)
        return NULL;
    ctx->lineno++;
    free(ctx->long_value);
    ctx->long_value = NULL;
    char *line = ctx->line;
    if (ctx->lineno == 1 && strncmp(line, "\xEF\xBB\xBF", 3) == 0)
        line += 3; /* a UTF-8 byte-order mark */
    trim_end(line);
    char *s = skip_space(line);
    if (*s == '\0' || *s == ';' || *s == '#')
        return hand_over(str, num, ""); /* blank or comment */
    if (s > line && ctx->after_key) {
        mistake(ctx,
            "an indented line, which would continue the value of the line before "
            "(no continuation lines here)");
        return hand_over(str, num, "");
    }
    if (*s == '[') {
        ctx->after_key = false;
        char *close = strchr(s, ']');
        if (!close) {
            mistake(ctx, "a section line without its closing ']'");
        } else {
            *close = '\0';
            ctx->in_section = strcmp(s + 1, "peerdistd") == 0;
            if (!ctx->in_section)
                mistake(ctx, "unknown section [%.64s%s] (expected [peerdistd])", s + 1,
                    strlen(s + 1) > 64 ? "..." : "");
        }
        return hand_over(str, num, ""); /* sections are judged here */
    }
    size_t sep = strcspn(s, "=:");
    if (s[sep] == '\0' || s + sep > comment_start(s)) {
        mistake(ctx, "not 'key = value', a [section] line or a comment");
        return hand_over(str, num, "");
    }
    ctx->after_key = true;
    return hand_key(ctx, str, num, s);
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
    struct ini_ctx ctx = {.cfg = cfg, .f = f};
    int line = ini_parse_stream(read_line, &ctx, on_ini_entry, &ctx);
    fclose(f);
    free(ctx.line);
    free(ctx.long_value);
    if (ctx.err_line) {
        snprintf(err, errlen, "%s:%d: %s", cfg->config_path, ctx.err_line, ctx.why);
        return -1;
    }
    if (line != 0) {
        snprintf(err, errlen, "%s:%d: %s", cfg->config_path, line,
            line < 0 ? "out of memory reading it" : "syntax error");
        return -1;
    }
    return config_check(cfg, err, errlen);
}

int config_check(const struct config *cfg, char *err, size_t errlen)
{
    if (cfg->mode == MODE_DISTRIBUTED && !cfg->ipv4 && !cfg->ipv6) {
        snprintf(err, errlen,
            "%s: ipv4 and ipv6 are both no: mode distributed would have no network to use",
            cfg->config_path);
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
