/* SPDX-License-Identifier: MIT */
/*
 * test_win32_style.c - a PeerDist program written as for Windows, run against
 * the real peerdistd (tests/win32_style_test.sh starts it). It publishes
 * content, retrieves its content information, misses, adds the bytes, reads
 * them back and flushes them, using the parts of <windows.h> that PeerDist
 * programs use: GetOverlappedResult, GetQueuedCompletionStatusEx with
 * OVERLAPPED_ENTRY, WaitForMultipleObjects, Sleep, ZeroMemory, CopyMemory,
 * FillMemory, LARGE_INTEGER, ULARGE_INTEGER, UINT, SIZE_T. Built twice: as is
 * (Windows 8 headers) and with -D_WIN32_WINNT=0x0601 (Windows 7 headers:
 * PEERDIST_VERSION 1, version-1 publications, no PeerDistGetOverlappedResult).
 * Usage: test_win32_style [SEED]; exit 0 when every step behaves as on Windows.
 */
#ifdef _WIN32
#include <windows.h>
#endif
#include <peerdist.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32_WINNT) && _WIN32_WINNT < _WIN32_WINNT_WIN8
#define TARGET_WIN7 1
#else
#define TARGET_WIN7 0
#endif

#define BLOCK 65536
#define CONTENT_BYTES (3 * BLOCK + 1000)
#define KEY_STREAM 0x51
#define KEY_CONTENT 0xC0
#define KEY_FLUSH 0xF1
#define KEY_POSTED 0x99
#define WAIT_MS 10000

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            printf("%s:%d: %s failed (last error %lu)\n", __FILE__, __LINE__, #cond, \
                (unsigned long)GetLastError());                                      \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

static PEERDIST_INSTANCE_HANDLE hPeerDist;
static HANDLE hPort;

/* Offset and OffsetHigh as one 64-bit value. */
static ULONGLONG OverlappedOffset(const OVERLAPPED *ov)
{
    ULARGE_INTEGER at;
    at.LowPart = ov->Offset;
    at.HighPart = ov->OffsetHigh;
    return at.QuadPart;
}

static void SetOverlappedOffset(OVERLAPPED *ov, LONGLONG offset)
{
    LARGE_INTEGER at;
    at.QuadPart = offset;
    ov->Offset = at.LowPart;
    ov->OffsetHigh = (DWORD)at.HighPart;
}

/* Takes `count` packets off the port, however many each call returns. */
static void DequeueAll(OVERLAPPED_ENTRY *entries, ULONG count)
{
    ULONG got = 0;
    while (got < count) {
        ULONG removed = 0;
        CHECK(GetQueuedCompletionStatusEx(hPort, entries + got, count - got, &removed, WAIT_MS,
            FALSE));
        CHECK(removed >= 1 && removed <= count - got);
        got += removed;
    }
}

static void ExpectPortEmpty(void)
{
    OVERLAPPED_ENTRY entry;
    ULONG removed = 7;
    CHECK(!GetQueuedCompletionStatusEx(hPort, &entry, 1, &removed, 0, FALSE));
    CHECK(GetLastError() == WAIT_TIMEOUT && removed == 0);
}

