/* SPDX-License-Identifier: MIT */
/*
 * ctl-data.c - `peerdistctl publish | inject | get`: the Linux counterparts of
 * BranchCacheTool's /PublishCI and /AddData, and a reader that goes through the cache. They
 * use only <peerdist.h>, as an application would, after a quick connection check that turns
 * a stopped or wedged daemon into a clear error within the connect timeout.
 */
#include "ctl-data.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <peerdist.h>

#include "contentinfo.h"

/* Bytes per AddToStream / AddData / read: what one request carries. */
#define CTL_CHUNK PD_MAX_CHUNK
/* Content information larger than this is refused (about 64 TiB of V1 content). */
#define CTL_MAX_CI (64u * 1024 * 1024)
/* As a Windows reader: 5 s, from peers too in distributed mode (the cache alone otherwise). */
#define CTL_DEFAULT_TIMEOUT_MS PEERDIST_READ_TIMEOUT_DEFAULT

static const char publish_help[] =
    "Usage: peerdistctl publish FILE [--id ID] [--version 1|2] [-o FILE.ci] [--json]\n"
    "Publishes FILE through peerdistd (PeerDistServerPublishStream) and writes its content\n"
    "information to FILE.ci, or to standard output (never to a terminal).\n"
    "  --id ID          the content identifier (default: a new random GUID string)\n"
    "  --version 1|2    content information version (default 1; 2 gives V1 and V2)\n"
    "  -o, --output F   write to F: a temporary file beside it, renamed on success\n"
    "  --json           print {id, id_generated, version, file, content_bytes,\n"
    "                   content_information_bytes, output} on standard output (needs -o)\n"
    "Exit: 0 published, 1 failed (F untouched), 2 bad usage.\n";

static const char inject_help[] =
    "Usage: peerdistctl inject FILE --ci FILE.ci --tag TAG [--json]\n"
    "Adds the bytes of FILE that FILE.ci covers to the cache under TAG (PeerDistClientAddData);\n"
    "every block is verified against its hash. TAG: 32 hex digits or a GUID string.\n"
    "  --json           print {file, tag, offset, bytes} on standard output\n"
    "Exit: 0 added, 1 failed, 2 bad usage.\n";

static const char get_help[] =
    "Usage: peerdistctl get --ci FILE.ci [-o OUT] [--partial] [--timeout MS] [--tag TAG] [--json]\n"
    "Reads the content FILE.ci describes through the cache (PeerDistClientStreamRead).\n"
    "Succeeds only when every byte is there; each missing range is listed on standard error.\n"
    "  -o, --output OUT write to OUT: a temporary file beside it, renamed over OUT only when\n"
    "                   the whole content was read; otherwise OUT is left as it was\n"
    "  --partial        write what is cached anyway, holes (zeros) where bytes are missing;\n"
    "                   the exit status is still 1 when anything was missing\n"
    "  --timeout MS     read timeout in milliseconds: 0 reads the local cache only;\n"
    "                   'default' (the default) is Windows' PEERDIST_READ_TIMEOUT_DEFAULT,\n"
    "                   5 s, fetching from peers when the daemon runs in distributed mode;\n"
    "                   'infinite' waits until the bytes come or no peer has them\n"
    "  --tag TAG        the content tag to read under and label with (default all zeros)\n"
    "  --json           print {size, bytes, cache_bytes, peer_bytes, missing_bytes,\n"
    "                   missing: [{offset, length}], complete, output, written} (needs -o)\n"
    "Without -o the content goes to standard output; without --partial it stops at the\n"
    "first missing byte. The bytes from peers are what the daemon's peer_fetched_bytes counter\n"
    "grew by during the read (another reader's fetches at the same time count too).\n"
    "Exit: 0 complete, 1 anything missing or failed, 2 bad usage.\n";

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

static int read_file(const struct ctl_ctx *x, const char *path, uint8_t **data, size_t *len,
    size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        ctl_fail(x, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > cap) {
        ctl_fail(x, "%s: larger than %zu bytes", path, cap);
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
        ctl_fail(x, "%s: short read", path);
        free(*data);
        return -1;
    }
    return 0;
}

static int startup(const struct ctl_ctx *x, PEERDIST_INSTANCE_HANDLE *h)
{
    DWORD rc = PeerDistStartup(PEERDIST_VERSION, h, NULL);
    return rc == ERROR_SUCCESS ? 0 : (ctl_fail_status(x, "PeerDistStartup", rc), -1);
}

