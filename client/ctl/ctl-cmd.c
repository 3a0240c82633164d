/* SPDX-License-Identifier: MIT */
/*
 * ctl-cmd.c - the context, option parsing, error reporting and daemon connection shared by
 * every peerdistctl sub-command (ctl-cmd.h).
 */
#include "ctl-cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define CTL_MAX_OPTIONS 32

/* Long-only options get values above any character. */
enum { OPT_SOCKET = 's', OPT_HELP = 'h', OPT_CONNECT_TIMEOUT = 0x1000 };

static const struct option global_options[] = {
    {"socket", required_argument, NULL, OPT_SOCKET},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"help", no_argument, NULL, OPT_HELP},
};

void ctl_sub(struct ctl_ctx *x, const char *cmd, const char *help)
{
    x->cmd = cmd;
    x->help = help;
    x->opt_started = false;
}

int ctl_getopt(struct ctl_ctx *x, int argc, char **argv, const char *shortopts,
    const struct option *longopts)
{
    struct option all[CTL_MAX_OPTIONS + 4];
    char shorts[64];
    size_t n = 0;
    for (; longopts && longopts[n].name && n < CTL_MAX_OPTIONS; n++)
        all[n] = longopts[n];
    for (size_t i = 0; i < sizeof(global_options) / sizeof(global_options[0]); i++)
        all[n++] = global_options[i];
    memset(&all[n], 0, sizeof(all[n]));
    /* ':' first: a missing argument is ':', told apart from an unknown option. A leading
     * '+' (stop at the first argument: a sub-command follows) stays in front. */
    bool stop = shortopts && shortopts[0] == '+';
    snprintf(shorts, sizeof(shorts), "%s:%shs:", stop ? "+" : "",
        shortopts ? shortopts + stop : "");
    if (!x->opt_started) {
        optind = 0; /* GNU: a full re-initialisation, an earlier command may have parsed */
        opterr = 0;
        x->opt_started = true;
    }
    for (;;) {
        int ch = getopt_long(argc, argv, shorts, all, NULL);
        /* What to name in a message: the long option as typed, else the short one. */
        const char *bad = argv[optind - 1 < argc ? optind - 1 : argc - 1];
        char shortname[3] = {'-', (char)optopt, '\0'};
        const char *named = strncmp(bad, "--", 2) == 0 || !optopt ? bad : shortname;
        switch (ch) {
        case -1: return CTL_OPT_END;
        case OPT_SOCKET:
            if (!*optarg)
                return ctl_usage_error(x, "--socket wants a path"), CTL_OPT_BAD;
            x->socket_path = optarg;
            continue;
        case OPT_CONNECT_TIMEOUT: {
            uint64_t v;
            if (ctl_opt_u64(x, "--connect-timeout", optarg, CTL_CONNECT_TIMEOUT_MAX_MS, &v) != 0)
                return CTL_OPT_BAD;
            x->connect_timeout_ms = v ? (int)v : 1;
            continue;
        }
        case OPT_HELP: fputs(x->help, stdout); return CTL_OPT_HELP;
        case ':': ctl_usage_error(x, "option '%s' needs an argument", named); return CTL_OPT_BAD;
        case '?': ctl_usage_error(x, "unknown option '%s'", named); return CTL_OPT_BAD;
        default: return ch;
        }
    }
}

