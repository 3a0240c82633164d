/* SPDX-License-Identifier: MIT */
/*
 * ctl-admin.c - `peerdistctl status | tags | flush | cache | peers | key`: requests of
 * proto/peerdist.proto sent over the library's connection code, for what <peerdist.h> has no
 * call for (daemon facts, listings, the counts a flush released, cache limits, the secret).
 */
#include "ctl-admin.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "contentinfo.h"

/* The secret's size range KeyRequest accepts (proto/peerdist.proto). */
#define CTL_SECRET_MAX 1024u
/* cache_size's floor and max_age's ceiling, as peerdistd.conf(5) sets them. */
#define CTL_CACHE_SIZE_MIN (64ull << 20)
#define CTL_MAX_AGE_MAX (100ull * 365 * 86400)

static Peerdist__Reply *call(const struct ctl_ctx *x, struct pdconn *c, Peerdist__Request *req,
    int want_body, const char *what)
{
    return ctl_call(x, c, req, want_body, what, NULL);
}

/* ---- status ---- */

static const char status_help[] =
    "Usage: peerdistctl status [--json]\n"
    "Shows peerdistd's version, protocol, service status, mode, socket, database (and its\n"
    "size), connections, uptime, the disk space a flush freed still being reclaimed, the\n"
    "spare data files kept for new segments, and where AddData's time went since start\n"
    "(mean per call of each stage).\n"
    "  --json           one JSON object; when the daemon is not reachable:\n"
    "                   {\"status\": \"unavailable\", \"socket\": ..., \"error\": ...}, exit 1\n"
    "Exit: 0 reachable, 1 not reachable, 2 bad usage.\n";

static const char *status_name(uint32_t st)
{
    static const char *const names[] = {"disabled", "unavailable", "available"};
    return st < 3 ? names[st] : "unknown";
}

/* AddData's stages (proto/peerdist.proto, AddDataTiming): sums since start, and means. */
static void add_timing_print(const Peerdist__AddDataTiming *t, bool json)
{
    static const char *const add_stage_names[] = {"queued", "verify_write", "sync_wait", "sync",
        "commit"};
    enum { ADD_STAGE_COUNT = sizeof(add_stage_names) / sizeof(add_stage_names[0]) };
    if (!t) { /* a daemon that does not time AddData */
        if (json)
            printf(", \"add_data\": null");
        return;
    }
    const uint64_t us[ADD_STAGE_COUNT] = {t->queued_us, t->verify_write_us, t->sync_wait_us,
        t->sync_us, t->commit_us};
    if (json) {
        printf(", \"add_data\": {\"calls\": %" PRIu64 ", \"bytes\": %" PRIu64, t->calls, t->bytes);
        for (size_t s = 0; s < ADD_STAGE_COUNT; s++)
            printf(", \"%s_us\": %" PRIu64, add_stage_names[s], us[s]);
        printf("}");
        return;
    }
    printf("adddata:      %" PRIu64 " calls, %" PRIu64 " bytes", t->calls, t->bytes);
    if (t->calls) {
        printf("; mean ms per call:");
        for (size_t s = 0; s < ADD_STAGE_COUNT; s++)
            printf("%s %s %.2f", s ? "," : "", add_stage_names[s],
                (double)us[s] / 1e3 / (double)t->calls);
    }
    printf("\n");
}

static void status_print(const Peerdist__DaemonInfoReply *d, bool json)
{
    if (json) {
        printf("{\"version\": ");
        ctl_json_str(stdout, d->software);
        printf(", \"protocol\": %u, \"status\": \"%s\", \"mode\": ", d->protocol_version,
            status_name(d->service_status));
        ctl_json_str(stdout, d->mode);
        printf(", \"socket\": ");
        ctl_json_str(stdout, d->socket_path);
        printf(", \"database\": ");
        ctl_json_str(stdout, d->database_path);
        printf(", \"database_bytes\": %" PRIu64
               ", \"connections\": %u, \"uptime_seconds\": %" PRIu64
               ", \"reclaim_pending_slots\": %" PRIu64 ", \"reclaimed_slots\": %" PRIu64,
            d->database_bytes, d->connections, d->uptime_seconds, d->reclaim_pending, d->reclaimed);
        add_timing_print(d->add_data, true);
        if (d->spare_files)
            printf(", \"spare_files\": {\"files\": %" PRIu64 ", \"bytes\": %" PRIu64
                   ", \"kept\": %" PRIu64 ", \"taken\": %" PRIu64 "}",
                d->spare_files->files, d->spare_files->bytes, d->spare_files->kept,
                d->spare_files->taken);
        else
            printf(", \"spare_files\": null");
        printf("}\n");
        return;
    }
    printf("version:      %s (protocol %u)\n", d->software, d->protocol_version);
    printf("status:       %s\n", status_name(d->service_status));
    printf("mode:         %s\n", d->mode);
    printf("socket:       %s\n", d->socket_path);
    printf("database:     %s (%" PRIu64 " bytes)\n", d->database_path, d->database_bytes);
    printf("connections:  %u\n", d->connections);
    printf("uptime:       %" PRIu64 " s\n", d->uptime_seconds);
    printf("reclaim:      %" PRIu64 " slots of 64 KiB pending, %" PRIu64 " reclaimed\n",
        d->reclaim_pending, d->reclaimed);
    if (d->spare_files)
        printf("spare files:  %" PRIu64 " (%.1f MiB on disk); since start %" PRIu64
               " kept, %" PRIu64 " reused\n",
            d->spare_files->files, (double)d->spare_files->bytes / (1024 * 1024),
            d->spare_files->kept, d->spare_files->taken);
    add_timing_print(d->add_data, false);
}

