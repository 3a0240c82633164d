/* SPDX-License-Identifier: MIT */
/*
 * flush.c - a program written as for Windows: it evicts what it cached under
 * its content tag, waiting on a completion port. It builds unchanged on
 * Windows (with <windows.h> first) and on Linux with
 *     cc flush.c $(pkg-config --cflags --libs peerdist)
 * Usage: flush [TAG-SEED]; exit 0 when Windows' documented behaviour is seen.
 */
#include <peerdist.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    PEERDIST_INSTANCE_HANDLE hPeerDist;
    DWORD dwSupported = 0;
    DWORD err = PeerDistStartup(PEERDIST_VERSION, &hPeerDist, &dwSupported);
    if (err != ERROR_SUCCESS) {
        printf("PeerDistStartup failed: %lu\n", (unsigned long)err);
        return 1;
    }
    PEERDIST_STATUS status;
    if (PeerDistGetStatus(hPeerDist, &status) != ERROR_SUCCESS ||
        status != PEERDIST_STATUS_AVAILABLE) {
        printf("service not available (status %d)\n", (int)status);
        return 1;
    }

    HANDLE hPort = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    PEERDIST_CONTENT_TAG tag;
    FillMemory(tag.Data, sizeof(tag.Data), argc > 1 ? atoi(argv[1]) : 0x5a);
    OVERLAPPED ov;
    ZeroMemory(&ov, sizeof(ov));

    /* Synchronous failures never complete... */
    if (PeerDistClientFlushContent(hPeerDist, NULL, hPort, 1, &ov) != ERROR_INVALID_PARAMETER) {
        printf("NULL tag was not ERROR_INVALID_PARAMETER\n");
        return 1;
    }
    /* ...and ERROR_IO_PENDING completes exactly once. */
    err = PeerDistClientFlushContent(hPeerDist, &tag, hPort, 0x1234, &ov);
    if (err != ERROR_IO_PENDING) {
        printf("PeerDistClientFlushContent: %lu\n", (unsigned long)err);
        return 1;
    }
    DWORD bytes;
    ULONG_PTR key;
    LPOVERLAPPED pov;
    if (!GetQueuedCompletionStatus(hPort, &bytes, &key, &pov, 10000) || pov != &ov ||
        key != 0x1234) {
        printf("completion: error %lu\n", (unsigned long)GetLastError());
        return 1;
    }
    if (GetQueuedCompletionStatus(hPort, &bytes, &key, &pov, 100) ||
        GetLastError() != WAIT_TIMEOUT) {
        printf("a second completion arrived\n");
        return 1;
    }
    printf("flushed tag, completion key 0x%lx, API version %lu\n", (unsigned long)key,
        (unsigned long)dwSupported);
    CloseHandle(hPort);
    PeerDistShutdown(hPeerDist);
    return 0;
}