static int get_tag_opt(const struct ctl_ctx *x, const char *arg, PEERDIST_CONTENT_TAG *tag)
{
    if (ctl_parse_tag(arg, tag) == 0)
        return 0;
    return ctl_usage_error(x, "--tag '%s' is neither 32 hex digits nor a GUID", arg), -1;
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

/* Sends the file in CTL_CHUNK parts, one AddToStream in flight as Windows allows; the next
 * part is read into the other buffer while the previous one travels. */
static int publish_stream(const struct ctl_ctx *x, PEERDIST_INSTANCE_HANDLE h,
    PEERDIST_STREAM_HANDLE s, int fd, struct ctl_progress *prog, uint64_t *done)
{
    uint8_t *bufs[2] = {malloc(CTL_CHUNK), malloc(CTL_CHUNK)};
    OVERLAPPED ov[2];
    DWORD sent = ERROR_SUCCESS; /* what the call in flight returned */
    int inflight = -1;          /* the buffer of the call in flight */
    int ret = bufs[0] && bufs[1] ? 0 : -1;
    for (int cur = 0; ret == 0; cur ^= 1) {
        ssize_t n;
        do
            n = read(fd, bufs[cur], CTL_CHUNK);
        while (n < 0 && errno == EINTR);
        int read_errno = errno;
        if (inflight >= 0) {
            DWORD rc = wait_op(sent, &ov[inflight], NULL);
            inflight = -1;
            if (rc != ERROR_SUCCESS) {
                ctl_progress_clear(prog);
                ret = (ctl_fail_status(x, "PeerDistServerPublishAddToStream", rc), -1);
                break;
            }
        }
        if (n < 0) {
            ctl_progress_clear(prog);
            ret = (ctl_fail(x, "read: %s", strerror(read_errno)), -1);
            break;
        }
        if (n == 0)
            break;
        memset(&ov[cur], 0, sizeof(ov[cur]));
        sent = PeerDistServerPublishAddToStream(h, s, (DWORD)n, bufs[cur], &ov[cur]);
        inflight = cur;
        *done += (uint64_t)n;
        ctl_progress_update(prog, *done);
    }
    if (inflight >= 0) /* the buffer is the call's until it completes */
        (void)wait_op(sent, &ov[inflight], NULL);
    free(bufs[0]);
    free(bufs[1]);
    if (ret != 0)
        return ret;
    OVERLAPPED cov;
    memset(&cov, 0, sizeof(cov));
    DWORD rc = wait_op(PeerDistServerPublishCompleteStream(h, s, &cov), &cov, NULL);
    if (rc == ERROR_SUCCESS)
        return 0;
    ctl_progress_clear(prog);
    return ctl_fail_status(x, "PeerDistServerPublishCompleteStream", rc), -1;
}

/* Retrieves the whole content information of a publication into out; its size in *total. */
static int retrieve_ci(const struct ctl_ctx *x, PEERDIST_INSTANCE_HANDLE h, const char *id,
    int out_fd, uint64_t *total)
{
    PEERDIST_CONTENTINFO_HANDLE ci;
    DWORD rc = PeerDistServerOpenContentInformation(h, (DWORD)strlen(id), (PBYTE)id, 0, 0, NULL, 0,
        &ci);
    if (rc != ERROR_SUCCESS)
        return ctl_fail_status(x, "PeerDistServerOpenContentInformation", rc), -1;
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
            ret = (ctl_fail_status(x, "PeerDistServerRetrieveContentInformation", rc), -1);
        else if (at != expect)
            ret = (ctl_fail(x, "content information chunk at %" PRIu64 ", expected %" PRIu64, at,
                       expect),
                -1);
        else if (ctl_write_all(out_fd, buf, n) != 0)
            ret = (ctl_fail(x, "write: %s", strerror(errno)), -1);
        expect += n;
    }
    free(buf);
    PeerDistServerCloseContentInformation(h, ci);
    *total = expect;
    return ret;
}