int ctl_status_main(struct ctl_ctx *x, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    bool json = false;
    int ch;
    x->help = status_help;
    while ((ch = ctl_getopt(x, argc, argv, "", opts)) != CTL_OPT_END) {
        if (ch == 'j')
            json = true;
        else
            return ch == CTL_OPT_HELP ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    }
    if (ctl_want_args(x, argc, argv, 0, ""))
        return CTL_EXIT_USAGE;
    char why[1024];
    struct pdconn *c = ctl_connect_quiet(x, why, sizeof(why));
    if (!c) {
        fprintf(stderr, "peerdistctl status: %s\n", why);
        if (json) {
            printf("{\"status\": \"unavailable\", \"socket\": ");
            ctl_json_str(stdout, x->socket_path);
            printf(", \"error\": ");
            ctl_json_str(stdout, why);
            printf("}\n");
        }
        return CTL_EXIT_FAIL;
    }
    x->json = json;
    Peerdist__DaemonInfoRequest dr = PEERDIST__DAEMON_INFO_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_DAEMON_INFO;
    req.daemon_info = &dr;
    Peerdist__Reply *r = call(x, c, &req, PEERDIST__REPLY__BODY_DAEMON_INFO, "daemon information");
    if (r)
        status_print(r->daemon_info, json);
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    pdconn_free(c);
    return r ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

/* ---- tags ---- */

static const char tags_help[] =
    "Usage: peerdistctl tags [--all] [--json]\n"
    "Lists your content tags: blocks, bytes and segments each labels, and when it was last\n"
    "used (UTC). --all lists every uid's tags (root or group peerdist only).\n"
    "  --json           a JSON array of {uid, tag, guid, blocks, bytes, segments, last_used,\n"
    "                   last_used_utc, added_at, added_at_utc}; on failure {\"error\": ...}\n"
    "Exit: 0 listed, 1 failed, 2 bad usage.\n";

static void tags_print(const Peerdist__TagsReply *t, bool json, bool all)
{
    if (json)
        printf("[");
    else if (all)
        printf("%-10s %-32s %10s %14s %8s  %s\n", "UID", "TAG", "BLOCKS", "BYTES", "SEGMENTS",
            "LAST USED (UTC)");
    for (size_t i = 0; i < t->n_tags; i++) {
        const Peerdist__TagInfo *ti = t->tags[i];
        PEERDIST_CONTENT_TAG tag = {{0}};
        memcpy(tag.Data, ti->tag.data, ti->tag.len < 16 ? ti->tag.len : 16);
        char hex[33], guid[39], used[32], added[32];
        ctl_format_tag(&tag, hex);
        ctl_format_guid(&tag, guid);
        ctl_utc(ti->last_used, used);
        ctl_utc(ti->added_at, added);
        if (json)
            printf("%s{\"uid\": %u, \"tag\": \"%s\", \"guid\": \"%s\", \"blocks\": %" PRIu64
                   ", \"bytes\": %" PRIu64 ", \"segments\": %" PRIu64 ", \"last_used\": %" PRIu64
                   ", \"last_used_utc\": \"%s\", \"added_at\": %" PRIu64
                   ", \"added_at_utc\": \"%s\"}",
                i ? ", " : "", ti->uid, hex, guid, ti->blocks, ti->bytes, ti->segments,
                ti->last_used, used, ti->added_at, added);
        else if (all)
            printf("%-10u %s %10" PRIu64 " %14" PRIu64 " %8" PRIu64 "  %s\n", ti->uid, hex,
                ti->blocks, ti->bytes, ti->segments, used);
        else
            printf("%s  %10" PRIu64 " blocks  %14" PRIu64 " bytes  %6" PRIu64
                   " segments  last used %s\n",
                hex, ti->blocks, ti->bytes, ti->segments, used);
    }
    if (json)
        printf("]\n");
}

int ctl_tags_main(struct ctl_ctx *x, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
        {"all", no_argument, NULL, 'a'}, {NULL, 0, NULL, 0}};
    bool all = false;
    int ch;
    x->help = tags_help;
    while ((ch = ctl_getopt(x, argc, argv, "", opts)) != CTL_OPT_END) {
        switch (ch) {
        case 'j': x->json = true; break;
        case 'a': all = true; break;
        case CTL_OPT_HELP: return CTL_EXIT_OK;
        default: return CTL_EXIT_USAGE;
        }
    }
    if (ctl_want_args(x, argc, argv, 0, ""))
        return CTL_EXIT_USAGE;
    struct pdconn *c = ctl_connect(x);
    if (!c)
        return CTL_EXIT_FAIL;
    Peerdist__TagsRequest t = PEERDIST__TAGS_REQUEST__INIT;
    t.all = all;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_TAGS;
    req.tags = &t;
    Peerdist__Reply *r = call(x, c, &req, PEERDIST__REPLY__BODY_TAGS,
        all ? "listing every uid's tags" : "listing tags");
    if (r) {
        tags_print(r->tags, x->json, all);
        peerdist__reply__free_unpacked(r, NULL);
    }
    pdconn_free(c);
    return r ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

/* ---- flush ---- */

static const char flush_help[] =
    "Usage: peerdistctl flush --tag TAG [--json]\n"
    "       peerdistctl flush --all [--json]\n"
    "       peerdistctl flush --uid UID [--tag TAG] [--json]\n"
    "Removes what TAG added for you (PeerDistClientFlushContent), and reports the labels\n"
    "removed and the bytes freed (0 for a tag that labels nothing). Root or group peerdist:\n"
    "--all clears the whole cache; --uid UID removes that uid's labels (of TAG only with\n"
    "--tag). TAG: 32 hex digits or a GUID string; UID: a number or a user name.\n"
    "  --json           print {labels_removed, bytes_freed}; on failure {\"error\": ...}\n"
    "Exit: 0 flushed, 1 failed, 2 bad usage.\n";

static int parse_uid(const struct ctl_ctx *x, const char *arg, uint32_t *uid)
{
    uint64_t v;
    if (ctl_parse_u64(arg, UINT32_MAX - 1, &v) == 0) {
        *uid = (uint32_t)v;
        return 0;
    }
    struct passwd *pw = getpwnam(arg);
    if (pw) {
        *uid = (uint32_t)pw->pw_uid;
        return 0;
    }
    return ctl_usage_error(x, "--uid wants a uid (0 to %u) or a user name, not '%s'",
               UINT32_MAX - 1, arg),
           -1;
}

int ctl_flush_main(struct ctl_ctx *x, int argc, char **argv)
{
    enum { OPT_ALL = 0x100, OPT_UID, OPT_JSON };
    static const struct option opts[] = {{"tag", required_argument, NULL, 't'},
        {"all", no_argument, NULL, OPT_ALL}, {"uid", required_argument, NULL, OPT_UID},
        {"json", no_argument, NULL, OPT_JSON}, {NULL, 0, NULL, 0}};
    const char *tag_arg = NULL, *uid_arg = NULL;
    bool all = false;
    int ch;
    x->help = flush_help;
    while ((ch = ctl_getopt(x, argc, argv, "t:", opts)) != CTL_OPT_END) {
        switch (ch) {
        case 't': tag_arg = optarg; break;
        case OPT_ALL: all = true; break;
        case OPT_UID: uid_arg = optarg; break;
        case OPT_JSON: x->json = true; break;
        case CTL_OPT_HELP: return CTL_EXIT_OK;
        default: return CTL_EXIT_USAGE;
        }
    }
    if (ctl_want_args(x, argc, argv, 0, ""))
        return CTL_EXIT_USAGE;
    if (all && (tag_arg || uid_arg))
        return ctl_usage_error(x, "--all goes alone (not with --tag or --uid)");
    if (!all && !tag_arg && !uid_arg)
        return ctl_usage_error(x, "one of --tag TAG, --all and --uid UID is needed");
    PEERDIST_CONTENT_TAG tag;
    uint32_t uid = 0;
    if (tag_arg && ctl_parse_tag(tag_arg, &tag) != 0)
        return ctl_usage_error(x, "--tag '%s' is neither 32 hex digits nor a GUID", tag_arg);
    if (uid_arg && parse_uid(x, uid_arg, &uid) != 0)
        return CTL_EXIT_USAGE;
    struct pdconn *c = ctl_connect(x);
    if (!c)
        return CTL_EXIT_FAIL;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    Peerdist__FlushRequest fr = PEERDIST__FLUSH_REQUEST__INIT;
    Peerdist__AdminFlushRequest ar = PEERDIST__ADMIN_FLUSH_REQUEST__INIT;
    const char *what = "flushing the tag";
    if (all || uid_arg) {
        ar.all = all;
        ar.uid = uid;
        if (tag_arg)
            ar.tag = (ProtobufCBinaryData){16, tag.Data};
        req.body_case = PEERDIST__REQUEST__BODY_ADMIN_FLUSH;
        req.admin_flush = &ar;
        what = all ? "flushing the whole cache" : "flushing the uid's labels";
    } else {
        fr.tag = (ProtobufCBinaryData){16, tag.Data};
        req.body_case = PEERDIST__REQUEST__BODY_FLUSH;
        req.flush = &fr;
    }
    Peerdist__Reply *r = call(x, c, &req, 0, what);
    if (r && r->body_case == PEERDIST__REPLY__BODY_FLUSH) {
        const Peerdist__FlushReply *f = r->flush;
        char h[24];
        if (x->json)
            printf("{\"labels_removed\": %" PRIu64 ", \"bytes_freed\": %" PRIu64 "}\n",
                f->labels_removed, f->bytes_freed);
        else
            printf("removed %" PRIu64 " labels, freed %" PRIu64 " bytes (%s)\n", f->labels_removed,
                f->bytes_freed, ctl_human_bytes(f->bytes_freed, h));
    } else if (r) {
        if (x->json)
            printf("{\"labels_removed\": null, \"bytes_freed\": null}\n");
        else
            printf("flushed (this peerdistd does not report what it released)\n");
    }
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    pdconn_free(c);
    return r ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

/* ---- cache ---- */

static const char cache_help[] =
    "Usage: peerdistctl cache [--json]\n"
    "       peerdistctl cache set size SIZE|PERCENT\n"
    "       peerdistctl cache set max-age DURATION\n"
    "       peerdistctl cache set --reset\n"
    "Shows the cache's limit, what it holds (bytes of the data files, blocks, segments,\n"
    "tags), its age limit and its counters, and where each setting came from (default,\n"
    "file, or override). 'cache set' stores an override in the daemon's state directory that\n"
    "wins over peerdistd.conf until 'cache set --reset' (root or group peerdist only).\n"
    "  --json           {limit_bytes, used_bytes, blocks, segments, tags, max_age_s,\n"
    "                   hits_bytes, misses_bytes, added_bytes, evicted_bytes,\n"
    "                   evicted_size_bytes, evicted_age_bytes, flushed_bytes, cache_size,\n"
    "                   cache_size_source, max_age, max_age_source, uid_quota_bytes,\n"
    "                   database_bytes, stored_bytes, peer_fetched_bytes,\n"
    "                   peer_served_bytes}\n"
    "Exit: 0 done, 1 failed, 2 bad usage.\n";

static const char cache_set_help[] =
    "Usage: peerdistctl cache set size SIZE|PERCENT\n"
    "       peerdistctl cache set max-age DURATION\n"
    "       peerdistctl cache set --reset\n"
    "Overrides cache_size or max_age at run time (root or group peerdist only); the override\n"
    "is kept in the state directory and wins over peerdistd.conf until --reset drops it.\n"
    "SIZE: bytes, or with K, M, G or T (at least 64M); PERCENT: 1% to 100% of the cache's\n"
    "file system. DURATION: seconds, or with s, m, h or d. Both may be given at once.\n"
    "Exit: 0 set, 1 failed (refused by the daemon), 2 bad usage.\n";

static Peerdist__Reply *cache_info(const struct ctl_ctx *x, struct pdconn *c)
{
    Peerdist__CacheInfoRequest ci = PEERDIST__CACHE_INFO_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_CACHE_INFO;
    req.cache_info = &ci;
    return call(x, c, &req, PEERDIST__REPLY__BODY_CACHE_INFO, "cache information");
}

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

static void cache_json(const Peerdist__CacheInfoReply *i)
{
    printf("{\"limit_bytes\": %" PRIu64 ", \"used_bytes\": %" PRIu64 ", \"blocks\": %" PRIu64
           ", \"segments\": %" PRIu64 ", \"tags\": %" PRIu64 ", \"max_age_s\": %" PRIu64
           ", \"hits_bytes\": %" PRIu64 ", \"misses_bytes\": %" PRIu64 ", \"added_bytes\": %" PRIu64
           ", \"evicted_bytes\": %" PRIu64 ", \"evicted_size_bytes\": %" PRIu64
           ", \"evicted_age_bytes\": %" PRIu64 ", \"flushed_bytes\": %" PRIu64,
        i->limit_bytes, i->used_bytes, i->blocks, i->segments, i->tags, i->max_age_s, i->hits_bytes,
        i->misses_bytes, i->added_bytes, i->evicted_size_bytes + i->evicted_age_bytes,
        i->evicted_size_bytes, i->evicted_age_bytes, i->flushed_bytes);
    printf(", \"cache_size\": ");
    ctl_json_str(stdout, i->cache_size);
    printf(", \"cache_size_source\": ");
    ctl_json_str(stdout, i->cache_size_source);
    printf(", \"max_age\": ");
    ctl_json_str(stdout, i->max_age);
    printf(", \"max_age_source\": ");
    ctl_json_str(stdout, i->max_age_source);
    printf(", \"uid_quota_bytes\": %" PRIu64 ", \"database_bytes\": %" PRIu64
           ", \"stored_bytes\": %" PRIu64 ", \"peer_fetched_bytes\": %" PRIu64
           ", \"peer_served_bytes\": %" PRIu64 "}\n",
        i->uid_quota, i->database_bytes, i->stored_bytes, i->peer_fetched_bytes,
        i->peer_served_bytes);
}

static void cache_settings_text(const Peerdist__CacheInfoReply *i)
{
    char h[24];
    printf("limit:        %s (%" PRIu64 " bytes; cache_size = %s, from %s)\n",
        ctl_human_bytes(i->limit_bytes, h), i->limit_bytes, or_dash(i->cache_size),
        or_dash(i->cache_size_source));
    printf("max age:      %" PRIu64 " s (max_age = %s, from %s)\n", i->max_age_s,
        or_dash(i->max_age), or_dash(i->max_age_source));
}

static void cache_text(const Peerdist__CacheInfoReply *i)
{
    char h[24];
    cache_settings_text(i);
    printf("used:         %s (%" PRIu64 " bytes of data files)\n",
        ctl_human_bytes(i->used_bytes, h), i->used_bytes);
    printf("stored:       %" PRIu64 " bytes in %" PRIu64 " blocks, %" PRIu64 " segments, %" PRIu64
           " tags\n",
        i->stored_bytes, i->blocks, i->segments, i->tags);
    printf("database:     %" PRIu64 " bytes\n", i->database_bytes);
    if (i->uid_quota)
        printf("uid quota:    %" PRIu64 " bytes\n", i->uid_quota);
    else
        printf("uid quota:    off\n");
    printf("hits:         %" PRIu64 " bytes\n", i->hits_bytes);
    printf("misses:       %" PRIu64 " bytes\n", i->misses_bytes);
    printf("added:        %" PRIu64 " bytes\n", i->added_bytes);
    printf("evicted:      %" PRIu64 " bytes (%" PRIu64 " for size, %" PRIu64 " for age)\n",
        i->evicted_size_bytes + i->evicted_age_bytes, i->evicted_size_bytes, i->evicted_age_bytes);
    printf("flushed:      %" PRIu64 " bytes\n", i->flushed_bytes);
    printf("from peers:   %" PRIu64 " bytes (verified, fetched in distributed mode)\n",
        i->peer_fetched_bytes);
    printf("to peers:     %" PRIu64 " bytes (block bytes served)\n", i->peer_served_bytes);
}

static int cache_set_main(struct ctl_ctx *x, int argc, char **argv)
{
    static const struct option opts[] = {{"reset", no_argument, NULL, 'r'}, {NULL, 0, NULL, 0}};
    bool reset = false;
    int ch;
    ctl_sub(x, "cache set", cache_set_help);
    while ((ch = ctl_getopt(x, argc, argv, "", opts)) != CTL_OPT_END) {
        if (ch == 'r')
            reset = true;
        else
            return ch == CTL_OPT_HELP ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    }
    const char *size = NULL, *age = NULL;
    uint64_t secs;
    for (int i = optind; i < argc; i += 2) {
        bool is_size = strcmp(argv[i], "size") == 0, is_age = strcmp(argv[i], "max-age") == 0;
        if (!is_size && !is_age)
            return ctl_usage_error(x, "unknown setting '%s' (size or max-age)", argv[i]);
        if (i + 1 >= argc)
            return ctl_usage_error(x, "%s needs a value", argv[i]);
        if (is_size)
            size = argv[i + 1];
        else
            age = argv[i + 1];
    }
    if (reset && (size || age))
        return ctl_usage_error(x, "--reset goes alone");
    if (!reset && !size && !age)
        return ctl_usage_error(x, "size SIZE, max-age DURATION or --reset is needed");
    if (size && ctl_check_cache_size(size, CTL_CACHE_SIZE_MIN) != 0)
        return ctl_usage_error(x,
            "size '%s' is neither a percent (1%% to 100%%) nor a size of at least 64M "
            "(bytes, or with K, M, G or T)",
            size);
    if (age && ctl_check_duration(age, CTL_MAX_AGE_MAX, &secs) != 0)
        return ctl_usage_error(x,
            "max-age '%s' is not a positive duration (seconds, or with s, m, h or d; at most "
            "%llud)",
            age, CTL_MAX_AGE_MAX / 86400);
    struct pdconn *c = ctl_connect(x);
    if (!c)
        return CTL_EXIT_FAIL;
    Peerdist__CacheSetRequest cs = PEERDIST__CACHE_SET_REQUEST__INIT;
    cs.cache_size = (char *)(size ? size : "");
    cs.max_age = (char *)(age ? age : "");
    cs.reset = reset;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_CACHE_SET;
    req.cache_set = &cs;
    Peerdist__Reply *r = call(x, c, &req, 0, "setting the cache limits");
    int ret = r ? CTL_EXIT_OK : CTL_EXIT_FAIL;
    if (r) {
        peerdist__reply__free_unpacked(r, NULL);
        /* Show what is in force now, and where it comes from. */
        r = cache_info(x, c);
        if (r)
            cache_settings_text(r->cache_info);
        else
            ret = CTL_EXIT_FAIL;
    }
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    pdconn_free(c);
    return ret;
}

int ctl_cache_main(struct ctl_ctx *x, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int ch;
    x->help = cache_help;
    while ((ch = ctl_getopt(x, argc, argv, "+", opts)) != CTL_OPT_END) {
        if (ch == 'j')
            x->json = true;
        else
            return ch == CTL_OPT_HELP ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    }
    if (optind < argc) {
        if (strcmp(argv[optind], "set") != 0)
            return ctl_usage_error(x, "unknown cache sub-command '%s' (set)", argv[optind]);
        if (x->json)
            return ctl_usage_error(x, "cache set takes no --json");
        return cache_set_main(x, argc - optind, argv + optind);
    }
    struct pdconn *c = ctl_connect(x);
    if (!c)
        return CTL_EXIT_FAIL;
    Peerdist__Reply *r = cache_info(x, c);
    if (r) {
        if (x->json)
            cache_json(r->cache_info);
        else
            cache_text(r->cache_info);
        peerdist__reply__free_unpacked(r, NULL);
    }
    pdconn_free(c);
    return r ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

/* ---- peers ---- */

static const char peers_help[] =
    "Usage: peerdistctl peers [--json]\n"
    "Lists the recent peers of a daemon in distributed mode (root or group peerdist only):\n"
    "each peer's address, when it was last seen (UTC), the Probes and block requests it sent,\n"
    "the block bytes served to it and the verified bytes fetched from it, and whether it is\n"
    "distrusted (until when, and why: a block failing its hash, a malformed message, a\n"
    "timeout). A daemon in another mode lists none.\n"
    "  --json           a JSON array of {address, last_seen, last_seen_utc, probes, requests,\n"
    "                   bytes_served, bytes_fetched, distrusted_until, distrusted_until_utc,\n"
    "                   distrust_reason}; on failure {\"error\": ...}\n"
    "Exit: 0 listed, 1 failed, 2 bad usage.\n";

static void peers_print(const Peerdist__PeersReply *p, bool json)
{
    if (json)
        printf("[");
    else if (p->n_peers)
        printf("%-47s %-20s %8s %8s %14s %14s  %s\n", "PEER", "LAST SEEN (UTC)", "PROBES",
            "REQUESTS", "SERVED", "FETCHED", "DISTRUSTED");
    else
        printf("no peers seen\n");
    for (size_t i = 0; i < p->n_peers; i++) {
        const Peerdist__PeerInfo *pi = p->peers[i];
        char seen[32], until[32];
        ctl_utc(pi->last_seen, seen);
        ctl_utc(pi->distrusted_until, until);
        if (json) {
            printf("%s{\"address\": ", i ? ", " : "");
            ctl_json_str(stdout, pi->address);
            printf(", \"last_seen\": %" PRIu64 ", \"last_seen_utc\": \"%s\", \"probes\": %" PRIu64
                   ", \"requests\": %" PRIu64 ", \"bytes_served\": %" PRIu64
                   ", \"bytes_fetched\": %" PRIu64 ", \"distrusted_until\": %" PRIu64
                   ", \"distrusted_until_utc\": \"%s\", \"distrust_reason\": ",
                pi->last_seen, seen, pi->probes, pi->requests, pi->bytes_served, pi->bytes_fetched,
                pi->distrusted_until, until);
            ctl_json_str(stdout, pi->distrust_reason ? pi->distrust_reason : "");
            printf("}");
        } else {
            printf("%-47s %-20s %8" PRIu64 " %8" PRIu64 " %14" PRIu64 " %14" PRIu64 "  ",
                pi->address, seen, pi->probes, pi->requests, pi->bytes_served, pi->bytes_fetched);
            if (pi->distrusted_until)
                printf("until %s: %s\n", until, or_dash(pi->distrust_reason));
            else
                printf("no\n");
        }
    }
    if (json)
        printf("]\n");
}

int ctl_peers_main(struct ctl_ctx *x, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int ch;
    x->help = peers_help;
    while ((ch = ctl_getopt(x, argc, argv, "", opts)) != CTL_OPT_END) {
        if (ch == 'j')
            x->json = true;
        else
            return ch == CTL_OPT_HELP ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    }
    if (ctl_want_args(x, argc, argv, 0, ""))
        return CTL_EXIT_USAGE;
    struct pdconn *c = ctl_connect(x);
    if (!c)
        return CTL_EXIT_FAIL;
    Peerdist__PeersRequest pr = PEERDIST__PEERS_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_PEERS;
    req.peers = &pr;
    Peerdist__Reply *r = call(x, c, &req, PEERDIST__REPLY__BODY_PEERS, "listing peers");
    if (r) {
        peers_print(r->peers, x->json);
        peerdist__reply__free_unpacked(r, NULL);
    }
    pdconn_free(c);
    return r ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

/* ---- key ---- */

static const char key_help[] =
    "Usage: peerdistctl key show [--json]\n"
    "       peerdistctl key set (--key TEXT | --passphrase-hex HEX)\n"
    "       peerdistctl key export FILE [--force]\n"
    "       peerdistctl key import FILE\n"
    "The server secret every publication's segment keys derive from (root or group peerdist\n"
    "only). 'show' prints its fingerprint, never the secret. 'set --key TEXT' stores the\n"
    "UTF-16LE bytes of TEXT, as 'netsh branchcache set key passphrase=' does; --passphrase-hex\n"
    "stores raw bytes (1 to 1024). 'export' writes the raw secret to FILE (mode 0600; an\n"
    "existing FILE only with --force; '-' for standard output, never a terminal); 'import'\n"
    "reads raw bytes ('-': standard input). A new secret applies to publications made after\n"
    "it; content information handed out before stays valid for what is cached.\n"
    "Exit: 0 done, 1 failed, 2 bad usage.\n";

static Peerdist__Reply *key_call(const struct ctl_ctx *x, struct pdconn *c, Peerdist__KeyOp op,
    const uint8_t *secret, size_t len, const char *what)
{
    Peerdist__KeyRequest k = PEERDIST__KEY_REQUEST__INIT;
    k.op = op;
    k.secret = (ProtobufCBinaryData){len, (uint8_t *)secret};
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_KEY;
    req.key = &k;
    return call(x, c, &req, op == PEERDIST__KEY_OP__KEY_OP_SET ? 0 : PEERDIST__REPLY__BODY_KEY,
        what);
}

/* Frees a reply that may hold the secret, wiping it first. */
static void key_reply_free(Peerdist__Reply *r)
{
    if (!r)
        return;
    if (r->body_case == PEERDIST__REPLY__BODY_KEY && r->key->secret.data)
        OPENSSL_cleanse(r->key->secret.data, r->key->secret.len);
    peerdist__reply__free_unpacked(r, NULL);
}

static int key_show(struct ctl_ctx *x, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int ch;
    ctl_sub(x, "key show", key_help);
    while ((ch = ctl_getopt(x, argc, argv, "", opts)) != CTL_OPT_END) {
        if (ch == 'j')
            x->json = true;
        else
            return ch == CTL_OPT_HELP ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    }
    if (ctl_want_args(x, argc, argv, 0, ""))
        return CTL_EXIT_USAGE;
    struct pdconn *c = ctl_connect(x);
    if (!c)
        return CTL_EXIT_FAIL;
    Peerdist__Reply *r = key_call(x, c, PEERDIST__KEY_OP__KEY_OP_SHOW, NULL, 0,
        "reading the server secret's fingerprint");
    if (r && x->json) {
        printf("{\"fingerprint\": ");
        ctl_json_str(stdout, r->key->fingerprint);
        printf(", \"secret_bytes\": %u}\n", r->key->secret_bytes);
    } else if (r) {
        printf("fingerprint:  %s\nsecret:       %u bytes\n", r->key->fingerprint,
            r->key->secret_bytes);
    }
    int ret = r ? CTL_EXIT_OK : CTL_EXIT_FAIL;
    key_reply_free(r);
    pdconn_free(c);
    return ret;
}

/* Sends the new secret and says what it became. */
static int key_store(const struct ctl_ctx *x, const uint8_t *secret, size_t len)
{
    struct pdconn *c = ctl_connect(x);
    if (!c)
        return CTL_EXIT_FAIL;
    Peerdist__Reply *r = key_call(x, c, PEERDIST__KEY_OP__KEY_OP_SET, secret, len,
        "setting the server secret");
    if (r && r->body_case == PEERDIST__REPLY__BODY_KEY && r->key->fingerprint[0])
        printf("server secret set: %zu bytes, fingerprint %s; it applies to publications made "
               "from now on\n",
            len, r->key->fingerprint);
    else if (r)
        printf("server secret set: %zu bytes; it applies to publications made from now on\n", len);
    int ret = r ? CTL_EXIT_OK : CTL_EXIT_FAIL;
    key_reply_free(r);
    pdconn_free(c);
    return ret;
}

static int key_set(struct ctl_ctx *x, int argc, char **argv)
{
    enum { OPT_KEY = 0x100, OPT_HEX };
    static const struct option opts[] = {{"key", required_argument, NULL, OPT_KEY},
        {"passphrase-hex", required_argument, NULL, OPT_HEX}, {NULL, 0, NULL, 0}};
    const char *text = NULL, *hex = NULL;
    int ch;
    ctl_sub(x, "key set", key_help);
    while ((ch = ctl_getopt(x, argc, argv, "", opts)) != CTL_OPT_END) {
        switch (ch) {
        case OPT_KEY: text = optarg; break;
        case OPT_HEX: hex = optarg; break;
        case CTL_OPT_HELP: return CTL_EXIT_OK;
        default: return CTL_EXIT_USAGE;
        }
    }
    if (ctl_want_args(x, argc, argv, 0, ""))
        return CTL_EXIT_USAGE;
    if (!text == !hex)
        return ctl_usage_error(x, "give one of --key TEXT and --passphrase-hex HEX");
    uint8_t raw[CTL_SECRET_MAX];
    uint8_t *secret = raw;
    size_t len = 0;
    if (hex && ctl_unhex(hex, raw, sizeof(raw), &len) != 0)
        return ctl_usage_error(x,
            "--passphrase-hex wants an even number of hex digits (1 to %u bytes)", CTL_SECRET_MAX);
    /* The same bytes `hash --key` hashes: UTF-16LE without NUL (common/contentinfo.h). */
    if (text && ci_text_key_bytes(text, &secret, &len) != 0)
        return ctl_usage_error(x, "--key is not valid UTF-8");
    int ret;
    if (len == 0 || len > CTL_SECRET_MAX)
        ret = ctl_usage_error(x, "--key gives %zu bytes as UTF-16LE; 1 to %u are allowed", len,
            CTL_SECRET_MAX);
    else
        ret = key_store(x, secret, len);
    OPENSSL_cleanse(secret, len);
    if (secret != raw)
        free(secret);
    return ret;
}

static int key_export(struct ctl_ctx *x, int argc, char **argv)
{
    static const struct option opts[] = {{"force", no_argument, NULL, 'f'}, {NULL, 0, NULL, 0}};
    bool force = false;
    int ch;
    ctl_sub(x, "key export", key_help);
    while ((ch = ctl_getopt(x, argc, argv, "f", opts)) != CTL_OPT_END) {
        if (ch == 'f')
            force = true;
        else
            return ch == CTL_OPT_HELP ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    }
    if (ctl_want_args(x, argc, argv, 1, "FILE"))
        return CTL_EXIT_USAGE;
    const char *file = strcmp(argv[optind], "-") == 0 ? NULL : argv[optind];
    if (!file && isatty(STDOUT_FILENO))
        return ctl_usage_error(x, "refusing to write the secret to a terminal; name a FILE");
    struct stat st;
    if (file && !force && lstat(file, &st) == 0)
        return ctl_fail(x, "%s exists; --force replaces it", file);
    struct pdconn *c = ctl_connect(x);
    if (!c)
        return CTL_EXIT_FAIL;
    Peerdist__Reply *r = key_call(x, c, PEERDIST__KEY_OP__KEY_OP_EXPORT, NULL, 0,
        "exporting the server secret");
    pdconn_free(c);
    if (!r)
        return CTL_EXIT_FAIL;
    int ret = CTL_EXIT_OK;
    const ProtobufCBinaryData *s = &r->key->secret;
    struct ctl_out o = {.fd = -1};
    if (s->len == 0 || s->len > CTL_SECRET_MAX)
        ret = ctl_fail(x, "peerdistd sent a secret of %zu bytes", s->len);
    else if (ctl_out_open(&o, file, CTL_OUT_PRIVATE | (force ? 0 : CTL_OUT_NOREPLACE)) != 0)
        ret = ctl_fail(x, "%s: %s%s", file, strerror(errno),
            errno == EEXIST ? " (--force replaces it)" : "");
    else if (ctl_write_all(o.fd, s->data, s->len) != 0 || ctl_out_commit(&o, -1) != 0)
        ret = ctl_fail(x, "%s: %s", file ? file : "standard output", strerror(errno));
    if (ret == CTL_EXIT_OK && file)
        fprintf(stderr, "exported %zu bytes (fingerprint %s) to %s\n", s->len, r->key->fingerprint,
            file);
    ctl_out_abort(&o);
    key_reply_free(r);
    return ret;
}

static int key_import(struct ctl_ctx *x, int argc, char **argv)
{
    int ch;
    ctl_sub(x, "key import", key_help);
    while ((ch = ctl_getopt(x, argc, argv, "", NULL)) != CTL_OPT_END)
        return ch == CTL_OPT_HELP ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    if (ctl_want_args(x, argc, argv, 1, "FILE"))
        return CTL_EXIT_USAGE;
    const char *file = argv[optind];
    bool is_stdin = strcmp(file, "-") == 0;
    int fd = is_stdin ? STDIN_FILENO : open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ctl_fail(x, "%s: %s", file, strerror(errno));
    uint8_t buf[CTL_SECRET_MAX + 1];
    size_t len = 0;
    ssize_t n = 0;
    while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
    }
    int e = errno;
    if (!is_stdin)
        close(fd);
    int ret;
    if (n < 0)
        ret = ctl_fail(x, "%s: %s", file, strerror(e));
    else if (len == 0 || len > CTL_SECRET_MAX)
        ret = ctl_fail(x, "%s: a secret is 1 to %u raw bytes, this is %s", file, CTL_SECRET_MAX,
            len ? "longer" : "empty");
    else
        ret = key_store(x, buf, len);
    OPENSSL_cleanse(buf, sizeof(buf));
    return ret;
}

int ctl_key_main(struct ctl_ctx *x, int argc, char **argv)
{
    int ch;
    x->help = key_help;
    while ((ch = ctl_getopt(x, argc, argv, "+", NULL)) != CTL_OPT_END)
        return ch == CTL_OPT_HELP ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    if (optind >= argc)
        return ctl_usage_error(x, "a sub-command is needed: show, set, export or import");
    const char *sub = argv[optind];
    argc -= optind;
    argv += optind;
    if (strcmp(sub, "show") == 0)
        return key_show(x, argc, argv);
    if (strcmp(sub, "set") == 0)
        return key_set(x, argc, argv);
    if (strcmp(sub, "export") == 0)
        return key_export(x, argc, argv);
    if (strcmp(sub, "import") == 0)
        return key_import(x, argc, argv);
    return ctl_usage_error(x, "unknown key sub-command '%s' (show, set, export, import)", sub);
}
