/* SPDX-License-Identifier: MIT */
/*
 * peerdistctl.c - the administration and inspection CLI: global options, the command table,
 * help and version. Exit status: 0 success, 1 failure, 2 bad usage (peerdistctl(1)).
 * Global options (--socket, --connect-timeout) may come before or after the command.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "ctl-ci.h"
#include "ctl/ctl-admin.h"
#include "ctl/ctl-cmd.h"
#include "ctl/ctl-data.h"

struct ctl_command {
    const char *name;
    int (*run)(struct ctl_ctx *x, int argc, char **argv);
};

static const struct ctl_command commands[] = {
    {"status", ctl_status_main},
    {"publish", ctl_publish_main},
    {"inject", ctl_inject_main},
    {"get", ctl_get_main},
    {"tags", ctl_tags_main},
    {"flush", ctl_flush_main},
    {"cache", ctl_cache_main},
    {"peers", ctl_peers_main},
    {"key", ctl_key_main},
    {"hash", ctl_hash_main},
    {"ci-dump", ctl_ci_dump_main},
};

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: peerdistctl [--socket PATH] [--connect-timeout MS] COMMAND [ARGS]\n"
        "       peerdistctl help [COMMAND] | --help | --version\n"
        "Commands (each answers --help):\n"
        "  status [--json]          daemon version, status, mode, socket, database, connections\n"
        "  publish FILE [--id ID] [--version 1|2] [-o FILE.ci] [--json]\n"
        "                           publish through the daemon, write the content information\n"
        "  inject FILE --ci FILE.ci --tag TAG [--json]\n"
        "                           add a file's bytes to the cache under TAG\n"
        "  get --ci FILE.ci [-o OUT] [--partial] [--timeout MS] [--tag TAG] [--json]\n"
        "                           read through the cache (and from peers in distributed\n"
        "                           mode); OUT is replaced only when complete\n"
        "  tags [--all] [--json]    your tags (--all: every uid's) and what they label\n"
        "  flush --tag TAG | --all | --uid UID [--tag TAG]   [--json]\n"
        "                           remove labels; prints labels removed and bytes freed\n"
        "  cache [--json]           limit, usage, counters, and where each setting came from\n"
        "  cache set size SIZE|PERCENT | max-age DURATION | --reset\n"
        "  peers [--json]           distributed mode: recent peers, bytes each way, distrust\n"
        "  key show | set (--key TEXT | --passphrase-hex HEX) | export FILE [--force] |\n"
        "      import FILE          the server secret\n"
        "  hash FILE --version 1|2 (--passphrase-hex HEX | --key TEXT)\n"
        "       [--range OFFSET:LENGTH] [-o OUT]   write content information (no daemon)\n"
        "  ci-dump FILE [--json]    print a content information file (no daemon)\n"
        "Global options (before or after COMMAND):\n"
        "  -s, --socket PATH        daemon socket (default $PEERDIST_SOCKET or %s)\n"
        "  --connect-timeout MS     give up on a daemon that does not answer (default %d)\n"
        "  -h, --help               this text; COMMAND --help: the command's own\n"
        "  --version                peerdistctl's version\n"
        "Exit status: 0 success, 1 failure, 2 bad usage.\n",
        PD_DEFAULT_SOCKET, CTL_CONNECT_TIMEOUT_MS);
}

static const struct ctl_command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int version(void)
{
    printf("peerdistctl %s (protocol %d..%d)\n", PEERDIST_SOFTWARE_VERSION, PD_PROTOCOL_VERSION_MIN,
        PD_PROTOCOL_VERSION_MAX);
    return CTL_EXIT_OK;
}

/* `help`, `help COMMAND [SUB]`: the usage, or the command's own --help. */
static int help(struct ctl_ctx *x, int argc, char **argv)
{
    if (argc <= 1) {
        usage(stdout);
        return CTL_EXIT_OK;
    }
    const struct ctl_command *c = find_command(argv[1]);
    if (!c || argc > 3) {
        x->cmd = "help";
        return ctl_usage_error(x, c ? "unexpected argument '%s'" : "unknown command '%s'",
            c ? argv[3] : argv[1]);
    }
    /* COMMAND [SUB] --help */
    char help_opt[] = "--help";
    char *sub_argv[4] = {argv[1], argc == 3 ? argv[2] : help_opt, help_opt, NULL};
    x->cmd = c->name;
    return c->run(x, argc == 3 ? 3 : 2, sub_argv);
}

/* Global options before COMMAND: 0 to go on, else an exit status (-1: exit 0). */
static int global_options(struct ctl_ctx *x, int argc, char **argv, int *i)
{
    for (; *i < argc && argv[*i][0] == '-'; (*i)++) {
        const char *a = argv[*i];
        const char *val = NULL;
        if (strcmp(a, "--") == 0) { /* the command follows, whatever it looks like */
            (*i)++;
            return 0;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            version();
            return -1;
        }
        bool sock = strcmp(a, "-s") == 0 || strcmp(a, "--socket") == 0;
        bool tmo = strcmp(a, "--connect-timeout") == 0;
        if (sock || tmo) {
            if (*i + 1 >= argc)
                return ctl_usage_error(x, "option '%s' needs an argument", a);
            val = argv[++*i];
        } else if (strncmp(a, "--socket=", 9) == 0) {
            sock = true;
            val = a + 9;
        } else if (strncmp(a, "--connect-timeout=", 18) == 0) {
            tmo = true;
            val = a + 18;
        } else {
            return ctl_usage_error(x, "unknown option '%s'", a);
        }
        uint64_t ms;
        if (sock && !*val)
            return ctl_usage_error(x, "--socket wants a path");
        if (sock)
            x->socket_path = val;
        else if (ctl_opt_u64(x, "--connect-timeout", val, CTL_CONNECT_TIMEOUT_MAX_MS, &ms) != 0)
            return CTL_EXIT_USAGE;
        else
            x->connect_timeout_ms = ms ? (int)ms : 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct ctl_ctx x = {
        .socket_path = pdconn_default_path(),
        .connect_timeout_ms = CTL_CONNECT_TIMEOUT_MS,
    };
    int i = 1;
    int rc = global_options(&x, argc, argv, &i);
    if (rc)
        return rc < 0 ? CTL_EXIT_OK : rc;
    if (i >= argc) {
        fprintf(stderr, "peerdistctl: a command is needed\n");
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    const char *name = argv[i];
    if (strcmp(name, "help") == 0)
        return help(&x, argc - i, argv + i);
    const struct ctl_command *c = find_command(name);
    if (!c) {
        fprintf(stderr, "peerdistctl: unknown command '%s'\n", name);
        fprintf(stderr, "Try 'peerdistctl --help'.\n");
        return CTL_EXIT_USAGE;
    }
    x.cmd = c->name;
    return c->run(&x, argc - i, argv + i);
}
