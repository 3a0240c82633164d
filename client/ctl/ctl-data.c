/*
 * ctl-data.c - `peerdistctl publish | inject | get | tags | flush`: the Linux
 * counterparts of BranchCacheTool's /PublishCI and /AddData, a reader that
 * goes through the cache, and the caller's tags. All but `tags` use only
 * <peerdist.h>, as an application would.
 */
#include "ctl-data.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <peerdist.h>

#include "conn.h"
#include "contentinfo.h"
#include "ctl-util.h"

/* Bytes per AddToStream / AddData / read: what one request carries. */
#define CTL_CHUNK PD_MAX_CHUNK
/* Content information larger than this is refused (about 64 TiB of V1 content). */
#define CTL_MAX_CI (64u * 1024 * 1024)
#define CTL_DEFAULT_TIMEOUT_MS 0 /* PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY */

static const char *err_name(DWORD e)
{
    switch (e) {
    case ERROR_INVALID_PARAMETER: return "ERROR_INVALID_PARAMETER";
    case ERROR_INVALID_HANDLE: return "ERROR_INVALID_HANDLE";
    case ERROR_INVALID_DATA: return "ERROR_INVALID_DATA (bytes do not match their hash)";
    case ERROR_CALL_NOT_IMPLEMENTED: return "ERROR_CALL_NOT_IMPLEMENTED";
    case ERROR_NOT_FOUND: return "ERROR_NOT_FOUND";
    case ERROR_ACCESS_DISABLED_BY_POLICY:
        return "ERROR_ACCESS_DISABLED_BY_POLICY (mode = disabled)";
    case PEERDIST_ERROR_SERVICE_UNAVAILABLE:
        return "PEERDIST_ERROR_SERVICE_UNAVAILABLE (is peerdistd running?)";
    case PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO: return "PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO";
    case PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED:
        return "PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED";
    case PEERDIST_ERROR_OUT_OF_BOUNDS: return "PEERDIST_ERROR_OUT_OF_BOUNDS";
    case PEERDIST_ERROR_ALREADY_EXISTS: return "PEERDIST_ERROR_ALREADY_EXISTS";
    default: return "error";
    }
}

static int fail(const char *cmd, const char *what, DWORD e)
{
    fprintf(stderr, "peerdistctl %s: %s: %s (%lu)\n", cmd, what, err_name(e), (unsigned long)e);
    return CTL_EXIT_FAIL;
}

/* Waits for an asynchronous call: rc is what the call returned. */
static DWORD wait_op(DWORD rc, LPOVERLAPPED ov, DWORD *bytes)
{
    DWORD n = 0;
    if (rc != ERROR_IO_PENDING)
        return rc;
    if (PeerDistGetOverlappedResult(ov, &n, TRUE)) {
        if (bytes)
            *bytes = n;
        return ERROR_SUCCESS;
    }
    if (bytes)
        *bytes = n;
    return GetLastError();
}

static int read_file(const char *cmd, const char *path, uint8_t **data, size_t *len, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "peerdistctl %s: %s: %s\n", cmd, path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > cap) {
        fprintf(stderr, "peerdistctl %s: %s: larger than %zu bytes\n", cmd, path, cap);
        close(fd);
        return -1;
    }
    *len = (size_t)st.st_size;
    *data = malloc(*len ? *len : 1);
    size_t got = 0;
    while (*data && got < *len) {
        ssize_t n = read(fd, *data + got, *len - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!*data || got != *len) {
        fprintf(stderr, "peerdistctl %s: %s: short read\n", cmd, path);
        free(*data);
        return -1;
    }
    return 0;
}

static int startup(const char *cmd, PEERDIST_INSTANCE_HANDLE *h)
{
    DWORD rc = PeerDistStartup(PEERDIST_VERSION, h, NULL);
    return rc == ERROR_SUCCESS ? 0 : (fail(cmd, "PeerDistStartup", rc), -1);
}

/* ---- publish ---- */

static void random_guid(char out[39])
{
    uint8_t b[16];
    RAND_bytes(b, sizeof(b));
    b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
    b[8] = (b[8] & 0x3f) | 0x80;
    snprintf(out, 39, "{%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x}",
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15]);
}

