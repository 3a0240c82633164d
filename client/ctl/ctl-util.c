/* SPDX-License-Identifier: MIT */
/*
 * ctl-util.c - shared helpers of the peerdistctl sub-commands (ctl-util.h).
 */
#include "ctl-util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- progress ---- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ctl_progress_start(struct ctl_progress *p, const char *what, uint64_t total)
{
    p->what = what;
    p->total = total;
    p->tty = isatty(STDERR_FILENO) == 1;
    p->drawn = false;
    p->start_ms = p->last_ms = mono_ms();
}

/* Bytes per second over the time so far (at least 1 ms). */
static uint64_t progress_rate(const struct ctl_progress *p, uint64_t done, int64_t now)
{
    int64_t ms = now - p->start_ms;
    return ms > 0 ? (uint64_t)((double)done * 1000.0 / (double)ms) : done * 1000;
}

void ctl_progress_update(struct ctl_progress *p, uint64_t done)
{
    if (!p->tty)
        return;
    int64_t now = mono_ms();
    if (now - p->start_ms < CTL_PROGRESS_DELAY_MS ||
        (p->drawn && now - p->last_ms < CTL_PROGRESS_EVERY_MS))
        return;
    p->last_ms = now;
    p->drawn = true;
    uint64_t rate = progress_rate(p, done, now);
    char a[24], b[24], r[24];
    if (p->total && done <= p->total) {
        uint64_t left = rate ? (p->total - done) / rate : 0;
        fprintf(stderr, "\r%s %3d%%  %s of %s  %s/s  %" PRIu64 ":%02" PRIu64 " left\033[K", p->what,
            (int)(done * 100 / p->total), ctl_human_bytes(done, a), ctl_human_bytes(p->total, b),
            ctl_human_bytes(rate, r), left / 60, left % 60);
    } else {
        fprintf(stderr, "\r%s  %s  %s/s\033[K", p->what, ctl_human_bytes(done, a),
            ctl_human_bytes(rate, r));
    }
}

void ctl_progress_clear(struct ctl_progress *p)
{
    if (p->tty && p->drawn)
        fputs("\r\033[K", stderr);
    p->drawn = false;
}

void ctl_progress_done(struct ctl_progress *p, uint64_t done, const char *fmt, ...)
{
    if (!p->tty)
        return;
    ctl_progress_clear(p);
    int64_t now = mono_ms();
    char a[24], r[24];
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s in %.1f s (%s/s)\n", ctl_human_bytes(done, a),
        (double)(now - p->start_ms) / 1000.0, ctl_human_bytes(progress_rate(p, done, now), r));
}

/* ---- output files ---- */

static char *dup_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static mode_t new_file_mode(void)
{
    mode_t mask = umask(0); /* peerdistctl is single-threaded where it creates files */
    umask(mask);
    return 0666 & ~mask;
}

int ctl_out_open(struct ctl_out *o, const char *path, unsigned flags)
{
    memset(o, 0, sizeof(*o));
    o->path = path;
    o->flags = flags;
    o->fd = -1;
    if (!path) {
        o->fd = STDOUT_FILENO;
        return 0;
    }
    struct stat st;
    bool exists = false;
    char *target = NULL;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
        target = realpath(path, NULL); /* replace what the link points at, not the link */
    o->target = target ? target : strdup(path);
    if (!o->target)
        return -1;
    if (stat(o->target, &st) == 0)
        exists = true;
    if (exists && (flags & CTL_OUT_NOREPLACE)) {
        errno = EEXIST;
        goto fail;
    }
    if (exists && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        /* /dev/null, a FIFO, a terminal: nothing to rename over, write to it. */
        o->fd = open(o->target, O_WRONLY | O_CLOEXEC);
        if (o->fd < 0)
            goto fail;
        return 0;
    }
    if (exists && S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        goto fail;
    }
    char *dir = dup_dirname(o->target);
    const char *base = strrchr(o->target, '/') ? strrchr(o->target, '/') + 1 : o->target;
    if (!dir || asprintf(&o->tmp, "%s/.%s.XXXXXX", dir, base) < 0) {
        free(dir);
        o->tmp = NULL;
        errno = ENOMEM;
        goto fail;
    }
    free(dir);
    o->fd = mkostemp(o->tmp, O_CLOEXEC);
    if (o->fd < 0) {
        free(o->tmp);
        o->tmp = NULL;
        goto fail;
    }
    mode_t mode = (flags & CTL_OUT_PRIVATE) ? 0600
        : exists                            ? (st.st_mode & 07777)
                                            : new_file_mode();
    if (fchmod(o->fd, mode) != 0) {
        int e = errno;
        ctl_out_abort(o);
        errno = e;
        return -1;
    }
    o->seekable = true;
    return 0;
fail:;
    int e = errno;
    free(o->target);
    o->target = NULL;
    errno = e;
    return -1;
}

static int rename_noreplace(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* A file system without RENAME_NOREPLACE: link() refuses an existing name too. */
    if (link(from, to) != 0)
        return -1;
    unlink(from);
    return 0;
}

