/* SPDX-License-Identifier: MIT */
/*
 * peerdist-win32.h - the small Win32 subset that <peerdist.h> leans on and
 * PeerDist programs use: base types, OVERLAPPED, error codes, completion
 * ports, event objects, GetOverlappedResult, Sleep and the memory macros.
 * The real symbols carry a pdw32_ prefix so they never collide with another
 * library; the Win32 names are macros, switched off by defining
 * PEERDIST_NO_WIN32_NAMES before including this header.
 * Deviations from Windows are listed in peerdist(3) and client/README.md.
 */
#ifndef PEERDIST_WIN32_H
#define PEERDIST_WIN32_H

#include <stddef.h>
#include <stdint.h>
#include <string.h> /* ZeroMemory, CopyMemory, FillMemory */

#ifdef __cplusplus
extern "C" {
#endif

#if defined(PEERDIST_BUILDING_LIBRARY)
#define PEERDIST_API __attribute__((visibility("default")))
#else
#define PEERDIST_API
#endif

#ifndef WINAPI
#define WINAPI
#endif

/* Base types with Windows' widths (LLP64: LONG and ULONG are 32 bits). */
#ifndef PEERDIST_WIN32_TYPES_DEFINED
#define PEERDIST_WIN32_TYPES_DEFINED
typedef uint8_t BYTE, *PBYTE, *LPBYTE;
typedef uint16_t WORD, *PWORD;
typedef uint32_t DWORD, *PDWORD, *LPDWORD; /* unsigned int; Windows' is a 32-bit unsigned long */
typedef int32_t LONG, *PLONG;
typedef uint32_t ULONG, *PULONG;
typedef unsigned int UINT, *PUINT;
typedef int32_t BOOL, *PBOOL, *LPBOOL;
typedef uint64_t ULONGLONG, *PULONGLONG;
typedef int64_t LONGLONG;
typedef uintptr_t ULONG_PTR, *PULONG_PTR;
typedef intptr_t LONG_PTR;
typedef ULONG_PTR SIZE_T, *PSIZE_T;
typedef void VOID, *PVOID, *LPVOID;
typedef void *HANDLE, **PHANDLE;
typedef char CHAR;
typedef const char *LPCSTR;
typedef uint16_t WCHAR;
typedef const WCHAR *LPCWSTR;

/* A 64-bit value in two 32-bit halves, as the OVERLAPPED offset is given. */
typedef union _LARGE_INTEGER {
    struct {
        DWORD LowPart;
        LONG HighPart;
    };
    struct {
        DWORD LowPart;
        LONG HighPart;
    } u;
    LONGLONG QuadPart;
} LARGE_INTEGER, *PLARGE_INTEGER;

typedef union _ULARGE_INTEGER {
    struct {
        DWORD LowPart;
        DWORD HighPart;
    };
    struct {
        DWORD LowPart;
        DWORD HighPart;
    } u;
    ULONGLONG QuadPart;
} ULARGE_INTEGER, *PULARGE_INTEGER;

typedef struct _SECURITY_ATTRIBUTES {
    DWORD nLength;
    LPVOID lpSecurityDescriptor;
    BOOL bInheritHandle;
} SECURITY_ATTRIBUTES, *PSECURITY_ATTRIBUTES, *LPSECURITY_ATTRIBUTES;

typedef struct _OVERLAPPED {
    ULONG_PTR Internal;     /* status: STATUS_PENDING while in flight, then a Win32 error code */
    ULONG_PTR InternalHigh; /* bytes transferred */
    union {
        struct {
            DWORD Offset;
            DWORD OffsetHigh;
        };
        PVOID Pointer;
    };
    HANDLE hEvent;
} OVERLAPPED, *LPOVERLAPPED;

/* One packet taken by GetQueuedCompletionStatusEx. */
typedef struct _OVERLAPPED_ENTRY {
    ULONG_PTR lpCompletionKey;
    LPOVERLAPPED lpOverlapped;
    ULONG_PTR Internal; /* reserved on Windows; here the packet's Win32 status (0 if posted) */
    DWORD dwNumberOfBytesTransferred;
} OVERLAPPED_ENTRY, *LPOVERLAPPED_ENTRY;
#endif /* PEERDIST_WIN32_TYPES_DEFINED */

#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif

#ifndef MAKEWORD
#define MAKEWORD(a, b) ((WORD)(((BYTE)((a)&0xff)) | ((WORD)((BYTE)((b)&0xff))) << 8))
#define MAKELONG(a, b) ((LONG)(((WORD)((a)&0xffff)) | ((DWORD)((WORD)((b)&0xffff))) << 16))
#define LOWORD(l) ((WORD)((l)&0xffff))
#define HIWORD(l) ((WORD)(((DWORD)(l) >> 16) & 0xffff))
#define LOBYTE(w) ((BYTE)((w)&0xff))
#define HIBYTE(w) ((BYTE)(((WORD)(w) >> 8) & 0xff))
#endif

/*
 * Constants have the type they have under Windows' LLP64 model, where long is
 * 32 bits: winerror.h's 997L is a 32-bit signed value, so here a plain int
 * (an L suffix would make it 64 bits on Linux); a DWORD cast stays a DWORD;
 * 0xFFFFFFFF is an unsigned int on both. WAIT_TIMEOUT is winerror.h's 258L.
 */
#define INVALID_HANDLE_VALUE ((HANDLE)(LONG_PTR)-1)
#define INFINITE 0xFFFFFFFF
#define STATUS_PENDING ((DWORD)0x00000103)
#define WAIT_OBJECT_0 ((DWORD)0x00000000)
#define WAIT_ABANDONED ((DWORD)0x00000080)
#define WAIT_ABANDONED_0 ((DWORD)0x00000080)
#define WAIT_TIMEOUT 258
#define WAIT_FAILED ((DWORD)0xFFFFFFFF)
#define MAXIMUM_WAIT_OBJECTS 64

/*
 * Windows' macro is a plain read; here it is an acquire load (the completion stores Internal
 * last, with release): once it says done, InternalHigh and Offset are the completion's own,
 * on every CPU, and a loop polling it is not optimised into one read.
 */
#if defined(__GNUC__) || defined(__clang__)
#define HasOverlappedIoCompleted(lpOverlapped) \
    (((DWORD)__atomic_load_n(&(lpOverlapped)->Internal, __ATOMIC_ACQUIRE)) != STATUS_PENDING)
#else
#define HasOverlappedIoCompleted(lpOverlapped) (((DWORD)(lpOverlapped)->Internal) != STATUS_PENDING)
#endif

/* Win32 error codes (winerror.h values) the API and the shim use. */
#define ERROR_SUCCESS 0
#define NO_ERROR 0
#define ERROR_ACCESS_DENIED 5
#define ERROR_INVALID_HANDLE 6
#define ERROR_NOT_ENOUGH_MEMORY 8
#define ERROR_INVALID_DATA 13
#define ERROR_OUTOFMEMORY 14
#define ERROR_WRITE_FAULT 29
#define ERROR_HANDLE_EOF 38
#define ERROR_NOT_SUPPORTED 50
#define ERROR_REQ_NOT_ACCEP 71
#define ERROR_INVALID_PARAMETER 87
#define ERROR_DISK_FULL 112
#define ERROR_CALL_NOT_IMPLEMENTED 120
#define ERROR_INSUFFICIENT_BUFFER 122
#define ERROR_ALREADY_EXISTS 183
#define ERROR_MORE_DATA 234
#define ERROR_NO_MORE_ITEMS 259
#define ERROR_ABANDONED_WAIT_0 735
#define ERROR_OPERATION_ABORTED 995
#define ERROR_IO_INCOMPLETE 996
#define ERROR_IO_PENDING 997
#define ERROR_NOT_FOUND 1168
#define ERROR_CANCELLED 1223
#define ERROR_ACCESS_DISABLED_BY_POLICY 1260
#define ERROR_INTERNAL_ERROR 1359
#define ERROR_TIMEOUT 1460

/* Completion ports: a FIFO of (bytes, key, overlapped, status) packets. */
PEERDIST_API HANDLE WINAPI pdw32_CreateIoCompletionPort(HANDLE FileHandle,
    HANDLE ExistingCompletionPort, ULONG_PTR CompletionKey, DWORD NumberOfConcurrentThreads);
PEERDIST_API BOOL WINAPI pdw32_GetQueuedCompletionStatus(HANDLE CompletionPort,
    LPDWORD lpNumberOfBytesTransferred, PULONG_PTR lpCompletionKey, LPOVERLAPPED *lpOverlapped,
    DWORD dwMilliseconds);
PEERDIST_API BOOL WINAPI pdw32_PostQueuedCompletionStatus(HANDLE CompletionPort,
    DWORD dwNumberOfBytesTransferred, ULONG_PTR dwCompletionKey, LPOVERLAPPED lpOverlapped);
/* Up to ulCount packets at once; their status is in each entry's Internal. fAlertable: no APCs here. */
PEERDIST_API BOOL WINAPI pdw32_GetQueuedCompletionStatusEx(HANDLE CompletionPort,
    LPOVERLAPPED_ENTRY lpCompletionPortEntries, ULONG ulCount, PULONG ulNumEntriesRemoved,
    DWORD dwMilliseconds, BOOL fAlertable);
PEERDIST_API BOOL WINAPI pdw32_CloseHandle(HANDLE hObject);

/* The result of a PeerDist operation; hFile is ignored (as PeerDistGetOverlappedResult). */
PEERDIST_API BOOL WINAPI pdw32_GetOverlappedResult(HANDLE hFile, LPOVERLAPPED lpOverlapped,
    LPDWORD lpNumberOfBytesTransferred, BOOL bWait);

/* Event objects (unnamed only). */
PEERDIST_API HANDLE WINAPI pdw32_CreateEventA(LPSECURITY_ATTRIBUTES lpEventAttributes,
    BOOL bManualReset, BOOL bInitialState, LPCSTR lpName);
PEERDIST_API HANDLE WINAPI pdw32_CreateEventW(LPSECURITY_ATTRIBUTES lpEventAttributes,
    BOOL bManualReset, BOOL bInitialState, LPCWSTR lpName);
PEERDIST_API BOOL WINAPI pdw32_SetEvent(HANDLE hEvent);
PEERDIST_API BOOL WINAPI pdw32_ResetEvent(HANDLE hEvent);
PEERDIST_API DWORD WINAPI pdw32_WaitForSingleObject(HANDLE hHandle, DWORD dwMilliseconds);
/* Events only; at most MAXIMUM_WAIT_OBJECTS, no handle twice when bWaitAll. */
PEERDIST_API DWORD WINAPI pdw32_WaitForMultipleObjects(DWORD nCount, const HANDLE *lpHandles,
    BOOL bWaitAll, DWORD dwMilliseconds);

PEERDIST_API void WINAPI pdw32_Sleep(DWORD dwMilliseconds);

/* Per-thread last error. */
PEERDIST_API DWORD WINAPI pdw32_GetLastError(void);
PEERDIST_API void WINAPI pdw32_SetLastError(DWORD dwErrCode);

/*
 * Linux extensions (no Windows counterpart).
 *
 * peerdist_port_fd: a file descriptor that polls readable (POLLIN) while the
 * port holds at least one packet, for epoll/poll/libevent loops; dequeue with
 * GetQueuedCompletionStatus(port, ..., 0). Owned by the port: do not close it.
 * Returns -1 (last error ERROR_INVALID_HANDLE) for anything but a port.
 *
 * peerdist_port_create_routine: a port whose packets are handed to a
 * completion routine on a library thread instead of being dequeued by the
 * application. The routine may call any API function, Cancel included.
 * CloseHandle on the port stops the thread after the routine in progress.
 */
typedef void (*PEERDIST_COMPLETION_ROUTINE)(DWORD dwErrorCode, DWORD dwNumberOfBytesTransferred,
    ULONG_PTR ulCompletionKey, LPOVERLAPPED lpOverlapped, void *context);
PEERDIST_API int peerdist_port_fd(HANDLE CompletionPort);
PEERDIST_API HANDLE peerdist_port_create_routine(PEERDIST_COMPLETION_ROUTINE routine,
    void *context);

#ifndef PEERDIST_NO_WIN32_NAMES
#define CreateIoCompletionPort pdw32_CreateIoCompletionPort
#define GetQueuedCompletionStatus pdw32_GetQueuedCompletionStatus
#define PostQueuedCompletionStatus pdw32_PostQueuedCompletionStatus
#define CloseHandle pdw32_CloseHandle
#define CreateEventA pdw32_CreateEventA
#define CreateEventW pdw32_CreateEventW
#ifdef UNICODE
#define CreateEvent pdw32_CreateEventW
#else
#define CreateEvent pdw32_CreateEventA
#endif
#define SetEvent pdw32_SetEvent
#define ResetEvent pdw32_ResetEvent
#define WaitForSingleObject pdw32_WaitForSingleObject
#define WaitForMultipleObjects pdw32_WaitForMultipleObjects
#define GetQueuedCompletionStatusEx pdw32_GetQueuedCompletionStatusEx
#define GetOverlappedResult pdw32_GetOverlappedResult
#define Sleep pdw32_Sleep
#define GetLastError pdw32_GetLastError
#define SetLastError pdw32_SetLastError
/* Macros on Windows too (RtlZeroMemory and friends are memset and memcpy). */
#define ZeroMemory(Destination, Length) memset((Destination), 0, (Length))
#define CopyMemory(Destination, Source, Length) memcpy((Destination), (Source), (Length))
#define FillMemory(Destination, Length, Fill) memset((Destination), (Fill), (Length))
#endif

#ifdef __cplusplus
}
#endif

#endif /* PEERDIST_WIN32_H */