/* Publishes the bytes through a completion port; returns the content information. */
static BYTE *Publish(const char *id, const BYTE *data, SIZE_T cbData, DWORD *pcbInfo)
{
    PEERDIST_PUBLICATION_OPTIONS options;
    ZeroMemory(&options, sizeof(options));
    options.dwVersion = PEERDIST_PUBLICATION_OPTIONS_VERSION;
    PEERDIST_STREAM_HANDLE hStream;
    CHECK(PeerDistServerPublishStream(hPeerDist, (DWORD)strlen(id), (PBYTE)id, cbData, &options,
              hPort, KEY_STREAM, &hStream) == ERROR_SUCCESS);
    OVERLAPPED ov;
    OVERLAPPED_ENTRY entry;
    for (SIZE_T done = 0; done < cbData;) {
        DWORD cb = cbData - done > 50000 ? 50000 : (DWORD)(cbData - done);
        ZeroMemory(&ov, sizeof(ov));
        CHECK(PeerDistServerPublishAddToStream(hPeerDist, hStream, cb, (PBYTE)data + done, &ov) ==
            ERROR_IO_PENDING);
        DequeueAll(&entry, 1);
        CHECK(entry.lpOverlapped == &ov && entry.lpCompletionKey == KEY_STREAM);
        CHECK(entry.Internal == ERROR_SUCCESS && entry.dwNumberOfBytesTransferred == cb);
        done += cb;
    }
    ZeroMemory(&ov, sizeof(ov));
    CHECK(PeerDistServerPublishCompleteStream(hPeerDist, hStream, &ov) == ERROR_IO_PENDING);
    DequeueAll(&entry, 1);
    CHECK(entry.lpOverlapped == &ov && entry.Internal == ERROR_SUCCESS);
    CHECK(PeerDistServerCloseStreamHandle(hPeerDist, hStream) == ERROR_SUCCESS);

    /* Content information, chunk by chunk: an event, then GetOverlappedResult. */
    PEERDIST_CONTENTINFO_HANDLE hInfo;
    CHECK(PeerDistServerOpenContentInformation(hPeerDist, (DWORD)strlen(id), (PBYTE)id, 0, 0, NULL,
              0, &hInfo) == ERROR_SUCCESS);
    HANDLE hEvent = CreateEvent(NULL, TRUE, FALSE, NULL);
    CHECK(hEvent != NULL);
    BYTE *info = NULL;
    DWORD cbInfo = 0;
    for (;;) {
        BYTE chunk[1000];
        ZeroMemory(&ov, sizeof(ov));
        ov.hEvent = hEvent;
        CHECK(ResetEvent(hEvent));
        CHECK(PeerDistServerRetrieveContentInformation(hPeerDist, hInfo, sizeof(chunk), chunk,
                  &ov) == ERROR_IO_PENDING);
        CHECK(WaitForSingleObject(hEvent, WAIT_MS) == WAIT_OBJECT_0);
        DWORD cb = 0;
        /* Windows 7 has no PeerDistGetOverlappedResult; the handle passed is not a file. */
        if (!GetOverlappedResult(hInfo, &ov, &cb, FALSE)) {
            CHECK(GetLastError() == PEERDIST_ERROR_NO_MORE);
            break;
        }
        CHECK(cb > 0 && cb <= sizeof(chunk) && OverlappedOffset(&ov) == cbInfo);
        info = realloc(info, cbInfo + cb);
        CHECK(info != NULL);
        CopyMemory(info + cbInfo, chunk, cb);
        cbInfo += cb;
    }
    CHECK(CloseHandle(hEvent));
    CHECK(PeerDistServerCloseContentInformation(hPeerDist, hInfo) == ERROR_SUCCESS);
    *pcbInfo = cbInfo;
    return info;
}

static PEERDIST_CONTENT_HANDLE OpenWithInfo(const PEERDIST_CONTENT_TAG *tag, BYTE *info,
    DWORD cbInfo)
{
    PEERDIST_CONTENT_HANDLE hContent;
    CHECK(
        PeerDistClientOpenContent(hPeerDist, tag, hPort, KEY_CONTENT, &hContent) == ERROR_SUCCESS);
    HANDLE hEvent = CreateEvent(NULL, FALSE, FALSE, NULL);
    CHECK(hEvent != NULL);
    OVERLAPPED ov;
    ZeroMemory(&ov, sizeof(ov));
    /* The low bit of hEvent: signal the event only, post nothing to the port. */
    ov.hEvent = (HANDLE)((ULONG_PTR)hEvent | 1);
    CHECK(PeerDistClientAddContentInformation(hPeerDist, hContent, cbInfo, info, &ov) ==
        ERROR_IO_PENDING);
    DWORD cb = 0;
    CHECK(GetOverlappedResult(NULL, &ov, &cb, TRUE) && cb == cbInfo);
    CHECK(WaitForSingleObject(hEvent, WAIT_MS) == WAIT_OBJECT_0); /* it is signalled too */
    ZeroMemory(&ov, sizeof(ov));
    ov.hEvent = (HANDLE)((ULONG_PTR)hEvent | 1);
    CHECK(PeerDistClientCompleteContentInformation(hPeerDist, hContent, &ov) == ERROR_IO_PENDING);
    CHECK(WaitForSingleObject(hEvent, WAIT_MS) == WAIT_OBJECT_0);
    CHECK(GetOverlappedResult(NULL, &ov, &cb, FALSE));
    CHECK(CloseHandle(hEvent));
    ExpectPortEmpty();
    return hContent;
}