static int publish_stream(PEERDIST_INSTANCE_HANDLE h, PEERDIST_STREAM_HANDLE s, int fd,
    uint64_t total)
{
    uint8_t *buf = malloc(CTL_CHUNK);
    OVERLAPPED ov;
    struct ctl_progress prog;
    uint64_t done = 0;
    ctl_progress_start(&prog, "publishing", total);
    int ret = buf ? 0 : -1;
    while (ret == 0) {
        ssize_t n = read(fd, buf, CTL_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "peerdistctl publish: read: %s\n", strerror(errno));
            ret = -1;
            break;
        }
        if (n == 0)
            break;
        memset(&ov, 0, sizeof(ov));
        DWORD rc = wait_op(PeerDistServerPublishAddToStream(h, s, (DWORD)n, buf, &ov), &ov, NULL);
        if (rc != ERROR_SUCCESS)
            ret = fail("publish", "PeerDistServerPublishAddToStream", rc);
        done += (uint64_t)n;
        ctl_progress_update(&prog, done);
    }
    free(buf);
    if (ret != 0)
        return ret;
    memset(&ov, 0, sizeof(ov));
    DWORD rc = wait_op(PeerDistServerPublishCompleteStream(h, s, &ov), &ov, NULL);
    return rc == ERROR_SUCCESS ? 0 : fail("publish", "PeerDistServerPublishCompleteStream", rc);
}

/* Retrieves the whole content information of a publication into out. */
static int retrieve_ci(PEERDIST_INSTANCE_HANDLE h, const char *id, int out_fd)
{
    PEERDIST_CONTENTINFO_HANDLE ci;
    DWORD rc = PeerDistServerOpenContentInformation(h, (DWORD)strlen(id), (PBYTE)id, 0, 0, NULL, 0,
        &ci);
    if (rc != ERROR_SUCCESS)
        return fail("publish", "PeerDistServerOpenContentInformation", rc);
    uint8_t *buf = malloc(CTL_CHUNK);
    int ret = buf ? 0 : -1;
    uint64_t expect = 0;
    while (ret == 0) {
        OVERLAPPED ov = {0};
        DWORD n = 0;
        rc = wait_op(PeerDistServerRetrieveContentInformation(h, ci, CTL_CHUNK, buf, &ov), &ov, &n);
        if (rc == PEERDIST_ERROR_NO_MORE)
            break;
        uint64_t at = (uint64_t)ov.OffsetHigh << 32 | ov.Offset;
        if (rc != ERROR_SUCCESS)
            ret = fail("publish", "PeerDistServerRetrieveContentInformation", rc);
        else if (at != expect)
            ret = (fprintf(stderr,
                       "peerdistctl publish: chunk at %" PRIu64 ", expected %" PRIu64 "\n", at,
                       expect),
                -1);
        else if (ctl_write_all(out_fd, buf, n) != 0)
            ret = (fprintf(stderr, "peerdistctl publish: write: %s\n", strerror(errno)), -1);
        expect += n;
    }
    free(buf);
    PeerDistServerCloseContentInformation(h, ci);
    return ret;
}

int ctl_publish_main(int argc, char **argv)
{
    static const struct option opts[] = {{"id", required_argument, NULL, 'i'},
        {"version", required_argument, NULL, 'v'}, {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *id = NULL, *out = NULL;
    int version = 1, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "i:v:o:h", opts, NULL)) != -1) {
        if (ch == 'i')
            id = optarg;
        else if (ch == 'v' && (strcmp(optarg, "1") == 0 || strcmp(optarg, "2") == 0))
            version = optarg[0] - '0';
        else if (ch == 'o')
            out = optarg;
        else {
            fprintf(stderr,
                "usage: peerdistctl publish FILE [--id ID] [--version 1|2] [-o FILE.ci]\n");
            return ch == 'h' ? CTL_EXIT_OK : CTL_EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: peerdistctl publish FILE [--id ID] [--version 1|2] [-o FILE.ci]\n");
        return CTL_EXIT_USAGE;
    }
    char guid[39];
    if (!id) {
        random_guid(guid);
        id = guid;
    }
    int fd = open(argv[optind], O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "peerdistctl publish: %s: %s\n", argv[optind], strerror(errno));
        return CTL_EXIT_FAIL;
    }
    int out_fd = out ? open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : STDOUT_FILENO;
    if (out_fd < 0) {
        fprintf(stderr, "peerdistctl publish: %s: %s\n", out, strerror(errno));
        close(fd);
        return CTL_EXIT_FAIL;
    }
    PEERDIST_INSTANCE_HANDLE h;
    int ret = CTL_EXIT_FAIL;
    if (startup("publish", &h) == 0) {
        PEERDIST_PUBLICATION_OPTIONS po = {(DWORD)version, 0};
        PEERDIST_STREAM_HANDLE s;
        DWORD rc = PeerDistServerPublishStream(h, (DWORD)strlen(id), (PBYTE)id,
            (ULONGLONG)st.st_size, &po, NULL, 0, &s);
        if (rc != ERROR_SUCCESS) {
            fail("publish", "PeerDistServerPublishStream", rc);
        } else {
            if (publish_stream(h, s, fd, (uint64_t)st.st_size) == 0 &&
                retrieve_ci(h, id, out_fd) == 0) {
                fprintf(stderr, "published %s as %s (version %d)\n", argv[optind], id, version);
                ret = CTL_EXIT_OK;
            }
            PeerDistServerCloseStreamHandle(h, s);
        }
        PeerDistShutdown(h);
    }
    close(fd);
    if (out)
        close(out_fd);
    return ret;
}

