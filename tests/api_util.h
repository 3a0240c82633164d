/*
 * api_util.h - the two steps every integration test through <peerdist.h> repeats:
 * starting an instance, and waiting for an OVERLAPPED to complete.
 */
#ifndef PEERDIST_TEST_API_UTIL_H
#define PEERDIST_TEST_API_UTIL_H

#include <check.h>

#include <peerdist.h>

static inline PEERDIST_INSTANCE_HANDLE api_startup(void)
{
    PEERDIST_INSTANCE_HANDLE h = NULL;
    ck_assert_uint_eq(PeerDistStartup(PEERDIST_VERSION, &h, NULL), ERROR_SUCCESS);
    return h;
}

/* Waits for ov's completion: its status, and its byte count in *bytes (if bytes). */
static inline DWORD api_wait(OVERLAPPED *ov, DWORD *bytes)
{
    DWORD n = 0;
    BOOL ok = PeerDistGetOverlappedResult(ov, &n, TRUE);
    if (bytes)
        *bytes = n;
    return ok ? ERROR_SUCCESS : GetLastError();
}

#endif