static void vreport(const struct ctl_ctx *x, const char *fmt, va_list ap)
{
    fprintf(stderr, "peerdistctl%s%s: ", x->cmd ? " " : "", x->cmd ? x->cmd : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int ctl_usage_error(const struct ctl_ctx *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(x, fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'peerdistctl %s%s--help'.\n", x->cmd ? x->cmd : "", x->cmd ? " " : "");
    return CTL_EXIT_USAGE;
}

int ctl_want_args(const struct ctl_ctx *x, int argc, char **argv, int want, const char *what)
{
    int have = argc - optind;
    if (have > want)
        return ctl_usage_error(x, "unexpected argument '%s'", argv[optind + want]);
    if (have < want)
        return ctl_usage_error(x, "%s is needed", what);
    return 0;
}

int ctl_opt_u64(const struct ctl_ctx *x, const char *opt, const char *arg, uint64_t max,
    uint64_t *v)
{
    if (ctl_parse_u64(arg, max, v) == 0)
        return 0;
    ctl_usage_error(x, "%s wants a whole number from 0 to %" PRIu64 ", not '%s'", opt, max, arg);
    return -1;
}

/* Prints the JSON error object: {"error": msg, "code": status?, "socket": path?}. */
static void json_error(const char *msg, const DWORD *code, const char *socket_path)
{
    printf("{\"error\": ");
    ctl_json_str(stdout, msg);
    if (code)
        printf(", \"code\": %lu", (unsigned long)*code);
    if (socket_path) {
        printf(", \"socket\": ");
        ctl_json_str(stdout, socket_path);
    }
    printf("}\n");
    fflush(stdout);
}

static int fail_with(const struct ctl_ctx *x, const DWORD *code, const char *socket_path,
    const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    fprintf(stderr, "peerdistctl%s%s: %s\n", x->cmd ? " " : "", x->cmd ? x->cmd : "", msg);
    if (x->json)
        json_error(msg, code, socket_path);
    return CTL_EXIT_FAIL;
}

int ctl_fail(const struct ctl_ctx *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = fail_with(x, NULL, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

static int fail_code(const struct ctl_ctx *x, DWORD code, const char *socket_path, const char *fmt,
    ...) __attribute__((format(printf, 4, 5)));
static int fail_code(const struct ctl_ctx *x, DWORD code, const char *socket_path, const char *fmt,
    ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = fail_with(x, &code, socket_path, fmt, ap);
    va_end(ap);
    return rc;
}

const char *ctl_status_name(DWORD e)
{
    switch (e) {
    case ERROR_SUCCESS: return "ERROR_SUCCESS";
    case ERROR_ACCESS_DENIED: return "ERROR_ACCESS_DENIED";
    case ERROR_INVALID_HANDLE: return "ERROR_INVALID_HANDLE";
    case ERROR_NOT_ENOUGH_MEMORY: return "ERROR_NOT_ENOUGH_MEMORY";
    case ERROR_INVALID_DATA: return "ERROR_INVALID_DATA";
    case ERROR_OUTOFMEMORY: return "ERROR_OUTOFMEMORY";
    case ERROR_REQ_NOT_ACCEP: return "ERROR_REQ_NOT_ACCEP";
    case ERROR_INVALID_PARAMETER: return "ERROR_INVALID_PARAMETER";
    case ERROR_DISK_FULL: return "ERROR_DISK_FULL";
    case ERROR_CALL_NOT_IMPLEMENTED: return "ERROR_CALL_NOT_IMPLEMENTED";
    case ERROR_TIMEOUT: return "ERROR_TIMEOUT";
    case ERROR_OPERATION_ABORTED: return "ERROR_OPERATION_ABORTED";
    case ERROR_NOT_FOUND: return "ERROR_NOT_FOUND";
    case ERROR_ACCESS_DISABLED_BY_POLICY: return "ERROR_ACCESS_DISABLED_BY_POLICY";
    case ERROR_INTERNAL_ERROR: return "ERROR_INTERNAL_ERROR";
    case ERROR_NOT_SUPPORTED: return "ERROR_NOT_SUPPORTED";
    case ERROR_ALREADY_EXISTS: return "ERROR_ALREADY_EXISTS";
    case PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED:
        return "PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED";
    case PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO: return "PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO";
    case PEERDIST_ERROR_MISSING_DATA: return "PEERDIST_ERROR_MISSING_DATA";
    case PEERDIST_ERROR_NO_MORE: return "PEERDIST_ERROR_NO_MORE";
    case PEERDIST_ERROR_NOT_INITIALIZED: return "PEERDIST_ERROR_NOT_INITIALIZED";
    case PEERDIST_ERROR_ALREADY_INITIALIZED: return "PEERDIST_ERROR_ALREADY_INITIALIZED";
    case PEERDIST_ERROR_SHUTDOWN_IN_PROGRESS: return "PEERDIST_ERROR_SHUTDOWN_IN_PROGRESS";
    case PEERDIST_ERROR_INVALIDATED: return "PEERDIST_ERROR_INVALIDATED";
    case PEERDIST_ERROR_ALREADY_EXISTS: return "PEERDIST_ERROR_ALREADY_EXISTS";
    case PEERDIST_ERROR_OPERATION_NOTFOUND: return "PEERDIST_ERROR_OPERATION_NOTFOUND";
    case PEERDIST_ERROR_ALREADY_COMPLETED: return "PEERDIST_ERROR_ALREADY_COMPLETED";
    case PEERDIST_ERROR_OUT_OF_BOUNDS: return "PEERDIST_ERROR_OUT_OF_BOUNDS";
    case PEERDIST_ERROR_VERSION_UNSUPPORTED: return "PEERDIST_ERROR_VERSION_UNSUPPORTED";
    case PEERDIST_ERROR_INVALID_CONFIGURATION: return "PEERDIST_ERROR_INVALID_CONFIGURATION";
    case PEERDIST_ERROR_NOT_LICENSED: return "PEERDIST_ERROR_NOT_LICENSED";
    case PEERDIST_ERROR_SERVICE_UNAVAILABLE: return "PEERDIST_ERROR_SERVICE_UNAVAILABLE";
    case PEERDIST_ERROR_TRUST_FAILURE: return "PEERDIST_ERROR_TRUST_FAILURE";
    default: return "error";
    }
}

const char *ctl_status_hint(DWORD e)
{
    switch (e) {
    case ERROR_ACCESS_DENIED: return "needs root or membership of group peerdist";
    case ERROR_CALL_NOT_IMPLEMENTED:
        return "this peerdistd does not implement the request (an older daemon: upgrade it)";
    case ERROR_INVALID_DATA: return "bytes do not match their hash";
    case ERROR_REQ_NOT_ACCEP: return "the daemon refused the connection (over a connection limit)";
    case ERROR_ACCESS_DISABLED_BY_POLICY: return "the daemon runs with mode = disabled";
    case ERROR_DISK_FULL: return "the cache's disk is full";
    case PEERDIST_ERROR_SERVICE_UNAVAILABLE:
        return "lost the connection to peerdistd (did it stop?)";
    case PEERDIST_ERROR_MISSING_DATA: return "not in the cache";
    default: return NULL;
    }
}

int ctl_fail_status(const struct ctl_ctx *x, const char *what, DWORD status)
{
    const char *hint = ctl_status_hint(status);
    return fail_code(x, status, NULL, "%s: %s (%lu)%s%s", what, ctl_status_name(status),
        (unsigned long)status, hint ? ": " : "", hint ? hint : "");
}

/* Why a connection attempt failed, in words (errno from pdconn_down_reason). */
static void unreachable_text(const struct ctl_ctx *x, int e, DWORD status, char *buf, size_t len)
{
    const char *hint = "is it running? set PEERDIST_SOCKET or use --socket PATH";
    switch (e) {
    case ETIMEDOUT:
        snprintf(buf, len,
            "peerdistd at %s did not answer within %d ms: %s (stopped or wedged? %s)",
            x->socket_path, x->connect_timeout_ms, strerror(e),
            "check the daemon, or set PEERDIST_SOCKET or use --socket PATH");
        return;
    case EUSERS:
        snprintf(buf, len, "peerdistd at %s refused the connection: %s (%lu): %s", x->socket_path,
            ctl_status_name(status), (unsigned long)status, ctl_status_hint(ERROR_REQ_NOT_ACCEP));
        return;
    case EPROTONOSUPPORT:
        snprintf(buf, len,
            "peerdistd at %s speaks no protocol version this peerdistctl speaks (%s)",
            x->socket_path, strerror(e));
        return;
    case EPROTO:
    case ECONNRESET:
        snprintf(buf, len, "peerdistd is not reachable at %s: %s (not a peerdistd socket? %s)",
            x->socket_path, strerror(e), "set PEERDIST_SOCKET or use --socket PATH");
        return;
    default:
        snprintf(buf, len, "peerdistd is not reachable at %s: %s (%s)", x->socket_path, strerror(e),
            hint);
    }
}

struct pdconn *ctl_connect_quiet(const struct ctl_ctx *x, char *why, size_t whylen)
{
    if (strlen(x->socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        unreachable_text(x, ENAMETOOLONG, ERROR_SUCCESS, why, whylen);
        return NULL;
    }
    struct pdconn *c = pdconn_new_timeout(x->socket_path, x->connect_timeout_ms);
    if (!c) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    DWORD status;
    int e = pdconn_down_reason(c, &status);
    if (e == 0)
        return c;
    unreachable_text(x, e, status, why, whylen);
    pdconn_free(c);
    return NULL;
}

struct pdconn *ctl_connect(const struct ctl_ctx *x)
{
    char why[1024];
    struct pdconn *c = ctl_connect_quiet(x, why, sizeof(why));
    if (!c)
        fail_code(x, PEERDIST_ERROR_SERVICE_UNAVAILABLE, x->socket_path, "%s", why);
    return c;
}

int ctl_probe(const struct ctl_ctx *x)
{
    /* <peerdist.h> finds the daemon through PEERDIST_SOCKET: the same socket as the probe. */
    setenv("PEERDIST_SOCKET", x->socket_path, 1);
    struct pdconn *c = ctl_connect(x);
    if (!c)
        return -1;
    pdconn_free(c);
    return 0;
}

Peerdist__Reply *ctl_call(const struct ctl_ctx *x, struct pdconn *c, Peerdist__Request *req,
    int want_body, const char *what, DWORD *status)
{
    Peerdist__Reply *r = NULL;
    DWORD rc = pdconn_call(c, req, &r);
    if (status)
        *status = rc;
    if (rc == ERROR_SUCCESS && r && (!want_body || (int)r->body_case == want_body))
        return r;
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    if (rc == ERROR_SUCCESS) {
        if (status)
            *status = ERROR_INVALID_DATA;
        ctl_fail(x, "%s: peerdistd answered without the reply this request expects", what);
    } else {
        ctl_fail_status(x, what, rc);
    }
    return NULL;
}