/* ---- inject and get: a content handle fed with content information ---- */

struct handle_ctx {
    PEERDIST_INSTANCE_HANDLE h;
    PEERDIST_CONTENT_HANDLE c;
    struct ci_info *ci;
    uint64_t start, end; /* the range the content information covers */
};

static int open_with_ci(const char *cmd, const char *ci_path, const PEERDIST_CONTENT_TAG *tag,
    struct handle_ctx *x)
{
    uint8_t *ci;
    size_t len;
    if (read_file(cmd, ci_path, &ci, &len, CTL_MAX_CI) != 0)
        return -1;
    struct ci_error err;
    if (ci_parse(ci, len, &x->ci, &err) != ERROR_SUCCESS) {
        fprintf(stderr, "peerdistctl %s: %s: at byte %zu: %s\n", cmd, ci_path, (size_t)err.offset,
            err.reason);
        free(ci);
        return -1;
    }
    x->start = x->ci->range_offset;
    x->end = x->ci->range_offset + x->ci->range_length;
    int ret = -1;
    if (startup(cmd, &x->h) != 0)
        goto out;
    DWORD rc = PeerDistClientOpenContent(x->h, tag, NULL, 0, &x->c);
    if (rc != ERROR_SUCCESS) {
        fail(cmd, "PeerDistClientOpenContent", rc);
        goto out;
    }
    for (size_t off = 0; off < len;) {
        DWORD n = len - off < CTL_CHUNK ? (DWORD)(len - off) : CTL_CHUNK;
        OVERLAPPED ov = {0};
        rc = wait_op(PeerDistClientAddContentInformation(x->h, x->c, n, ci + off, &ov), &ov, NULL);
        if (rc != ERROR_SUCCESS) {
            fail(cmd, "PeerDistClientAddContentInformation", rc);
            goto out;
        }
        off += n;
    }
    OVERLAPPED ov = {0};
    rc = wait_op(PeerDistClientCompleteContentInformation(x->h, x->c, &ov), &ov, NULL);
    if (rc != ERROR_SUCCESS) {
        fail(cmd, "PeerDistClientCompleteContentInformation", rc);
        goto out;
    }
    ret = 0;
out:
    free(ci);
    return ret;
}

static void close_ctx(struct handle_ctx *x)
{
    if (x->c)
        PeerDistClientCloseContent(x->h, x->c);
    if (x->h)
        PeerDistShutdown(x->h);
    ci_info_free(x->ci);
}

static int get_tag_opt(const char *cmd, const char *arg, PEERDIST_CONTENT_TAG *tag)
{
    if (ctl_parse_tag(arg, tag) == 0)
        return 0;
    fprintf(stderr, "peerdistctl %s: --tag '%s' is neither 32 hex digits nor a GUID\n", cmd, arg);
    return -1;
}

