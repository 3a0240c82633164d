/*
 * peerdistctl.c - the administration and inspection CLI. Exit status:
 * 0 success, 1 failure, 2 bad usage (peerdistctl(8)). Sub-commands that talk
 * to peerdistd use the library's connection code directly.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "ctl-ci.h"
#include "ctl/ctl-data.h"
#include "ctl/ctl-util.h"

#define EXIT_USAGE CTL_EXIT_USAGE

static void usage(FILE *f)
{
    fprintf(f,
        "usage: peerdistctl [--socket PATH] COMMAND [ARGS]\n"
        "commands:\n"
        "  status [--json]        daemon version, status, mode, socket, database, connections\n"
        "  publish FILE [--id ID] [--version 1|2] [-o FILE.ci]\n"
        "                         publish through the daemon, write the content information\n"
        "  inject FILE --ci FILE.ci --tag TAG   add a file's bytes to the cache under TAG\n"
        "  get --ci FILE.ci [-o OUT] [--timeout MS] [--tag TAG]\n"
        "                         read through the cache; exit 1 listing missing ranges\n"
        "  tags [--json]          your tags and what they label\n"
        "  flush --tag TAG        remove what TAG added (TAG: 32 hex digits or a GUID)\n"
        "  hash FILE --version 1|2 (--passphrase-hex HEX | --key TEXT)\n"
        "       [--range OFFSET:LENGTH] [-o OUT]   write content information (no daemon)\n"
        "  ci-dump FILE [--json]  print a content information file (no daemon)\n"
        "options:\n"
        "  -s, --socket PATH      daemon socket (default $PEERDIST_SOCKET or %s)\n"
        "exit status: 0 success, 1 failure, 2 bad usage\n",
        PD_DEFAULT_SOCKET);
}

static const char *status_name(uint32_t st)
{
    static const char *const names[] = {"disabled", "unavailable", "available"};
    return st < 3 ? names[st] : "unknown";
}

/* Prints s as a JSON string literal. */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static int cmd_status(const char *socket_path, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int json = 0, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "j", opts, NULL)) != -1) {
        if (ch != 'j') {
            usage(stderr);
            return EXIT_USAGE;
        }
        json = 1;
    }
    struct pdconn *c = pdconn_new(socket_path);
    if (!c) {
        fprintf(stderr, "peerdistctl: out of memory\n");
        return 1;
    }
    Peerdist__DaemonInfoRequest dr = PEERDIST__DAEMON_INFO_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_DAEMON_INFO;
    req.daemon_info = &dr;
    Peerdist__Reply *r = NULL;
    DWORD rc = pdconn_call(c, &req, &r);
    int exit_code = 0;
    if (rc != ERROR_SUCCESS || !r || r->body_case != PEERDIST__REPLY__BODY_DAEMON_INFO) {
        if (json) {
            printf("{\"status\": \"unavailable\", \"socket\": ");
            json_str(socket_path);
            printf("}\n");
        }
        fprintf(stderr, "peerdistctl: peerdistd is not reachable at %s (error %u)\n", socket_path,
            (unsigned)rc);
        exit_code = 1;
    } else if (json) {
        const Peerdist__DaemonInfoReply *d = r->daemon_info;
        printf("{\"version\": ");
        json_str(d->software);
        printf(", \"protocol\": %u, \"status\": \"%s\", \"mode\": ", d->protocol_version,
            status_name(d->service_status));
        json_str(d->mode);
        printf(", \"socket\": ");
        json_str(d->socket_path);
        printf(", \"database\": ");
        json_str(d->database_path);
        printf(", \"database_bytes\": %llu, \"connections\": %u, \"uptime_seconds\": %llu, "
               "\"reclaim_pending_slots\": %llu, \"reclaimed_slots\": %llu}\n",
            (unsigned long long)d->database_bytes, d->connections,
            (unsigned long long)d->uptime_seconds, (unsigned long long)d->reclaim_pending,
            (unsigned long long)d->reclaimed);
    } else {
        const Peerdist__DaemonInfoReply *d = r->daemon_info;
        printf("version:      %s (protocol %u)\n", d->software, d->protocol_version);
        printf("status:       %s\n", status_name(d->service_status));
        printf("mode:         %s\n", d->mode);
        printf("socket:       %s\n", d->socket_path);
        printf("database:     %s (%llu bytes)\n", d->database_path,
            (unsigned long long)d->database_bytes);
        printf("connections:  %u\n", d->connections);
        printf("uptime:       %llu s\n", (unsigned long long)d->uptime_seconds);
        printf("reclaim:      %llu slots of 64 KiB pending, %llu reclaimed\n",
            (unsigned long long)d->reclaim_pending, (unsigned long long)d->reclaimed);
    }
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    pdconn_free(c);
    return exit_code;
}

int main(int argc, char **argv)
{
    const char *socket_path = pdconn_default_path();
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if ((strcmp(argv[i], "-s") == 0 || strcmp(argv[i], "--socket") == 0) && i + 1 < argc) {
            socket_path = argv[++i];
        } else if (strncmp(argv[i], "--socket=", 9) == 0) {
            socket_path = argv[i] + 9;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (strcmp(cmd, "status") == 0)
        return cmd_status(socket_path, sub_argc, sub_argv);
    if (strcmp(cmd, "hash") == 0)
        return ctl_hash_main(sub_argc, sub_argv);
    if (strcmp(cmd, "ci-dump") == 0)
        return ctl_ci_dump_main(sub_argc, sub_argv);
    if (strcmp(cmd, "tags") == 0)
        return ctl_tags_main(socket_path, sub_argc, sub_argv);
    /* The rest use <peerdist.h>, which finds the daemon through PEERDIST_SOCKET. */
    setenv("PEERDIST_SOCKET", socket_path, 1);
    if (strcmp(cmd, "publish") == 0)
        return ctl_publish_main(sub_argc, sub_argv);
    if (strcmp(cmd, "inject") == 0)
        return ctl_inject_main(sub_argc, sub_argv);
    if (strcmp(cmd, "get") == 0)
        return ctl_get_main(sub_argc, sub_argv);
    if (strcmp(cmd, "flush") == 0)
        return ctl_flush_main(sub_argc, sub_argv);
    fprintf(stderr, "peerdistctl: unknown command '%s'\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