int ctl_publish_main(struct ctl_ctx *x, int argc, char **argv)
{
    enum { OPT_JSON = 0x100 };
    static const struct option opts[] = {{"id", required_argument, NULL, 'i'},
        {"version", required_argument, NULL, 'v'}, {"output", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, OPT_JSON}, {NULL, 0, NULL, 0}};
    const char *id = NULL, *out = NULL;
    int version = 1, ch;
    x->help = publish_help;
    while ((ch = ctl_getopt(x, argc, argv, "i:v:o:", opts)) != CTL_OPT_END) {
        switch (ch) {
        case 'i': id = optarg; break;
        case 'v':
            if (strcmp(optarg, "1") && strcmp(optarg, "2"))
                return ctl_usage_error(x, "--version must be 1 or 2, not '%s'", optarg);
            version = optarg[0] - '0';
            break;
        case 'o': out = optarg; break;
        case OPT_JSON: x->json = true; break;
        case CTL_OPT_HELP: return CTL_EXIT_OK;
        default: return CTL_EXIT_USAGE;
        }
    }
    if (ctl_want_args(x, argc, argv, 1, "FILE"))
        return CTL_EXIT_USAGE;
    const char *file = argv[optind];
    if (id && (!*id || strlen(id) > 4096))
        return ctl_usage_error(x, "--id wants 1 to 4096 bytes");
    if (x->json && !out)
        return ctl_usage_error(x,
            "--json needs -o FILE.ci (the content information would "
            "share standard output with it)");
    if (!out && isatty(STDOUT_FILENO))
        return ctl_usage_error(x,
            "refusing to write binary content information to a "
            "terminal; use -o FILE.ci or redirect");
    char guid[39];
    bool generated = !id;
    if (!id) {
        random_guid(guid);
        id = guid;
    }
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int rc = ctl_fail(x, "%s: %s", file, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ctl_fail(x, "%s: not a regular file (its length must be known first)", file);
    }
    if (ctl_probe(x) != 0) {
        close(fd);
        return CTL_EXIT_FAIL;
    }
    struct ctl_out o;
    if (ctl_out_open(&o, out, 0) != 0) {
        close(fd);
        return ctl_fail(x, "%s: %s", out, strerror(errno));
    }
    PEERDIST_INSTANCE_HANDLE h;
    int ret = CTL_EXIT_FAIL;
    uint64_t done = 0, ci_bytes = 0;
    struct ctl_progress prog;
    ctl_progress_start(&prog, "publishing", (uint64_t)st.st_size);
    if (startup(x, &h) == 0) {
        PEERDIST_PUBLICATION_OPTIONS po = {(DWORD)version, 0};
        PEERDIST_STREAM_HANDLE s;
        DWORD rc = PeerDistServerPublishStream(h, (DWORD)strlen(id), (PBYTE)id,
            (ULONGLONG)st.st_size, &po, NULL, 0, &s);
        if (rc != ERROR_SUCCESS) {
            ctl_fail_status(x, "PeerDistServerPublishStream", rc);
        } else {
            if (publish_stream(x, h, s, fd, &prog, &done) == 0 &&
                retrieve_ci(x, h, id, o.fd, &ci_bytes) == 0)
                ret = CTL_EXIT_OK;
            PeerDistServerCloseStreamHandle(h, s);
        }
        PeerDistShutdown(h);
    }
    close(fd);
    if (ret == CTL_EXIT_OK && ctl_out_commit(&o, -1) != 0)
        ret = ctl_fail(x, "%s: %s", out, strerror(errno));
    ctl_out_abort(&o);
    if (ret != CTL_EXIT_OK)
        return ret;
    ctl_progress_done(&prog, done, "published %s as %s (version %d)", file, id, version);
    if (x->json) {
        printf("{\"id\": ");
        ctl_json_str(stdout, id);
        printf(", \"id_generated\": %s, \"version\": %d, \"file\": ", generated ? "true" : "false",
            version);
        ctl_json_str(stdout, file);
        printf(", \"content_bytes\": %" PRIu64 ", \"content_information_bytes\": %" PRIu64
               ", \"output\": ",
            done, ci_bytes);
        ctl_json_str(stdout, out);
        printf("}\n");
    }
    return CTL_EXIT_OK;
}

/* ---- inject and get: a content handle fed with content information ---- */

struct handle_ctx {
    PEERDIST_INSTANCE_HANDLE h;
    PEERDIST_CONTENT_HANDLE c;
    struct ci_info *ci;
    uint64_t start, end; /* the range the content information covers */
    HANDLE port;         /* the content handle's completion port, or NULL */
};

/* Parses the content information file (no daemon needed for that). */
static int load_ci(const struct ctl_ctx *x, const char *ci_path, uint8_t **ci, size_t *len,
    struct handle_ctx *hx)
{
    if (read_file(x, ci_path, ci, len, CTL_MAX_CI) != 0)
        return -1;
    struct ci_error err;
    if (ci_parse(*ci, *len, &hx->ci, &err) != ERROR_SUCCESS) {
        ctl_fail(x, "%s: at byte %zu: %s", ci_path, (size_t)err.offset, err.reason);
        free(*ci);
        *ci = NULL;
        return -1;
    }
    hx->start = hx->ci->range_offset;
    hx->end = hx->ci->range_offset + hx->ci->range_length;
    return 0;
}