/* Two reads in flight, each with its event; all missing from the cache. */
static void ExpectMissing(PEERDIST_CONTENT_HANDLE hContent)
{
    HANDLE events[2];
    OVERLAPPED ov[2];
    BYTE bufs[2][16];
    static const LONGLONG offsets[2] = {0, 2 * BLOCK};
    for (UINT i = 0; i < 2; i++) {
        events[i] = CreateEvent(NULL, TRUE, FALSE, NULL);
        CHECK(events[i] != NULL);
        ZeroMemory(&ov[i], sizeof(ov[i]));
        ov[i].hEvent = (HANDLE)((ULONG_PTR)events[i] | 1);
        SetOverlappedOffset(&ov[i], offsets[i]);
        CHECK(PeerDistClientBlockRead(hPeerDist, hContent, sizeof(bufs[i]), bufs[i],
                  PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, &ov[i]) == ERROR_IO_PENDING);
    }
    CHECK(WaitForMultipleObjects(2, events, TRUE, WAIT_MS) == WAIT_OBJECT_0);
    for (UINT i = 0; i < 2; i++) {
        DWORD cb = 0;
        CHECK(!GetOverlappedResult(NULL, &ov[i], &cb, FALSE));
        CHECK(GetLastError() == PEERDIST_ERROR_MISSING_DATA);
        /* The missing range: from the offset asked to the end of the content. */
        CHECK(OverlappedOffset(&ov[i]) == (ULONGLONG)offsets[i]);
        CHECK(cb == CONTENT_BYTES - offsets[i]);
        CHECK(CloseHandle(events[i]));
    }
}

/* Adds the bytes, polling for the completion as a single-threaded Windows program may. */
static void AddAll(PEERDIST_CONTENT_HANDLE hContent, BYTE *data)
{
    HANDLE hEvent = CreateEvent(NULL, TRUE, FALSE, NULL);
    CHECK(hEvent != NULL);
    OVERLAPPED ov;
    ZeroMemory(&ov, sizeof(ov));
    ov.hEvent = (HANDLE)((ULONG_PTR)hEvent | 1); /* no packet on the port */
    CHECK(PeerDistClientAddData(hPeerDist, hContent, CONTENT_BYTES, data, &ov) == ERROR_IO_PENDING);
    DWORD cb = 0;
    UINT polls = 0;
    while (!GetOverlappedResult(NULL, &ov, &cb, FALSE)) {
        CHECK(GetLastError() == ERROR_IO_INCOMPLETE);
        CHECK(++polls < WAIT_MS);
        Sleep(1);
    }
    CHECK(cb == CONTENT_BYTES);
    CHECK(CloseHandle(hEvent));
    ExpectPortEmpty();
}

/* Wait-any: the index of the one event that is signalled. */
static void ReadWaitingForAny(PEERDIST_CONTENT_HANDLE hContent, const BYTE *data)
{
    HANDLE events[2];
    events[0] = CreateEvent(NULL, FALSE, FALSE, NULL); /* nothing signals this one */
    events[1] = CreateEvent(NULL, FALSE, FALSE, NULL);
    CHECK(events[0] != NULL && events[1] != NULL);
    static BYTE buf[BLOCK];
    OVERLAPPED ov;
    ZeroMemory(&ov, sizeof(ov));
    ov.hEvent = (HANDLE)((ULONG_PTR)events[1] | 1);
    SetOverlappedOffset(&ov, BLOCK + 100);
    CHECK(PeerDistClientBlockRead(hPeerDist, hContent, 500, buf, PEERDIST_READ_TIMEOUT_DEFAULT,
              &ov) == ERROR_IO_PENDING);
    CHECK(WaitForMultipleObjects(2, events, FALSE, WAIT_MS) == WAIT_OBJECT_0 + 1);
    CHECK(WaitForMultipleObjects(2, events, FALSE, 0) == WAIT_TIMEOUT); /* auto-reset: taken */
    DWORD cb = 0;
    CHECK(GetOverlappedResult(NULL, &ov, &cb, FALSE) && cb == 500);
    CHECK(memcmp(buf, data + BLOCK + 100, 500) == 0);
    CHECK(CloseHandle(events[0]) && CloseHandle(events[1]));
}