int ctl_inject_main(int argc, char **argv)
{
    static const struct option opts[] = {{"ci", required_argument, NULL, 'c'},
        {"tag", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *ci_path = NULL, *tag_arg = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:t:h", opts, NULL)) != -1) {
        if (ch == 'c')
            ci_path = optarg;
        else if (ch == 't')
            tag_arg = optarg;
        else
            return ch == 'h' ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    }
    PEERDIST_CONTENT_TAG tag;
    if (optind + 1 != argc || !ci_path || !tag_arg) {
        fprintf(stderr, "usage: peerdistctl inject FILE --ci FILE.ci --tag TAG\n");
        return CTL_EXIT_USAGE;
    }
    if (get_tag_opt("inject", tag_arg, &tag) != 0)
        return CTL_EXIT_USAGE;
    int fd = open(argv[optind], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "peerdistctl inject: %s: %s\n", argv[optind], strerror(errno));
        return CTL_EXIT_FAIL;
    }
    struct handle_ctx x = {0};
    int ret = CTL_EXIT_FAIL;
    uint8_t *buf = malloc(CTL_CHUNK);
    if (buf && open_with_ci("inject", ci_path, &tag, &x) == 0) {
        /* Only the bytes the content information covers: others are out of bounds. */
        struct ctl_progress prog;
        ctl_progress_start(&prog, "injecting", x.end - x.start);
        uint64_t off = x.start;
        ret = CTL_EXIT_OK;
        while (off < x.end && ret == CTL_EXIT_OK) {
            size_t want = x.end - off < CTL_CHUNK ? (size_t)(x.end - off) : CTL_CHUNK;
            ssize_t n = pread(fd, buf, want, (off_t)off);
            if (n <= 0) {
                fprintf(stderr, "peerdistctl inject: %s: %s at %" PRIu64 "\n", argv[optind],
                    n == 0 ? "file shorter than its content information" : strerror(errno), off);
                ret = CTL_EXIT_FAIL;
                break;
            }
            OVERLAPPED ov = {.Offset = (DWORD)off, .OffsetHigh = (DWORD)(off >> 32)};
            DWORD rc = wait_op(PeerDistClientAddData(x.h, x.c, (DWORD)n, buf, &ov), &ov, NULL);
            if (rc != ERROR_SUCCESS)
                ret = fail("inject", "PeerDistClientAddData", rc);
            off += (uint64_t)n;
            ctl_progress_update(&prog, off - x.start);
        }
        if (ret == CTL_EXIT_OK)
            fprintf(stderr, "injected %" PRIu64 " bytes\n", x.end - x.start);
    }
    free(buf);
    close_ctx(&x);
    close(fd);
    return ret;
}