static int open_with_ci(const struct ctl_ctx *x, const uint8_t *ci, size_t len,
    const PEERDIST_CONTENT_TAG *tag, struct handle_ctx *hx)
{
    if (startup(x, &hx->h) != 0)
        return -1;
    DWORD rc = PeerDistClientOpenContent(hx->h, tag, hx->port, 0, &hx->c);
    if (rc != ERROR_SUCCESS)
        return ctl_fail_status(x, "PeerDistClientOpenContent", rc), -1;
    for (size_t off = 0; off < len;) {
        DWORD n = len - off < CTL_CHUNK ? (DWORD)(len - off) : CTL_CHUNK;
        OVERLAPPED ov = {0};
        rc = wait_op(PeerDistClientAddContentInformation(hx->h, hx->c, n, (PBYTE)ci + off, &ov),
            &ov, NULL);
        if (rc != ERROR_SUCCESS)
            return ctl_fail_status(x, "PeerDistClientAddContentInformation", rc), -1;
        off += n;
    }
    OVERLAPPED ov = {0};
    rc = wait_op(PeerDistClientCompleteContentInformation(hx->h, hx->c, &ov), &ov, NULL);
    if (rc != ERROR_SUCCESS)
        return ctl_fail_status(x, "PeerDistClientCompleteContentInformation", rc), -1;
    return 0;
}

static void close_ctx(struct handle_ctx *hx)
{
    if (hx->c)
        PeerDistClientCloseContent(hx->h, hx->c);
    if (hx->h)
        PeerDistShutdown(hx->h);
    ci_info_free(hx->ci);
}

/*
 * inject keeps CTL_INJECT_INFLIGHT bytes of AddData in flight, CTL_CHUNK per request, on a
 * completion port: the daemon verifies and writes one request while the next ones travel and
 * the file is read ahead. 32 MiB covers the daemon's group sync (a batch of writes waits for
 * one fdatasync) with room to spare: bench/datapath_bench's depth sweep (bench/README.md)
 * reaches its plateau from 8 MiB on. It is also the buffer memory inject holds.
 */
#define CTL_INJECT_INFLIGHT (32u * 1024 * 1024)
#define CTL_INJECT_SLOTS (CTL_INJECT_INFLIGHT / CTL_CHUNK)

struct inject_run {
    const struct ctl_ctx *x;
    struct handle_ctx *hx;
    struct ctl_progress *prog;
    const char *file;
    int fd;
    uint8_t *bufs;                   /* CTL_INJECT_SLOTS buffers of CTL_CHUNK */
    OVERLAPPED ov[CTL_INJECT_SLOTS]; /* slot i's request, while busy[i] */
    bool busy[CTL_INJECT_SLOTS];
    unsigned in_flight;
    uint64_t next, done; /* the next offset to read; bytes the daemon accepted */
    int ret;             /* CTL_EXIT_OK until the first failure */
    uint64_t lo, hi;     /* the bytes sent (inject_span) */
};

/*
 * The bytes inject sends: those of every block the content information lists. For a range
 * that is the range widened to whole blocks (V1) or whole segments (V2): a block is verified
 * whole, so the range's edge blocks need their bytes outside the range too, and AddData on a
 * ranged handle takes them (the daemon stores the blocks listed, drops the rest). Without
 * them the edge blocks would stay incomplete and their bytes of the range never be stored,
 * though every AddData succeeded. Whole content: exactly its bytes.
 */
static void inject_span(const struct handle_ctx *hx, uint64_t *lo, uint64_t *hi)
{
    const struct ci_info *ci = hx->ci;
    *lo = hx->start;
    *hi = hx->end;
    if (ci->whole || ci->n_segments == 0)
        return;
    const struct ci_segment *first = &ci->segments[0], *last = &ci->segments[ci->n_segments - 1];
    uint64_t a = first->offset, b = last->offset + last->length;
    if (ci->version == CI_VERSION_1) {
        uint64_t end = (uint64_t)(last->first_block + last->n_blocks) * last->block_size;
        a += (uint64_t)first->first_block * first->block_size;
        b = last->offset + (end < last->length ? end : last->length);
    }
    *lo = a < *lo ? a : *lo;
    *hi = b > *hi ? b : *hi;
}

/* The first failure is the one reported; the rest only stop the run. */
static void inject_failed(struct inject_run *r)
{
    ctl_progress_clear(r->prog);
    r->ret = CTL_EXIT_FAIL;
}

/* Reads the next chunk into slot i and sends it; false when nothing was sent. */
static bool inject_issue(struct inject_run *r, unsigned i)
{
    uint64_t off = r->next, end = r->hi;
    size_t want = end - off < CTL_CHUNK ? (size_t)(end - off) : CTL_CHUNK;
    uint8_t *buf = r->bufs + (size_t)i * CTL_CHUNK;
    ssize_t n;
    do
        n = pread(r->fd, buf, want, (off_t)off);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        int e = errno;
        inject_failed(r);
        ctl_fail(r->x, "%s: %s at %" PRIu64, r->file,
            n == 0 ? "file shorter than its content information" : strerror(e), off);
        return false;
    }
    r->ov[i] = (OVERLAPPED){.Offset = (DWORD)off, .OffsetHigh = (DWORD)(off >> 32)};
    DWORD rc = PeerDistClientAddData(r->hx->h, r->hx->c, (DWORD)n, buf, &r->ov[i]);
    if (rc != ERROR_IO_PENDING) { /* refused at once: no completion will come */
        inject_failed(r);
        ctl_fail_status(r->x, "PeerDistClientAddData", rc);
        return false;
    }
    r->next = off + (uint64_t)n;
    r->busy[i] = true;
    r->in_flight++;
    return true;
}

