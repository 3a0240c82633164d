/* SPDX-License-Identifier: MIT */
/* ctl-ci.c - `peerdistctl hash` writes the content information of a file (or of a byte range
 * of it) from a server passphrase or text key; `peerdistctl ci-dump` parses one and prints
 * it, or says what is wrong at which byte. Both sit on common/contentinfo.h. */
#include "ctl-ci.h"

#include "contentinfo.h"
#include "ctl/ctl-cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CTL_READ_SIZE (1u << 20) /* bytes per slot (one read() from a file) while hashing */
#define CTL_SLOTS 16 /* slots between the reading and the hashing thread: 16 MiB of slack */
#define CTL_MAX_PASSPHRASE 1024u /* bytes of a binary passphrase */

struct ctl_hash_opts {
    const char *file, *out, *pass_hex, *key;
    int version;
    bool ranged;
    uint64_t range_offset, range_length;
};

/* --- small helpers ------------------------------------------------------------------------ */

static int ci_parse_dec(const char *s, const char *end, uint64_t *v)
{
    char *stop;

    if (s == end || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    *v = strtoull(s, &stop, 10);
    return errno || stop != end ? -1 : 0;
}

/* OFFSET:LENGTH, both decimal. */
static int ctl_parse_range(const char *arg, uint64_t *offset, uint64_t *length)
{
    const char *colon = strchr(arg, ':');

    if (!colon || ci_parse_dec(arg, colon, offset) < 0 ||
        ci_parse_dec(colon + 1, colon + strlen(colon), length) < 0)
        return -1;
    return 0;
}

static void ctl_print_hex(FILE *f, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", p[i]);
}

/* --- hash --------------------------------------------------------------------------------- */

static const char ctl_hash_help[] =
    "Usage: peerdistctl hash FILE --version 1|2 (--passphrase-hex HEX | --key TEXT)\n"
    "                        [--range OFFSET:LENGTH] [-o OUT]\n"
    "Writes the MS-PCCRC content information of FILE (or of the byte range) to OUT,\n"
    "or to standard output (never to a terminal). No daemon is needed.\n"
    "  --passphrase-hex HEX  the server passphrase as bytes (1 to 1024)\n"
    "  --key TEXT            a text key, hashed as UTF-16LE like 'netsh branchcache set key'\n"
    "  --range OFF:LEN       content information for that byte range only (decimal)\n"
    "  -o, --output OUT      a temporary file beside OUT, renamed over it on success\n"
    "FILE '-' reads standard input. Exit: 0 done, 1 failed (OUT untouched), 2 bad usage.\n";

static int ctl_hash_args(struct ctl_ctx *x, int argc, char **argv, struct ctl_hash_opts *o)
{
    enum { OPT_VERSION = 0x100, OPT_PASS, OPT_KEY, OPT_RANGE };
    static const struct option longopts[] = {
        {"version", required_argument, NULL, OPT_VERSION},
        {"passphrase-hex", required_argument, NULL, OPT_PASS},
        {"key", required_argument, NULL, OPT_KEY},
        {"range", required_argument, NULL, OPT_RANGE},
        {"output", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    int c;

    x->help = ctl_hash_help;
    while ((c = ctl_getopt(x, argc, argv, "o:", longopts)) != CTL_OPT_END) {
        switch (c) {
        case OPT_VERSION:
            if (strcmp(optarg, "1") && strcmp(optarg, "2"))
                return ctl_usage_error(x, "--version must be 1 or 2, not '%s'", optarg);
            o->version = optarg[0] - '0';
            break;
        case OPT_PASS: o->pass_hex = optarg; break;
        case OPT_KEY: o->key = optarg; break;
        case 'o': o->out = optarg; break;
        case OPT_RANGE:
            if (ctl_parse_range(optarg, &o->range_offset, &o->range_length) < 0)
                return ctl_usage_error(x, "--range wants OFFSET:LENGTH in decimal, not '%s'",
                    optarg);
            o->ranged = true;
            break;
        case CTL_OPT_HELP: return -1;
        default: return CTL_EXIT_USAGE;
        }
    }
    if (ctl_want_args(x, argc, argv, 1, "FILE"))
        return CTL_EXIT_USAGE;
    o->file = argv[optind];
    if (o->version == 0)
        return ctl_usage_error(x, "--version 1 or --version 2 is needed");
    if (!o->pass_hex == !o->key)
        return ctl_usage_error(x, "give one of --passphrase-hex and --key");
    return 0;
}

static int ctl_hash_secret(const struct ctl_ctx *x, const struct ctl_hash_opts *o,
    struct ci_secret *ks)
{
    enum ci_hash_alg alg = o->version == 1 ? CI_HASH_SHA256 : CI_HASH_SHA512_TRUNC;
    uint8_t pass[CTL_MAX_PASSPHRASE];
    size_t len;
    int rc;

    if (o->key) {
        if (ci_secret_from_text(alg, o->key, ks) < 0)
            return ctl_usage_error(x, "--key is not valid UTF-8");
        return 0;
    }
    if (ctl_unhex(o->pass_hex, pass, sizeof(pass), &len) < 0)
        return ctl_usage_error(x,
            "--passphrase-hex wants an even number of hex digits (1 to 1024 bytes)");
    rc = ci_secret_from_passphrase(alg, pass, len, ks);
    OPENSSL_cleanse(pass, sizeof(pass));
    if (rc < 0)
        return ctl_fail(x, "deriving the server secret failed");
    return 0;
}

/*
 * Hashing runs on 1 + L threads joined by a ring of buffers: this one reads the file (and, for
 * V2, finds the segment ends with the cutter); L hashing lanes (one per CPU, at most
 * CTL_MAX_LANES) each go over every slot and compute every L-th digest (V1 blocks, V2
 * segments: independent digests), so the digest itself, the floor, runs on every core. A slot
 * is refilled once every lane is past it; ci_gen_finish_lanes puts the digests back in order.
 */
#define CTL_MAX_LANES 4

struct ctl_slot {
    uint8_t *buf;
    size_t len;
    size_t *ends; /* V2: segment ends in buf */
    size_t n_ends;
};

struct ctl_pipe;

struct ctl_lane {
    struct ctl_pipe *pp;
    struct ci_gen *gen;
    unsigned hashed; /* slots this lane is done with, modulo 2^32 */
    pthread_t th;
};

struct ctl_pipe {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct ctl_slot slots[CTL_SLOTS];
    unsigned filled; /* slots handed over, modulo 2^32 */
    bool eof;        /* the reader hands over nothing more */
    bool failed;     /* a hashing lane gave up: everybody stops */
    bool cut;        /* V2: slots carry ends */
    unsigned n_lanes;
    struct ctl_lane lanes[CTL_MAX_LANES];
};

static void *ctl_hash_thread(void *arg)
{
    struct ctl_lane *ln = arg;
    struct ctl_pipe *pp = ln->pp;

    pthread_mutex_lock(&pp->mu);
    for (;;) {
        while (pp->filled == ln->hashed && !pp->eof && !pp->failed)
            pthread_cond_wait(&pp->cv, &pp->mu);
        if (pp->filled == ln->hashed || pp->failed)
            break;
        struct ctl_slot *sl = &pp->slots[ln->hashed % CTL_SLOTS];
        pthread_mutex_unlock(&pp->mu);
        int rc = pp->cut ? ci_gen_feed_cut(ln->gen, sl->buf, sl->len, sl->ends, sl->n_ends)
                         : ci_gen_feed(ln->gen, sl->buf, sl->len);
        pthread_mutex_lock(&pp->mu);
        if (rc < 0) {
            pp->failed = true;
            pthread_cond_broadcast(&pp->cv);
            break;
        }
        ln->hashed++;
        pthread_cond_broadcast(&pp->cv);
    }
    pthread_mutex_unlock(&pp->mu);
    return NULL;
}

/* Slots the slowest lane has not finished; under the lock. */
static unsigned ctl_pipe_busy(const struct ctl_pipe *pp)
{
    unsigned busy = 0;

    for (unsigned i = 0; i < pp->n_lanes; i++)
        if (pp->filled - pp->lanes[i].hashed > busy)
            busy = pp->filled - pp->lanes[i].hashed;
    return busy;
}

/* Fills a slot: whole CTL_READ_SIZE reads but at the end (pipes may give less per read). */
static ssize_t ctl_read_slot(int fd, uint8_t *buf)
{
    size_t got = 0;

    while (got < CTL_READ_SIZE) {
        ssize_t n = read(fd, buf + got, CTL_READ_SIZE - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* The reading side; 0 when every byte went into a slot (a hashing lane may still fail). */
static int ctl_hash_read(struct ctl_pipe *pp, int fd, const char *name, struct ci_cutter *cutter,
    struct ctl_progress *prog, uint64_t *done)
{
    for (;;) {
        pthread_mutex_lock(&pp->mu);
        while (ctl_pipe_busy(pp) == CTL_SLOTS && !pp->failed)
            pthread_cond_wait(&pp->cv, &pp->mu);
        bool failed = pp->failed;
        pthread_mutex_unlock(&pp->mu);
        if (failed)
            return 0; /* reported by the caller */
        struct ctl_slot *sl = &pp->slots[pp->filled % CTL_SLOTS];
        ssize_t n = ctl_read_slot(fd, sl->buf);
        if (n < 0) {
            ctl_progress_clear(prog);
            fprintf(stderr, "peerdistctl hash: %s: %s\n", name, strerror(errno));
            return -1;
        }
        if (n == 0)
            return 0;
        sl->len = (size_t)n;
        if (cutter)
            sl->n_ends = ci_cutter_scan(cutter, sl->buf, sl->len, sl->ends);
        pthread_mutex_lock(&pp->mu);
        pp->filled++;
        pthread_cond_broadcast(&pp->cv);
        pthread_mutex_unlock(&pp->mu);
        *done += (uint64_t)n;
        ctl_progress_update(prog, *done);
    }
}

/* Hashing lanes: one per online CPU, 1 to CTL_MAX_LANES. */
static unsigned ctl_hash_lanes(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    return cpus < 1 ? 1 : cpus > CTL_MAX_LANES ? CTL_MAX_LANES : (unsigned)cpus;
}

/* Starts the lanes' threads; how many started (all, or the rest are not needed: failed). */
static unsigned ctl_hash_start(struct ctl_pipe *pp)
{
    unsigned started = 0;

    while (started < pp->n_lanes) {
        struct ctl_lane *ln = &pp->lanes[started];

        if (pthread_create(&ln->th, NULL, ctl_hash_thread, ln) != 0)
            break;
        started++;
    }
    return started;
}

/* Feeds the whole file to the lanes' generators, then assembles the content information; a
 * progress line on a terminal for big files. */
static int ctl_hash_feed(int fd, const char *name, const struct ci_secret *ks, int version,
    struct ctl_progress *prog, uint64_t *done, struct ci_info **out)
{
    struct ctl_pipe pp = {.cut = version == 2, .n_lanes = ctl_hash_lanes()};
    struct ci_cutter *cutter = pp.cut ? ci_cutter_new() : NULL;
    struct ci_gen *gens[CTL_MAX_LANES];
    struct stat st;
    unsigned started = 0;
    int rc = -1;
    bool ok = !pp.cut || cutter;

    for (unsigned i = 0; i < pp.n_lanes; i++) {
        gens[i] = ci_gen_new_lane(version == 1 ? CI_VERSION_1 : CI_VERSION_2, ks, i, pp.n_lanes);
        pp.lanes[i] = (struct ctl_lane){.pp = &pp, .gen = gens[i]};
        ok = ok && gens[i];
    }
    for (int i = 0; i < CTL_SLOTS; i++) {
        pp.slots[i].buf = malloc(CTL_READ_SIZE);
        pp.slots[i].ends = pp.cut ? malloc(CI_CUTTER_MAX_ENDS(CTL_READ_SIZE) * sizeof(size_t))
                                  : NULL;
        ok = ok && pp.slots[i].buf && (!pp.cut || pp.slots[i].ends);
    }
    bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);

    if (regular)
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL); /* a hint: cold files read ahead */
    pthread_mutex_init(&pp.mu, NULL);
    pthread_cond_init(&pp.cv, NULL);
    if (ok && (started = ctl_hash_start(&pp)) == pp.n_lanes) {
        ctl_progress_start(prog, "hashing", regular ? (uint64_t)st.st_size : 0);
        rc = ctl_hash_read(&pp, fd, name, cutter, prog, done);
    } else {
        fprintf(stderr, "peerdistctl hash: out of memory or threads\n");
    }
    pthread_mutex_lock(&pp.mu);
    pp.eof = true;
    pp.failed = pp.failed || started < pp.n_lanes; /* the lanes that did start stop now */
    pthread_cond_broadcast(&pp.cv);
    pthread_mutex_unlock(&pp.mu);
    for (unsigned i = 0; i < started; i++)
        pthread_join(pp.lanes[i].th, NULL);
    if (rc == 0 && (pp.failed || ci_gen_finish_lanes(gens, pp.n_lanes, out) < 0)) {
        ctl_progress_clear(prog);
        fprintf(stderr, "peerdistctl hash: hashing failed\n");
        rc = -1;
    }
    pthread_cond_destroy(&pp.cv);
    pthread_mutex_destroy(&pp.mu);
    for (int i = 0; i < CTL_SLOTS; i++) {
        free(pp.slots[i].buf);
        free(pp.slots[i].ends);
    }
    for (unsigned i = 0; i < pp.n_lanes; i++)
        ci_gen_free(gens[i]);
    ci_cutter_free(cutter);
    return rc;
}

static int ctl_hash_output(const struct ctl_hash_opts *o, const struct ci_info *ci)
{
    uint8_t *wire;
    size_t len;
    struct ctl_out out;
    int rc;

    if (ci_serialize(ci, &wire, &len) < 0)
        return CTL_EXIT_FAIL;
    if (ctl_out_open(&out, o->out, 0) < 0) {
        fprintf(stderr, "peerdistctl hash: %s: %s\n", o->out, strerror(errno));
        free(wire);
        return CTL_EXIT_FAIL;
    }
    rc = ctl_write_all(out.fd, wire, len);
    if (rc == 0)
        rc = ctl_out_commit(&out, -1);
    if (rc < 0)
        fprintf(stderr, "peerdistctl hash: writing %s: %s\n", o->out ? o->out : "stdout",
            strerror(errno));
    ctl_out_abort(&out);
    free(wire);
    return rc < 0 ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}

/* The whole content is hashed even for a range: V1 HoD covers whole segments and V2 cut
 * points depend on what precedes them. */
static int ctl_hash_run(const struct ctl_hash_opts *o, const struct ci_secret *ks)
{
    bool is_stdin = strcmp(o->file, "-") == 0;
    int fd = is_stdin ? STDIN_FILENO : open(o->file, O_RDONLY | O_CLOEXEC);
    struct ci_info *full = NULL, *ranged = NULL;
    struct ctl_progress prog;
    uint64_t done = 0;
    int rc = CTL_EXIT_FAIL;

    if (fd < 0) {
        fprintf(stderr, "peerdistctl hash: %s: %s\n", o->file, strerror(errno));
        return CTL_EXIT_FAIL;
    }
    if (ctl_hash_feed(fd, o->file, ks, o->version, &prog, &done, &full) < 0)
        goto fail;
    if (o->ranged && ci_range(full, o->range_offset, o->range_length, &ranged) < 0) {
        fprintf(stderr,
            "peerdistctl hash: range %" PRIu64 ":%" PRIu64
            " is empty or outside the content (%" PRIu64 " bytes)\n",
            o->range_offset, o->range_length, full->range_length);
        goto fail;
    }
    rc = ctl_hash_output(o, ranged ? ranged : full);
    if (rc == CTL_EXIT_OK)
        ctl_progress_done(&prog, done, "hashed %s (version %d)", o->file, o->version);
fail:
    ci_info_free(ranged);
    ci_info_free(full);
    if (!is_stdin)
        close(fd);
    return rc;
}

int ctl_hash_main(struct ctl_ctx *x, int argc, char **argv)
{
    struct ctl_hash_opts o = {0};
    struct ci_secret ks;
    int rc = ctl_hash_args(x, argc, argv, &o);

    if (rc)
        return rc < 0 ? CTL_EXIT_OK : rc;
    if (!o.out && isatty(STDOUT_FILENO))
        return ctl_usage_error(x,
            "refusing to write binary content information to a "
            "terminal; use -o OUT or redirect");
    if ((rc = ctl_hash_secret(x, &o, &ks)))
        return rc;
    rc = ctl_hash_run(&o, &ks);
    OPENSSL_cleanse(&ks, sizeof(ks));
    return rc;
}

/* --- ci-dump ------------------------------------------------------------------------------ */

static const char ctl_dump_help[] =
    "Usage: peerdistctl ci-dump FILE [--json]\n"
    "Parses MS-PCCRC content information (V1 or V2) and prints its version, range,\n"
    "segments (offset, length, HoD, segment secret, segment ID) and block hashes.\n"
    "A malformed file is reported with the byte offset at fault. FILE '-' reads\n"
    "standard input. No daemon is needed.\n"
    "  --json           one JSON object: version, hash_algorithm, digest_size, range,\n"
    "                   header, segments (with block_hashes)\n"
    "Exit: 0 parsed, 1 malformed or unreadable, 2 bad usage.\n";

static const char *ctl_error_name(DWORD code)
{
    switch (code) {
    case PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO: return "PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO";
    case PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED:
        return "PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED";
    case ERROR_NOT_ENOUGH_MEMORY: return "ERROR_NOT_ENOUGH_MEMORY";
    }
    return "error";
}

/* Reads through the streaming parser, as the daemon receives content information. */
static int ctl_dump_read(const char *name, struct ci_info **ci)
{
    bool is_stdin = strcmp(name, "-") == 0;
    int fd = is_stdin ? STDIN_FILENO : open(name, O_RDONLY | O_CLOEXEC);
    struct ci_stream *st = ci_stream_new(0);
    uint8_t buf[64 * 1024];
    struct ci_error err = {0};
    DWORD code = ERROR_SUCCESS;
    ssize_t n = 0;

    if (fd < 0 || !st) {
        fprintf(stderr, "peerdistctl ci-dump: %s: %s\n", name, strerror(fd < 0 ? errno : ENOMEM));
        ci_stream_free(st);
        return CTL_EXIT_FAIL;
    }
    while (!code && (n = read(fd, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        code = ci_stream_feed(st, buf, (size_t)n, &err);
    }
    if (!is_stdin)
        close(fd);
    if (!code && n < 0) {
        fprintf(stderr, "peerdistctl ci-dump: %s: %s\n", name, strerror(errno));
        ci_stream_free(st);
        return CTL_EXIT_FAIL;
    }
    if (!code)
        code = ci_stream_finish(st, ci, &err);
    ci_stream_free(st);
    if (code)
        fprintf(stderr, "peerdistctl ci-dump: %s: at byte %zu: %s (%s, %u)\n", name, err.offset,
            err.reason, ctl_error_name(code), (unsigned)code);
    return code ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}

static void ctl_dump_text(const struct ci_info *ci)
{
    size_t d = ci->digest_len;

    printf("version: %d.0\nhash: %s\n", ci->version, ci_hash_alg_name(ci->alg));
    printf("range: %" PRIu64 "-%" PRIu64 " (%" PRIu64 " bytes%s)\n", ci->range_offset,
        ci->range_offset + ci->range_length, ci->range_length, ci->whole ? ", whole content" : "");
    if (ci->version == CI_VERSION_1)
        printf("header: dwOffsetInFirstSegment %" PRIu32 ", dwReadBytesInLastSegment %" PRIu32 "\n",
            ci->offset_in_first, ci->read_in_last);
    else
        printf("header: ullStartInContent %" PRIu64 ", ullIndexOfFirstSegment %" PRIu64
               ", dwOffsetInFirstSegment %" PRIu32 ", ullLengthOfRange %" PRIu64 "\n",
            ci->v2_start, ci->v2_first_index, ci->offset_in_first, ci->v2_range_length);
    printf("segments: %zu\n", ci->n_segments);
    for (size_t i = 0; i < ci->n_segments; i++) {
        const struct ci_segment *s = &ci->segments[i];

        printf("segment %zu:\n  offset: %" PRIu64 "\n  length: %" PRIu32 "\n", i, s->offset,
            s->length);
        printf("  hod: ");
        ctl_print_hex(stdout, s->hod, d);
        printf("\n  secret: ");
        ctl_print_hex(stdout, s->secret, d);
        printf("\n  id: ");
        ctl_print_hex(stdout, s->id, d);
        printf("\n");
        if (ci->version == CI_VERSION_2)
            continue;
        printf("  blocks: %" PRIu32 " listed of %" PRIu32 " (block size %" PRIu32 ")\n",
            s->n_blocks, ci_segment_block_count(s), s->block_size);
        for (uint32_t b = 0; b < s->n_blocks; b++) {
            printf("  block %" PRIu32 ": ", s->first_block + b);
            ctl_print_hex(stdout, s->block_hashes + (size_t)b * d, d);
            printf("\n");
        }
    }
}

static void ctl_json_hex(const char *name, const uint8_t *p, size_t n)
{
    printf("\"%s\":\"", name);
    ctl_print_hex(stdout, p, n);
    printf("\"");
}

static void ctl_dump_json_segment(const struct ci_info *ci, size_t i)
{
    const struct ci_segment *s = &ci->segments[i];

    printf("%s{\"index\":%zu,\"offset\":%" PRIu64 ",\"length\":%" PRIu32 ",\"block_size\":%" PRIu32
           ",",
        i ? "," : "", i, s->offset, s->length, s->block_size);
    ctl_json_hex("hod", s->hod, ci->digest_len);
    printf(",");
    ctl_json_hex("secret", s->secret, ci->digest_len);
    printf(",");
    ctl_json_hex("id", s->id, ci->digest_len);
    printf(",\"block_count\":%" PRIu32 ",\"first_block\":%" PRIu32 ",\"block_hashes\":[",
        ci->version == CI_VERSION_1 ? ci_segment_block_count(s) : 1, s->first_block);
    for (uint32_t b = 0; b < s->n_blocks; b++) {
        printf("%s\"", b ? "," : "");
        ctl_print_hex(stdout, s->block_hashes + (size_t)b * ci->digest_len, ci->digest_len);
        printf("\"");
    }
    printf("]}");
}

static void ctl_dump_json(const struct ci_info *ci)
{
    printf("{\"version\":%d,\"hash_algorithm\":\"%s\",\"digest_size\":%zu,", ci->version,
        ci_hash_alg_name(ci->alg), ci->digest_len);
    printf("\"range\":{\"offset\":%" PRIu64 ",\"length\":%" PRIu64 ",\"whole\":%s},",
        ci->range_offset, ci->range_length, ci->whole ? "true" : "false");
    if (ci->version == CI_VERSION_1)
        printf("\"header\":{\"offset_in_first_segment\":%" PRIu32
               ",\"read_bytes_in_last_segment\":%" PRIu32 "},",
            ci->offset_in_first, ci->read_in_last);
    else
        printf("\"header\":{\"start_in_content\":%" PRIu64 ",\"index_of_first_segment\":%" PRIu64
               ",\"offset_in_first_segment\":%" PRIu32 ",\"length_of_range\":%" PRIu64 "},",
            ci->v2_start, ci->v2_first_index, ci->offset_in_first, ci->v2_range_length);
    printf("\"segments\":[");
    for (size_t i = 0; i < ci->n_segments; i++)
        ctl_dump_json_segment(ci, i);
    printf("]}\n");
}

int ctl_ci_dump_main(struct ctl_ctx *x, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    struct ci_info *ci = NULL;
    bool json = false;
    int c, rc;

    x->help = ctl_dump_help;
    while ((c = ctl_getopt(x, argc, argv, "", longopts)) != CTL_OPT_END) {
        switch (c) {
        case 'j': json = true; break;
        case CTL_OPT_HELP: return CTL_EXIT_OK;
        default: return CTL_EXIT_USAGE;
        }
    }
    if (ctl_want_args(x, argc, argv, 1, "FILE"))
        return CTL_EXIT_USAGE;
    rc = ctl_dump_read(argv[optind], &ci);
    if (rc)
        return rc;
    if (json)
        ctl_dump_json(ci);
    else
        ctl_dump_text(ci);
    ci_info_free(ci);
    if (fflush(stdout) != 0)
        return CTL_EXIT_FAIL;
    return CTL_EXIT_OK;
}
