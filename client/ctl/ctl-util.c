/*
 * ctl-util.c - shared helpers of the peerdistctl sub-commands (ctl-util.h).
 */
#include "ctl-util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void ctl_progress_start(struct ctl_progress *p, const char *what, uint64_t total)
{
    p->what = what;
    p->total = total >= CTL_PROGRESS_MIN && isatty(STDERR_FILENO) ? total : 0;
    p->shown = -1;
}

void ctl_progress_update(struct ctl_progress *p, uint64_t done)
{
    if (!p->total)
        return;
    int pct = (int)((done < p->total ? done : p->total) * 100 / p->total);
    if (pct == p->shown)
        return;
    p->shown = pct;
    fprintf(stderr, "\r%s: %3d%%", p->what, pct);
    if (pct == 100)
        fputc('\n', stderr);
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

int ctl_parse_tag(const char *s, PEERDIST_CONTENT_TAG *tag)
{
    size_t len;
    if (strlen(s) == 32)
        return ctl_unhex(s, tag->Data, sizeof(tag->Data), &len) == 0 && len == 16 ? 0 : -1;
    /* GUID: Data1 (4 bytes), Data2 (2), Data3 (2) little-endian, then 8 bytes in order. */
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
    static const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
    for (int i = 0; i < 16; i++)
        tag->Data[i] = b[order[i]];
    return 0;
}

void ctl_format_tag(const PEERDIST_CONTENT_TAG *tag, char out[33])
{
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", tag->Data[i]);
}