/*
 * Takes one completion off the port. Packets of other operations on the handle (the content
 * information's, posted there too) are skipped. On a failed AddData: reported (the first),
 * and no more is sent; what is in flight still completes here before the handle closes.
 */
static void inject_reap(struct inject_run *r, HANDLE port)
{
    DWORD n = 0;
    ULONG_PTR key;
    LPOVERLAPPED got = NULL;
    BOOL ok = GetQueuedCompletionStatus(port, &n, &key, &got, INFINITE);
    DWORD e = ok ? ERROR_SUCCESS : GetLastError();
    if (!got) { /* the port itself failed: nothing more will come */
        inject_failed(r);
        ctl_fail_status(r->x, "GetQueuedCompletionStatus", e);
        r->in_flight = 0;
        return;
    }
    unsigned i = 0;
    while (i < CTL_INJECT_SLOTS && (got != &r->ov[i] || !r->busy[i]))
        i++;
    if (i == CTL_INJECT_SLOTS)
        return;
    r->busy[i] = false;
    r->in_flight--;
    if (e != ERROR_SUCCESS) {
        if (r->ret == CTL_EXIT_OK) {
            uint64_t off = got->Offset | (uint64_t)got->OffsetHigh << 32;
            inject_failed(r);
            char what[64];
            snprintf(what, sizeof(what), "PeerDistClientAddData at %" PRIu64, off);
            ctl_fail_status(r->x, what, e);
        }
        return;
    }
    r->done += n;
    ctl_progress_update(r->prog, r->done);
}

/* Adds the range the content information covers; CTL_EXIT_OK or CTL_EXIT_FAIL (reported). */
static int inject_data(struct inject_run *r, HANDLE port)
{
    /* Read ahead: the file is read once, front to back. */
    (void)posix_fadvise(r->fd, (off_t)r->lo, (off_t)(r->hi - r->lo), POSIX_FADV_SEQUENTIAL);
    r->next = r->lo;
    r->ret = CTL_EXIT_OK;
    for (;;) {
        for (unsigned i = 0; i < CTL_INJECT_SLOTS && r->ret == CTL_EXIT_OK && r->next < r->hi; i++)
            if (!r->busy[i])
                inject_issue(r, i);
        if (r->in_flight == 0)
            break;
        inject_reap(r, port);
    }
    return r->ret;
}

int ctl_inject_main(struct ctl_ctx *x, int argc, char **argv)
{
    enum { OPT_JSON = 0x100 };
    static const struct option opts[] = {{"ci", required_argument, NULL, 'c'},
        {"tag", required_argument, NULL, 't'}, {"json", no_argument, NULL, OPT_JSON},
        {NULL, 0, NULL, 0}};
    const char *ci_path = NULL, *tag_arg = NULL;
    int ch;
    x->help = inject_help;
    while ((ch = ctl_getopt(x, argc, argv, "c:t:", opts)) != CTL_OPT_END) {
        switch (ch) {
        case 'c': ci_path = optarg; break;
        case 't': tag_arg = optarg; break;
        case OPT_JSON: x->json = true; break;
        case CTL_OPT_HELP: return CTL_EXIT_OK;
        default: return CTL_EXIT_USAGE;
        }
    }
    PEERDIST_CONTENT_TAG tag;
    if (ctl_want_args(x, argc, argv, 1, "FILE"))
        return CTL_EXIT_USAGE;
    if (!ci_path)
        return ctl_usage_error(x, "--ci FILE.ci is needed");
    if (!tag_arg)
        return ctl_usage_error(x, "--tag TAG is needed");
    if (get_tag_opt(x, tag_arg, &tag) != 0)
        return CTL_EXIT_USAGE;
    const char *file = argv[optind];
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ctl_fail(x, "%s: %s", file, strerror(errno));
    struct handle_ctx hx = {0};
    int ret = CTL_EXIT_FAIL;
    struct inject_run *r = calloc(1, sizeof(*r));
    uint8_t *ci = NULL;
    size_t ci_len = 0;
    struct ctl_progress prog;
    if (r)
        r->bufs = malloc((size_t)CTL_INJECT_SLOTS * CTL_CHUNK);
    if (!r || !r->bufs)
        ctl_fail(x, "%s", strerror(ENOMEM));
    else if (load_ci(x, ci_path, &ci, &ci_len, &hx) == 0 && ctl_probe(x) == 0 &&
        (hx.port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0)) == NULL)
        ctl_fail_status(x, "CreateIoCompletionPort", GetLastError());
    else if (hx.port && open_with_ci(x, ci, ci_len, &tag, &hx) == 0) {
        *r = (struct inject_run){.x = x,
            .hx = &hx,
            .prog = &prog,
            .file = file,
            .fd = fd,
            .bufs = r->bufs};
        /* Only the blocks the content information lists: other bytes are out of bounds. */
        inject_span(&hx, &r->lo, &r->hi);
        ctl_progress_start(&prog, "injecting", r->hi - r->lo);
        ret = inject_data(r, hx.port);
    }
    if (ret == CTL_EXIT_OK) {
        char hex[33];
        ctl_format_tag(&tag, hex);
        ctl_progress_done(&prog, hx.end - hx.start, "injected %s under %s", file, hex);
        if (x->json) {
            printf("{\"file\": ");
            ctl_json_str(stdout, file);
            printf(", \"tag\": \"%s\", \"offset\": %" PRIu64 ", \"bytes\": %" PRIu64 "}\n", hex,
                hx.start, hx.end - hx.start);
        }
    }
    free(ci);
    close_ctx(&hx); /* first: operations still pending complete into r's OVERLAPPEDs */
    if (r)
        free(r->bufs);
    free(r);
    if (hx.port)
        CloseHandle(hx.port);
    close(fd);
    return ret;
}

