/* SPDX-License-Identifier: MIT */
/*
 * win32.h - internal side of the Win32 shim: completion delivery shared by
 * every asynchronous PeerDist call.
 */
#ifndef PEERDIST_LIB_WIN32_H
#define PEERDIST_LIB_WIN32_H

#include <peerdist.h>

/* What a thread is about to block on (conn.h: pdconn_help_wait): one of the three. */
struct w32_wait_target {
    LPOVERLAPPED ov;      /* GetOverlappedResult with bWait */
    const HANDLE *events; /* WaitForSingleObject / WaitForMultipleObjects */
    DWORD nevents;
    HANDLE port; /* GetQueuedCompletionStatus(Ex), a completion routine's thread */
};

/* Internal ops go through these, never through the macro names. */
void w32_set_error(DWORD err);

/* True if h is NULL or a live completion port (what an API port argument may be). */
BOOL w32_is_port_or_null(HANDLE h);

/*
 * Completes an operation, exactly once: fills Internal (status) and
 * InternalHigh (bytes), signals hEvent if set, posts (bytes, key, ov) to the
 * port if one was given and hEvent's low bit is clear, and wakes
 * (PeerDist)GetOverlappedResult waiters. Offset/OffsetHigh are the caller's to set first.
 */
void w32_complete(LPOVERLAPPED ov, HANDLE port, ULONG_PTR key, DWORD status, DWORD bytes);

/* Marks ov in flight (Internal = STATUS_PENDING, InternalHigh = 0). */
void w32_begin(LPOVERLAPPED ov);
/* After w32_begin, when the call fails synchronously: ov must not stay STATUS_PENDING. */
void w32_finish_sync(LPOVERLAPPED ov, DWORD status);

/*
 * GetOverlappedResult without its file handle (PeerDistGetOverlappedResult):
 * TRUE with the byte count once ov succeeded; FALSE with the last error set
 * to its failure, or to ERROR_IO_INCOMPLETE while pending and !wait.
 */
BOOL w32_overlapped_result(LPOVERLAPPED ov, LPDWORD bytes, BOOL wait);

#endif
