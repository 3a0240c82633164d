/*
 * peerdist-win32.h - the small Win32 subset that <peerdist.h> leans on:
 * base types, OVERLAPPED, error codes, completion ports and event objects.
 * The real symbols carry a pdw32_ prefix so they never collide with another
 * library; the Win32 names are macros, switched off by defining
 * PEERDIST_NO_WIN32_NAMES before including this header.
 * Deviations from Windows are listed in peerdist(3) and client/README.md.
 */
#ifndef PEERDIST_WIN32_H
#define PEERDIST_WIN32_H

#include <stddef.h>
#include <stdint.h>

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
typedef uint32_t DWORD, *PDWORD, *LPDWORD;
typedef int32_t LONG, *PLONG;
typedef uint32_t ULONG, *PULONG;
typedef int32_t BOOL, *PBOOL, *LPBOOL;
typedef uint64_t ULONGLONG, *PULONGLONG;
typedef int64_t LONGLONG;
typedef uintptr_t ULONG_PTR, *PULONG_PTR;
typedef intptr_t LONG_PTR;
typedef void VOID, *PVOID, *LPVOID;
typedef void *HANDLE, **PHANDLE;
typedef char CHAR;
typedef const char *LPCSTR;
typedef uint16_t WCHAR;
typedef const WCHAR *LPCWSTR;

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
#endif /* PEERDIST_WIN32_TYPES_DEFINED */

#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif

#ifndef MAKEWORD
#define MAKEWORD(a, b) ((WORD)(((BYTE)((a) & 0xff)) | ((WORD)((BYTE)((b) & 0xff))) << 8))
#define MAKELONG(a, b) ((LONG)(((WORD)((a) & 0xffff)) | ((DWORD)((WORD)((b) & 0xffff))) << 16))
#define LOWORD(l) ((WORD)((l) & 0xffff))
#define HIWORD(l) ((WORD)(((DWORD)(l) >> 16) & 0xffff))
#define LOBYTE(w) ((BYTE)((w) & 0xff))
#define HIBYTE(w) ((BYTE)(((WORD)(w) >> 8) & 0xff))
#endif

#define INVALID_HANDLE_VALUE ((HANDLE)(LONG_PTR)-1)
#define INFINITE 0xFFFFFFFFUL
#define WAIT_OBJECT_0 0x00000000UL
#define WAIT_ABANDONED 0x00000080UL
#define WAIT_TIMEOUT 258UL
#define WAIT_FAILED 0xFFFFFFFFUL
#define STATUS_PENDING 0x00000103UL

#define HasOverlappedIoCompleted(lpOverlapped) \
    (((DWORD)(lpOverlapped)->Internal) != STATUS_PENDING)

/* Win32 error codes (winerror.h values) the API and the shim use. */
#define ERROR_SUCCESS 0L
#define NO_ERROR 0L
#define ERROR_ACCESS_DENIED 5L
#define ERROR_INVALID_HANDLE 6L
#define ERROR_NOT_ENOUGH_MEMORY 8L
#define ERROR_INVALID_DATA 13L
#define ERROR_OUTOFMEMORY 14L
#define ERROR_WRITE_FAULT 29L
#define ERROR_HANDLE_EOF 38L
#define ERROR_NOT_SUPPORTED 50L
#define ERROR_INVALID_PARAMETER 87L
#define ERROR_DISK_FULL 112L
#define ERROR_CALL_NOT_IMPLEMENTED 120L
#define ERROR_INSUFFICIENT_BUFFER 122L
#define ERROR_ALREADY_EXISTS 183L
#define ERROR_MORE_DATA 234L
#define ERROR_NO_MORE_ITEMS 259L
#define ERROR_ABANDONED_WAIT_0 735L
#define ERROR_OPERATION_ABORTED 995L
#define ERROR_IO_INCOMPLETE 996L
#define ERROR_IO_PENDING 997L
#define ERROR_NOT_FOUND 1168L
#define ERROR_CANCELLED 1223L
#define ERROR_ACCESS_DISABLED_BY_POLICY 1260L
#define ERROR_INTERNAL_ERROR 1359L
#define ERROR_TIMEOUT 1460L

/* Completion ports: a FIFO of (bytes, key, overlapped, status) packets. */
PEERDIST_API HANDLE WINAPI pdw32_CreateIoCompletionPort(HANDLE FileHandle,
    HANDLE ExistingCompletionPort, ULONG_PTR CompletionKey, DWORD NumberOfConcurrentThreads);
PEERDIST_API BOOL WINAPI pdw32_GetQueuedCompletionStatus(HANDLE CompletionPort,
    LPDWORD lpNumberOfBytesTransferred, PULONG_PTR lpCompletionKey,
    LPOVERLAPPED *lpOverlapped, DWORD dwMilliseconds);
PEERDIST_API BOOL WINAPI pdw32_PostQueuedCompletionStatus(HANDLE CompletionPort,
    DWORD dwNumberOfBytesTransferred, ULONG_PTR dwCompletionKey, LPOVERLAPPED lpOverlapped);
PEERDIST_API BOOL WINAPI pdw32_CloseHandle(HANDLE hObject);

/* Event objects (unnamed only). */
PEERDIST_API HANDLE WINAPI pdw32_CreateEventA(LPSECURITY_ATTRIBUTES lpEventAttributes,
    BOOL bManualReset, BOOL bInitialState, LPCSTR lpName);
PEERDIST_API HANDLE WINAPI pdw32_CreateEventW(LPSECURITY_ATTRIBUTES lpEventAttributes,
    BOOL bManualReset, BOOL bInitialState, LPCWSTR lpName);
PEERDIST_API BOOL WINAPI pdw32_SetEvent(HANDLE hEvent);
PEERDIST_API BOOL WINAPI pdw32_ResetEvent(HANDLE hEvent);
PEERDIST_API DWORD WINAPI pdw32_WaitForSingleObject(HANDLE hHandle, DWORD dwMilliseconds);

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
PEERDIST_API HANDLE peerdist_port_create_routine(PEERDIST_COMPLETION_ROUTINE routine, void *context);

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
#define GetLastError pdw32_GetLastError
#define SetLastError pdw32_SetLastError
#endif

#ifdef __cplusplus
}
#endif

#endif /* PEERDIST_WIN32_H */