/* ---- get ---- */

struct missing_list {
    struct {
        uint64_t offset, length;
    } * r;
    size_t n, cap;
    uint64_t bytes;
};

static int missing_add(struct missing_list *m, uint64_t offset, uint64_t length)
{
    m->bytes += length;
    if (m->n && m->r[m->n - 1].offset + m->r[m->n - 1].length == offset) {
        m->r[m->n - 1].length += length; /* one range reported in clamped pieces */
        return 0;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        void *p = realloc(m->r, cap * sizeof(*m->r));
        if (!p)
            return -1;
        m->r = p;
        m->cap = cap;
    }
    m->r[m->n].offset = offset;
    m->r[m->n].length = length;
    m->n++;
    return 0;
}

/* Writes len zero bytes to a stream output (a hole of --partial on a pipe). */
static int write_zeros(int fd, uint64_t len)
{
    static const uint8_t zeros[64 * 1024];
    while (len > 0) {
        size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
        if (ctl_write_all(fd, zeros, n) != 0)
            return -1;
        len -= n;
    }
    return 0;
}

struct get_opts {
    const char *ci_path, *out, *tag_arg;
    DWORD timeout;
    bool partial;
};

/*
 * Stream reads kept in flight by get: while one reply is written out the next ones are on
 * their way (the daemon answers a handle's stream reads in order, each from the cursor the
 * one before left).
 */
#define GET_DEPTH 4

/*
 * One stream read's result (rc, at, n) into o and the missing list. Returns CTL_EXIT_OK to
 * go on, 1 at the end of the content (NO_MORE), or a failure (reported).
 */
static int get_one(const struct ctl_ctx *x, const struct get_opts *g, struct handle_ctx *hx,
    struct ctl_out *o, struct missing_list *m, uint64_t *got, bool *writing, DWORD rc, uint64_t at,
    DWORD n, const uint8_t *buf, struct ctl_progress *prog)
{
    if (rc == PEERDIST_ERROR_NO_MORE)
        return 1;
    if (rc == PEERDIST_ERROR_MISSING_DATA || rc == ERROR_TIMEOUT) {
        /* The cursor moved past it: list it, leave a hole (--partial) or stop writing. */
        ctl_progress_clear(prog);
        fprintf(stderr, "missing: %" PRIu64 "-%" PRIu64 " (%lu bytes)\n", at, at + n,
            (unsigned long)n);
        if (missing_add(m, at, n) != 0)
            return ctl_fail(x, "out of memory");
        if (!g->partial)
            *writing = false;
        else if (!o->seekable && write_zeros(o->fd, n) != 0)
            return ctl_fail(x, "write: %s", strerror(errno));
        return CTL_EXIT_OK;
    }
    if (rc != ERROR_SUCCESS) {
        ctl_progress_clear(prog);
        return ctl_fail_status(x, "PeerDistClientStreamRead", rc);
    }
    *got += n;
    if (*writing) {
        int w = o->seekable
            ? (pwrite(o->fd, buf, n, (off_t)(at - hx->start)) == (ssize_t)n ? 0 : -1)
            : ctl_write_all(o->fd, buf, n);
        if (w != 0) {
            ctl_progress_clear(prog);
            return ctl_fail(x, "write %s: %s", g->out ? g->out : "standard output",
                strerror(errno));
        }
    }
    ctl_progress_update(prog, at + n - hx->start);
    return CTL_EXIT_OK;
}

/*
 * Reads the whole content through the cache into o, GET_DEPTH stream reads in flight, taken
 * in the order they were sent. Writing stops at the first missing byte unless --partial (the
 * output will not be kept), reading goes on to list every range.
 */