int ctl_get_main(int argc, char **argv)
{
    static const struct option opts[] = {{"ci", required_argument, NULL, 'c'},
        {"output", required_argument, NULL, 'o'}, {"timeout", required_argument, NULL, 'T'},
        {"tag", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *ci_path = NULL, *out = NULL, *tag_arg = NULL;
    DWORD timeout = CTL_DEFAULT_TIMEOUT_MS;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:o:T:t:h", opts, NULL)) != -1) {
        if (ch == 'c')
            ci_path = optarg;
        else if (ch == 'o')
            out = optarg;
        else if (ch == 'T')
            timeout = (DWORD)strtoul(optarg, NULL, 10);
        else if (ch == 't')
            tag_arg = optarg;
        else
            return ch == 'h' ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    }
    PEERDIST_CONTENT_TAG tag = {{0}};
    if (optind != argc || !ci_path) {
        fprintf(stderr,
            "usage: peerdistctl get --ci FILE.ci [-o OUT] [--timeout MS] [--tag TAG]\n");
        return CTL_EXIT_USAGE;
    }
    if (tag_arg && get_tag_opt("get", tag_arg, &tag) != 0)
        return CTL_EXIT_USAGE;
    int out_fd = out ? open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : STDOUT_FILENO;
    if (out_fd < 0) {
        fprintf(stderr, "peerdistctl get: %s: %s\n", out, strerror(errno));
        return CTL_EXIT_FAIL;
    }
    struct handle_ctx x = {0};
    uint8_t *buf = malloc(CTL_CHUNK);
    int ret = CTL_EXIT_FAIL;
    uint64_t missing = 0;
    if (buf && open_with_ci("get", ci_path, &tag, &x) == 0) {
        ret = CTL_EXIT_OK;
        struct ctl_progress prog;
        ctl_progress_start(&prog, "reading", x.end - x.start);
        for (;;) {
            OVERLAPPED ov = {0};
            DWORD n = 0;
            DWORD rc = wait_op(PeerDistClientStreamRead(x.h, x.c, CTL_CHUNK, buf, timeout, &ov),
                &ov, &n);
            uint64_t at = (uint64_t)ov.OffsetHigh << 32 | ov.Offset;
            if (rc == PEERDIST_ERROR_NO_MORE)
                break;
            if (rc == PEERDIST_ERROR_MISSING_DATA || rc == ERROR_TIMEOUT) {
                /* The cursor moved past it: list it, leave a hole in a file, stop a pipe. */
                fprintf(stderr, "missing: %" PRIu64 "-%" PRIu64 " (%lu bytes)\n", at, at + n,
                    (unsigned long)n);
                missing += n;
                if (!out)
                    break;
                continue;
            }
            if (rc != ERROR_SUCCESS) {
                ret = fail("get", "PeerDistClientStreamRead", rc);
                break;
            }
            int w = out ? (pwrite(out_fd, buf, n, (off_t)(at - x.start)) == (ssize_t)n ? 0 : -1)
                        : ctl_write_all(out_fd, buf, n);
            if (w != 0) {
                ret = (fprintf(stderr, "peerdistctl get: write: %s\n", strerror(errno)),
                    CTL_EXIT_FAIL);
                break;
            }
            ctl_progress_update(&prog, at + n - x.start);
        }
        if (out && ret == CTL_EXIT_OK && ftruncate(out_fd, (off_t)(x.end - x.start)) != 0)
            ret = CTL_EXIT_FAIL;
    }
    if (missing && ret == CTL_EXIT_OK) {
        fprintf(stderr, "peerdistctl get: %" PRIu64 " bytes are not in the cache\n", missing);
        ret = CTL_EXIT_FAIL;
    }
    free(buf);
    close_ctx(&x);
    if (out)
        close(out_fd);
    return ret;
}

/* ---- tags and flush ---- */

int ctl_tags_main(const char *socket_path, int argc, char **argv)
{
    int json = argc > 1 && strcmp(argv[1], "--json") == 0;
    if (argc > 1 + json) {
        fprintf(stderr, "usage: peerdistctl tags [--json]\n");
        return CTL_EXIT_USAGE;
    }
    struct pdconn *c = pdconn_new(socket_path);
    if (!c)
        return CTL_EXIT_FAIL;
    Peerdist__TagsRequest t = PEERDIST__TAGS_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_TAGS;
    req.tags = &t;
    Peerdist__Reply *r = NULL;
    DWORD rc = pdconn_call(c, &req, &r);
    int ret = CTL_EXIT_OK;
    if (rc != ERROR_SUCCESS || !r || r->body_case != PEERDIST__REPLY__BODY_TAGS) {
        ret = fail("tags", "listing tags", rc);
    } else {
        if (json)
            printf("[");
        for (size_t i = 0; i < r->tags->n_tags; i++) {
            const Peerdist__TagInfo *ti = r->tags->tags[i];
            PEERDIST_CONTENT_TAG tag = {{0}};
            memcpy(tag.Data, ti->tag.data, ti->tag.len < 16 ? ti->tag.len : 16);
            char hex[33];
            ctl_format_tag(&tag, hex);
            if (json)
                printf("%s{\"tag\": \"%s\", \"blocks\": %" PRIu64 ", \"bytes\": %" PRIu64 "}",
                    i ? ", " : "", hex, ti->blocks, ti->bytes);
            else
                printf("%s  %10" PRIu64 " blocks  %14" PRIu64 " bytes\n", hex, ti->blocks,
                    ti->bytes);
        }
        if (json)
            printf("]\n");
    }
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    pdconn_free(c);
    return ret;
}

int ctl_flush_main(int argc, char **argv)
{
    PEERDIST_CONTENT_TAG tag;
    if (argc != 3 || strcmp(argv[1], "--tag") != 0) {
        fprintf(stderr, "usage: peerdistctl flush --tag TAG\n");
        return CTL_EXIT_USAGE;
    }
    if (get_tag_opt("flush", argv[2], &tag) != 0)
        return CTL_EXIT_USAGE;
    PEERDIST_INSTANCE_HANDLE h;
    if (startup("flush", &h) != 0)
        return CTL_EXIT_FAIL;
    OVERLAPPED ov = {0};
    DWORD rc = wait_op(PeerDistClientFlushContent(h, &tag, NULL, 0, &ov), &ov, NULL);
    PeerDistShutdown(h);
    return rc == ERROR_SUCCESS ? CTL_EXIT_OK : fail("flush", "PeerDistClientFlushContent", rc);
}