/* Four block reads through the port, collected with GetQueuedCompletionStatusEx. */
static void ReadThroughPort(PEERDIST_CONTENT_HANDLE hContent, const BYTE *data)
{
    enum { READS = 4 };
    static BYTE bufs[READS][BLOCK];
    OVERLAPPED ov[READS];
    for (UINT i = 0; i < READS; i++) {
        ZeroMemory(&ov[i], sizeof(ov[i]));
        FillMemory(bufs[i], BLOCK, 0xEE);
        SetOverlappedOffset(&ov[i], (LONGLONG)i * BLOCK);
        CHECK(PeerDistClientBlockRead(hPeerDist, hContent, BLOCK, bufs[i],
                  PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, &ov[i]) == ERROR_IO_PENDING);
    }
    OVERLAPPED_ENTRY entries[READS];
    DequeueAll(entries, READS);
    BOOL seen[READS] = {FALSE};
    for (UINT e = 0; e < READS; e++) {
        CHECK(entries[e].lpCompletionKey == KEY_CONTENT && entries[e].Internal == ERROR_SUCCESS);
        SIZE_T i = (SIZE_T)(entries[e].lpOverlapped - ov);
        CHECK(i < READS && !seen[i]);
        seen[i] = TRUE;
        SIZE_T expect = i == READS - 1 ? CONTENT_BYTES - 3 * BLOCK : BLOCK;
        CHECK(entries[e].dwNumberOfBytesTransferred == expect);
        CHECK(memcmp(bufs[i], data + i * BLOCK, expect) == 0);
    }
    ExpectPortEmpty();
}

/* Stream to the end: the failing read is a packet too, its status in Internal. */
static void StreamToEnd(PEERDIST_CONTENT_HANDLE hContent, const BYTE *data)
{
    static BYTE buf[CONTENT_BYTES + 100];
    BYTE past_end[16];
    OVERLAPPED ov[2];
    ZeroMemory(ov, sizeof(ov));
    CHECK(PeerDistClientStreamRead(hPeerDist, hContent, sizeof(buf), buf,
              PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, &ov[0]) == ERROR_IO_PENDING);
    CHECK(PeerDistClientStreamRead(hPeerDist, hContent, sizeof(past_end), past_end,
              PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, &ov[1]) == ERROR_IO_PENDING);
    OVERLAPPED_ENTRY entries[2];
    DequeueAll(entries, 2);
    CHECK(entries[0].lpOverlapped == &ov[0] && entries[1].lpOverlapped == &ov[1]); /* in order */
    CHECK(entries[0].Internal == ERROR_SUCCESS &&
        entries[0].dwNumberOfBytesTransferred == CONTENT_BYTES);
    CHECK(memcmp(buf, data, CONTENT_BYTES) == 0);
    CHECK(entries[1].Internal == PEERDIST_ERROR_NO_MORE);
    DWORD cb;
    CHECK(
        !GetOverlappedResult(NULL, &ov[1], &cb, TRUE) && GetLastError() == PEERDIST_ERROR_NO_MORE);
}

static void Flush(const PEERDIST_CONTENT_TAG *tag)
{
    OVERLAPPED ov;
    ZeroMemory(&ov, sizeof(ov));
    CHECK(PeerDistClientFlushContent(hPeerDist, tag, hPort, KEY_FLUSH, &ov) == ERROR_IO_PENDING);
    OVERLAPPED_ENTRY entry;
    DequeueAll(&entry, 1);
    CHECK(entry.lpOverlapped == &ov && entry.lpCompletionKey == KEY_FLUSH && entry.Internal == 0);
}