static int get_read(const struct ctl_ctx *x, const struct get_opts *g, struct handle_ctx *hx,
    struct ctl_out *o, struct missing_list *m, uint64_t *got)
{
    uint8_t *bufs = malloc((size_t)GET_DEPTH * CTL_CHUNK);
    OVERLAPPED ov[GET_DEPTH];
    DWORD sent[GET_DEPTH];
    bool writing = true, more = true;
    struct ctl_progress prog;
    int ret = bufs ? CTL_EXIT_OK : ctl_fail(x, "out of memory");
    unsigned inflight = 0, head = 0;
    ctl_progress_start(&prog, "reading", hx->end - hx->start);
    for (unsigned i = 0; ret == CTL_EXIT_OK && i < GET_DEPTH; i++, inflight++) {
        memset(&ov[i], 0, sizeof(ov[i]));
        sent[i] = PeerDistClientStreamRead(hx->h, hx->c, CTL_CHUNK, bufs + (size_t)i * CTL_CHUNK,
            g->timeout, &ov[i]);
    }
    while (inflight > 0) {
        unsigned i = head;
        head = (head + 1) % GET_DEPTH;
        inflight--;
        DWORD n = 0;
        DWORD rc = wait_op(sent[i], &ov[i], &n);
        uint64_t at = (uint64_t)ov[i].OffsetHigh << 32 | ov[i].Offset;
        if (ret != CTL_EXIT_OK || !more)
            continue; /* drain what is in flight */
        int r = get_one(x, g, hx, o, m, got, &writing, rc, at, n, bufs + (size_t)i * CTL_CHUNK,
            &prog);
        if (r == 1)
            more = false;
        else if (r != CTL_EXIT_OK)
            ret = r;
        if (ret == CTL_EXIT_OK && more) {
            memset(&ov[i], 0, sizeof(ov[i]));
            sent[i] = PeerDistClientStreamRead(hx->h, hx->c, CTL_CHUNK,
                bufs + (size_t)i * CTL_CHUNK, g->timeout, &ov[i]);
            inflight++;
        }
    }
    if (ret == CTL_EXIT_OK)
        ctl_progress_done(&prog, *got, "read %s%s", g->out ? g->out : "content",
            m->bytes ? " (incomplete)" : "");
    free(bufs);
    return ret;
}

/*
 * The daemon's count of verified bytes fetched from peers (CacheInfo, which every user may
 * ask for), without a message: 0, or -1 when it cannot be had (an older daemon, say).
 */
static int peer_fetched_bytes(const struct ctl_ctx *x, uint64_t *out)
{
    char why[512];
    struct pdconn *c = ctl_connect_quiet(x, why, sizeof(why));
    if (!c)
        return -1;
    Peerdist__CacheInfoRequest ci = PEERDIST__CACHE_INFO_REQUEST__INIT;
    Peerdist__Request req = PEERDIST__REQUEST__INIT;
    req.body_case = PEERDIST__REQUEST__BODY_CACHE_INFO;
    req.cache_info = &ci;
    Peerdist__Reply *r = NULL;
    int ret = -1;
    if (pdconn_call(c, &req, &r) == ERROR_SUCCESS && r &&
        r->body_case == PEERDIST__REPLY__BODY_CACHE_INFO) {
        *out = r->cache_info->peer_fetched_bytes;
        ret = 0;
    }
    if (r)
        peerdist__reply__free_unpacked(r, NULL);
    pdconn_free(c);
    return ret;
}

/* Of got bytes read, those that came from peers (the counter's growth, at most got). */
struct get_sources {
    bool known;
    uint64_t before, peer;
};

static void get_json(const struct get_opts *g, const struct handle_ctx *hx,
    const struct missing_list *m, uint64_t got, const struct get_sources *src, bool written)
{
    printf("{\"size\": %" PRIu64 ", \"bytes\": %" PRIu64, hx->end - hx->start, got);
    if (src->known)
        printf(", \"cache_bytes\": %" PRIu64 ", \"peer_bytes\": %" PRIu64, got - src->peer,
            src->peer);
    else
        printf(", \"cache_bytes\": null, \"peer_bytes\": null");
    printf(", \"missing_bytes\": %" PRIu64 ", \"missing\": [", m->bytes);
    for (size_t i = 0; i < m->n; i++)
        printf("%s{\"offset\": %" PRIu64 ", \"length\": %" PRIu64 "}", i ? ", " : "",
            m->r[i].offset, m->r[i].length);
    printf("], \"complete\": %s, \"output\": ", m->bytes == 0 ? "true" : "false");
    ctl_json_str(stdout, g->out);
    printf(", \"written\": %s}\n", written ? "true" : "false");
}

