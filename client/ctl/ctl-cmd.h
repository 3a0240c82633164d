/* SPDX-License-Identifier: MIT */
/*
 * ctl-cmd.h - what every peerdistctl sub-command shares: its context (socket, connect
 * timeout, name, help), option parsing that also takes the global options after the
 * sub-command, usage errors (exit 2), failures with a reason (exit 1, and a JSON error
 * object under --json), Win32 status texts, and the connection to peerdistd.
 */
#ifndef PEERDIST_CTL_CMD_H
#define PEERDIST_CTL_CMD_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include <peerdist.h>

#include "conn.h"
#include "ctl-util.h"

/* A connect() plus Hello that takes longer than this is a stopped or wedged daemon. */
#define CTL_CONNECT_TIMEOUT_MS 3000
#define CTL_CONNECT_TIMEOUT_MAX_MS 600000u

struct ctl_ctx {
    const char *socket_path;
    int connect_timeout_ms;
    const char *cmd;  /* "status", "cache set": names the command in messages */
    const char *help; /* its --help text */
    bool json;        /* failures print a JSON error object on stdout too */
    bool opt_started; /* ctl_getopt has begun on this command's argv */
};

/* ctl_getopt's results besides the command's own option values. */
#define CTL_OPT_END (-1)
#define CTL_OPT_HELP (-2) /* --help printed: exit 0 */
#define CTL_OPT_BAD (-3)  /* an unknown option or a missing argument, reported: exit 2 */

/*
 * getopt_long over argv (argv[0] is the command name) with the command's own options plus
 * the global ones (-s/--socket, --connect-timeout, -h/--help), which it handles itself.
 * Options may come before or after the arguments (GNU permutation); shortopts starting
 * with '+' stops at the first argument instead (a command whose sub-command follows).
 */
int ctl_getopt(struct ctl_ctx *x, int argc, char **argv, const char *shortopts,
    const struct option *longopts);
/* Starts parsing the arguments of a sub-command afresh (`cache set`, `key show`). */
void ctl_sub(struct ctl_ctx *x, const char *cmd, const char *help);

/* "peerdistctl CMD: <message>" and "Try 'peerdistctl CMD --help'." on stderr; CTL_EXIT_USAGE. */
int ctl_usage_error(const struct ctl_ctx *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Checks that exactly `want` arguments are left after the options; else a usage error. */
int ctl_want_args(const struct ctl_ctx *x, int argc, char **argv, int want, const char *what);
/* A number option: decimal, at most max; else a usage error naming the option. */
int ctl_opt_u64(const struct ctl_ctx *x, const char *opt, const char *arg, uint64_t max,
    uint64_t *v);
/* "peerdistctl CMD: <message>" on stderr, and {"error": ...} on stdout under --json; exit 1. */
int ctl_fail(const struct ctl_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* ctl_fail with "<what>: <status name> (<code>): <meaning>". */
int ctl_fail_status(const struct ctl_ctx *x, const char *what, DWORD status);
/* "ERROR_ACCESS_DENIED (5): needs root or membership of group peerdist", ... */
const char *ctl_status_name(DWORD status);
const char *ctl_status_hint(DWORD status);

/*
 * Connects to peerdistd (connect() and Hello within x->connect_timeout_ms). NULL after a
 * failure message naming the socket, the errno text and PEERDIST_SOCKET / --socket.
 */
struct pdconn *ctl_connect(const struct ctl_ctx *x);
/*
 * Connects without reporting: NULL with why in buf (socket, errno text, hint) when not
 * connected. ctl_connect is this plus ctl_fail.
 */
struct pdconn *ctl_connect_quiet(const struct ctl_ctx *x, char *why, size_t whylen);
/*
 * ctl_connect and disconnect, before commands that go through <peerdist.h>: it also points
 * PEERDIST_SOCKET (where the library looks) at x->socket_path. 0 or -1.
 */
int ctl_probe(const struct ctl_ctx *x);
/*
 * One request on c. The reply when its status is ERROR_SUCCESS and its body is `want_body`
 * (0: any); otherwise NULL after a failure message about `what`, and *status (if not NULL)
 * the status.
 */
Peerdist__Reply *ctl_call(const struct ctl_ctx *x, struct pdconn *c, Peerdist__Request *req,
    int want_body, const char *what, DWORD *status);

#endif