/* Posted packets: one call takes all of them, in order, and no more than asked. */
static void PostedPackets(void)
{
    OVERLAPPED marks[3];
    for (UINT i = 0; i < 3; i++)
        CHECK(PostQueuedCompletionStatus(hPort, 10 + i, KEY_POSTED, &marks[i]));
    OVERLAPPED_ENTRY entries[8];
    ULONG removed = 0;
    CHECK(GetQueuedCompletionStatusEx(hPort, entries, 2, &removed, 0, FALSE) && removed == 2);
    CHECK(GetQueuedCompletionStatusEx(hPort, entries + 2, 6, &removed, 0, FALSE) && removed == 1);
    for (UINT i = 0; i < 3; i++)
        CHECK(entries[i].lpOverlapped == &marks[i] &&
            entries[i].dwNumberOfBytesTransferred == 10 + i &&
            entries[i].lpCompletionKey == KEY_POSTED && entries[i].Internal == 0);
}

int main(int argc, char **argv)
{
    UINT seed = argc > 1 ? (UINT)atoi(argv[1]) : 1;
    DWORD dwSupported = 0;
    CHECK(PeerDistStartup(PEERDIST_VERSION, &hPeerDist, &dwSupported) == ERROR_SUCCESS);
    CHECK(dwSupported == 2); /* the library is version 2.0, whatever the program targets */
    CHECK(PEERDIST_VERSION == (TARGET_WIN7 ? 1 : 2));
    PEERDIST_STATUS status;
    CHECK(PeerDistGetStatus(hPeerDist, &status) == ERROR_SUCCESS &&
        status == PEERDIST_STATUS_AVAILABLE);
    hPort = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    CHECK(hPort != NULL);
    PostedPackets();

    /* Content: one byte value per block, then a header copied over the start. */
    BYTE *data = malloc(CONTENT_BYTES);
    CHECK(data != NULL);
    for (SIZE_T off = 0; off < CONTENT_BYTES; off += BLOCK)
        FillMemory(data + off, CONTENT_BYTES - off < BLOCK ? CONTENT_BYTES - off : BLOCK,
            (BYTE)(seed * 16 + off / BLOCK + PEERDIST_VERSION));
    char id[64];
    snprintf(id, sizeof(id), "win32-style %u target %u", seed, (UINT)PEERDIST_VERSION);
    CopyMemory(data, id, strlen(id));

    DWORD cbInfo = 0;
    BYTE *info = Publish(id, data, CONTENT_BYTES, &cbInfo);
    /* Windows 7 headers publish version 1: V1 content information (0x0100, little-endian). */
    CHECK(cbInfo > 2 && info[0] == 0x00 && info[1] == (TARGET_WIN7 ? 0x01 : 0x02));

    PEERDIST_CONTENT_TAG tag;
    ZeroMemory(&tag, sizeof(tag));
    CopyMemory(tag.Data, "win32-style", 11);
    tag.Data[15] = (BYTE)(seed + PEERDIST_VERSION);
    PEERDIST_CONTENT_HANDLE hContent = OpenWithInfo(&tag, info, cbInfo);
    ExpectMissing(hContent);
    AddAll(hContent, data);
    ReadWaitingForAny(hContent, data);
    ReadThroughPort(hContent, data);
    StreamToEnd(hContent, data);
    CHECK(PeerDistClientCloseContent(hPeerDist, hContent) == ERROR_SUCCESS);

    /* The flush takes what this tag added: a new handle misses it all again. */
    Flush(&tag);
    hContent = OpenWithInfo(&tag, info, cbInfo);
    ExpectMissing(hContent);
    CHECK(PeerDistClientCloseContent(hPeerDist, hContent) == ERROR_SUCCESS);

    CHECK(PeerDistServerUnpublish(hPeerDist, (DWORD)strlen(id), (PBYTE)id) == ERROR_SUCCESS);
    ExpectPortEmpty();
    CHECK(CloseHandle(hPort));
    CHECK(PeerDistShutdown(hPeerDist) == ERROR_SUCCESS);
    free(info);
    free(data);
    printf("Windows %s program: every step as on Windows\n", TARGET_WIN7 ? "7" : "8");
    return 0;
}