int ctl_get_main(struct ctl_ctx *x, int argc, char **argv)
{
    enum { OPT_JSON = 0x100, OPT_PARTIAL, OPT_TIMEOUT };
    static const struct option opts[] = {{"ci", required_argument, NULL, 'c'},
        {"output", required_argument, NULL, 'o'}, {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"tag", required_argument, NULL, 't'}, {"partial", no_argument, NULL, OPT_PARTIAL},
        {"json", no_argument, NULL, OPT_JSON}, {NULL, 0, NULL, 0}};
    struct get_opts g = {.timeout = CTL_DEFAULT_TIMEOUT_MS};
    uint64_t v;
    int ch;
    x->help = get_help;
    while ((ch = ctl_getopt(x, argc, argv, "c:o:t:", opts)) != CTL_OPT_END) {
        switch (ch) {
        case 'c': g.ci_path = optarg; break;
        case 'o': g.out = optarg; break;
        case 't': g.tag_arg = optarg; break;
        case OPT_TIMEOUT:
            if (strcmp(optarg, "default") == 0)
                g.timeout = PEERDIST_READ_TIMEOUT_DEFAULT;
            else if (strcmp(optarg, "infinite") == 0)
                g.timeout = INFINITE;
            else if (ctl_opt_u64(x, "--timeout", optarg, UINT32_MAX, &v) != 0)
                return CTL_EXIT_USAGE;
            else
                g.timeout = (DWORD)v;
            break;
        case OPT_PARTIAL: g.partial = true; break;
        case OPT_JSON: x->json = true; break;
        case CTL_OPT_HELP: return CTL_EXIT_OK;
        default: return CTL_EXIT_USAGE;
        }
    }
    PEERDIST_CONTENT_TAG tag = {{0}};
    if (ctl_want_args(x, argc, argv, 0, ""))
        return CTL_EXIT_USAGE;
    if (!g.ci_path)
        return ctl_usage_error(x, "--ci FILE.ci is needed");
    if (g.tag_arg && get_tag_opt(x, g.tag_arg, &tag) != 0)
        return CTL_EXIT_USAGE;
    if (x->json && !g.out)
        return ctl_usage_error(x,
            "--json needs -o OUT (the content would share standard "
            "output with it)");
    struct handle_ctx hx = {0};
    struct missing_list m = {0};
    struct ctl_out o = {.fd = -1};
    uint8_t *ci = NULL;
    size_t ci_len = 0;
    uint64_t got = 0;
    struct get_sources src = {0};
    bool opened = false, written = false;
    int ret = CTL_EXIT_FAIL;
    if (load_ci(x, g.ci_path, &ci, &ci_len, &hx) != 0 || ctl_probe(x) != 0 ||
        open_with_ci(x, ci, ci_len, &tag, &hx) != 0)
        goto out;
    if (ctl_out_open(&o, g.out, 0) != 0) {
        ret = ctl_fail(x, "%s: %s", g.out, strerror(errno));
        goto out;
    }
    opened = true;
    src.known = g.timeout != PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY
        ? peer_fetched_bytes(x, &src.before) == 0
        : true; /* the local cache only: nothing can come from peers */
    ret = get_read(x, &g, &hx, &o, &m, &got);
    uint64_t after = 0;
    if (src.known && g.timeout != PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY) {
        src.known = peer_fetched_bytes(x, &after) == 0 && after >= src.before;
        if (src.known)
            src.peer = after - src.before < got ? after - src.before : got;
    }
    if (ret == CTL_EXIT_OK && src.known && !x->json && isatty(STDERR_FILENO))
        fprintf(stderr, "%" PRIu64 " bytes from the local cache, %" PRIu64 " from peers\n",
            got - src.peer, src.peer);
    if (ret == CTL_EXIT_OK && (m.bytes == 0 || g.partial)) {
        if (ctl_out_commit(&o, o.seekable ? (int64_t)(hx.end - hx.start) : -1) != 0)
            ret = ctl_fail(x, "%s: %s", g.out, strerror(errno));
        else
            written = g.out != NULL;
    }
    if (ret == CTL_EXIT_OK && m.bytes) {
        fprintf(stderr, "peerdistctl get: %" PRIu64 " bytes are not in the cache; %s\n", m.bytes,
            !g.out        ? "the output stops at the first of them"
                : written ? "OUT holds the rest, with zeros in their place (--partial)"
                          : "OUT was left as it was");
        ret = CTL_EXIT_FAIL;
        if (x->json)
            get_json(&g, &hx, &m, got, &src, written);
    } else if (ret == CTL_EXIT_OK && x->json) {
        get_json(&g, &hx, &m, got, &src, written);
    }
out:
    if (opened)
        ctl_out_abort(&o);
    free(m.r);
    free(ci);
    close_ctx(&hx);
    return ret;
}