int ctl_out_commit(struct ctl_out *o, int64_t length)
{
    if (!o->path)
        return 0;
    if (o->fd < 0) {
        errno = EBADF;
        return -1;
    }
    int rc = 0;
    if (o->tmp && length >= 0 && ftruncate(o->fd, (off_t)length) != 0)
        rc = -1;
    if (rc == 0 && o->tmp && fsync(o->fd) != 0)
        rc = -1;
    int e = errno;
    if (close(o->fd) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    o->fd = -1;
    if (rc == 0 && o->tmp) {
        rc = (o->flags & CTL_OUT_NOREPLACE) ? rename_noreplace(o->tmp, o->target)
                                            : rename(o->tmp, o->target);
        e = errno;
    }
    if (rc != 0) {
        ctl_out_abort(o);
        errno = e;
        return -1;
    }
    free(o->tmp);
    o->tmp = NULL;
    free(o->target);
    o->target = NULL;
    return 0;
}

void ctl_out_abort(struct ctl_out *o)
{
    if (!o->path)
        return;
    if (o->fd >= 0)
        close(o->fd);
    o->fd = -1;
    if (o->tmp)
        unlink(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
    free(o->target);
    o->target = NULL;
}

/* ---- syntax ---- */

int ctl_parse_u64(const char *s, uint64_t max, uint64_t *v)
{
    uint64_t n = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (n > (UINT64_MAX - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    if (n > max)
        return -1;
    *v = n;
    return 0;
}

/* Leading digits of s as a number, with where they stop; -1 if none or overflow. */
static int leading_u64(const char *s, uint64_t *v, const char **end)
{
    size_t n = strspn(s, "0123456789");
    char digits[24];
    if (n == 0 || n >= sizeof(digits))
        return -1;
    memcpy(digits, s, n);
    digits[n] = '\0';
    *end = s + n;
    return ctl_parse_u64(digits, UINT64_MAX, v);
}

int ctl_check_cache_size(const char *s, uint64_t min)
{
    uint64_t n;
    const char *end;
    if (leading_u64(s, &n, &end) != 0)
        return -1;
    if (end[0] == '%' && !end[1])
        return n >= 1 && n <= 100 ? 0 : -1;
    unsigned shift = 0;
    switch (end[0]) {
    case '\0': break;
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    case 'T': shift = 40; break;
    default: return -1;
    }
    if (end[0] && end[1])
        return -1;
    if (n > (UINT64_MAX >> shift))
        return -1;
    return (n << shift) >= min ? 0 : -1;
}

int ctl_check_duration(const char *s, uint64_t max_s, uint64_t *seconds)
{
    uint64_t n, unit = 1;
    const char *end;
    if (leading_u64(s, &n, &end) != 0)
        return -1;
    switch (end[0]) {
    case '\0':
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    default: return -1;
    }
    if ((end[0] && end[1]) || n == 0 || n > max_s / unit)
        return -1;
    *seconds = n * unit;
    return 0;
}

int ctl_write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int ctl_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int ctl_unhex(const char *hex, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = strlen(hex);
    if (n == 0 || n % 2 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = ctl_hexval(hex[i]), lo = ctl_hexval(hex[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    *len = n / 2;
    return 0;
}

/* GUID text order of the 16 bytes of a tag: Data1..Data3 little-endian, then in order. */
static const int guid_order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};

int ctl_parse_tag(const char *s, PEERDIST_CONTENT_TAG *tag)
{
    size_t len;
    if (strlen(s) == 32)
        return ctl_unhex(s, tag->Data, sizeof(tag->Data), &len) == 0 && len == 16 ? 0 : -1;
    char hex[33];
    size_t n = 0;
    size_t slen = strlen(s);
    const char *p = s, *end = s + slen;
    if (slen >= 2 && s[0] == '{' && s[slen - 1] == '}') {
        p++;
        end--;
    }
    if (end - p != 36 || p[8] != '-' || p[13] != '-' || p[18] != '-' || p[23] != '-')
        return -1;
    for (; p < end; p++)
        if (*p != '-')
            hex[n++] = *p;
    hex[n] = '\0';
    uint8_t b[16];
    if (n != 32 || ctl_unhex(hex, b, sizeof(b), &len) != 0)
        return -1;
    for (int i = 0; i < 16; i++)
        tag->Data[i] = b[guid_order[i]];
    return 0;
}

void ctl_format_tag(const PEERDIST_CONTENT_TAG *tag, char out[33])
{
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", tag->Data[i]);
}

void ctl_format_guid(const PEERDIST_CONTENT_TAG *tag, char out[39])
{
    const uint8_t *d = tag->Data;
    uint8_t b[16];
    for (int i = 0; i < 16; i++)
        b[guid_order[i]] = d[i];
    snprintf(out, 39, "{%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x}",
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15]);
}

/* ---- text ---- */

const char *ctl_human_bytes(uint64_t n, char buf[24])
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (n < 1024) {
        snprintf(buf, 24, "%" PRIu64 " B", n);
        return buf;
    }
    double v = (double)n / 1024.0;
    int u = 0;
    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, 24, "%.1f %s", v, units[u]);
    return buf;
}

const char *ctl_utc(uint64_t secs, char buf[32])
{
    time_t t = (time_t)secs;
    struct tm tm;
    if (secs == 0 || !gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, 32, "-");
    return buf;
}

void ctl_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}
