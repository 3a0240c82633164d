/*
 * ctl-util.h - small pieces every peerdistctl sub-command uses: exit codes,
 * a progress line on a terminal, whole writes, hex, and content tags.
 */
#ifndef PEERDIST_CTL_UTIL_H
#define PEERDIST_CTL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <peerdist.h>

#define CTL_EXIT_OK 0
#define CTL_EXIT_FAIL 1
#define CTL_EXIT_USAGE 2
/* Show a progress line for work of at least this many bytes, on a terminal only. */
#define CTL_PROGRESS_MIN (64ull << 20)

struct ctl_progress {
    const char *what;
    uint64_t total; /* 0: no progress line */
    int shown;      /* last percentage printed */
};

/* total = 0 or stderr not a terminal or below CTL_PROGRESS_MIN: stays quiet. */
void ctl_progress_start(struct ctl_progress *p, const char *what, uint64_t total);
void ctl_progress_update(struct ctl_progress *p, uint64_t done);

int ctl_write_all(int fd, const uint8_t *p, size_t len);
int ctl_hexval(int c);
/* Even-length hex into out (at most cap bytes); 0 or -1. */
int ctl_unhex(const char *hex, uint8_t *out, size_t cap, size_t *len);
/*
 * A content tag: 32 hex digits are the 16 bytes in order; a GUID string
 * {00112233-4455-6677-8899-aabbccddeeff} (braces optional) is read as Windows
 * lays a GUID out in memory, the first three groups little-endian (DESIGN.md).
 */
int ctl_parse_tag(const char *s, PEERDIST_CONTENT_TAG *tag);
void ctl_format_tag(const PEERDIST_CONTENT_TAG *tag, char out[33]);

#endif
