/* SPDX-License-Identifier: MIT */
/*
 * test_sdk_header.c - <peerdist.h> against the Windows SDK's peerdist.h and
 * the winerror.h/winnt.h/winbase.h values it leans on, checked at compile
 * time: every size and offset, every constant's value, width and signedness
 * (as under Windows' LLP64, where 997L is a 32-bit signed value), every
 * function's type, and what a program targeting Windows 7 (or older) must
 * not see. Facts: ../shared/reference/peerdist-api.md.
 *
 * Built once per way of choosing the target (tests/CMakeLists.txt), with the
 * expected result given as PD_EXPECT_TARGET: 8 (Windows 8 and later), 7, or
 * 6 (before Windows 7: the SDK header declares no PeerDist API at all).
 * PEERDIST_NO_WIN32_NAMES builds check that no Win32 name is defined.
 */
#include <peerdist.h>

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef PD_EXPECT_TARGET
#error "PD_EXPECT_TARGET (6, 7 or 8) is set by tests/CMakeLists.txt"
#endif

#define IS_INT(x) _Generic((x), int : 1, default : 0)
#define IS_DWORD(x) _Generic((x), DWORD : 1, default : 0)
#define IS_WORD(x) _Generic((x), WORD : 1, default : 0)

/* winerror.h's "997L": 32 bits and signed (an int here, never a 64-bit long). */
#define SIGNED32(name, value)                                              \
    _Static_assert(IS_INT(name) && sizeof(name) == 4 && (name) == (value), \
        #name " is a 32-bit signed " #value)
/* "((DWORD)0x103L)", "0xFFFFFFFF", "0UL": 32 bits and unsigned (DWORD is unsigned int). */
#define UNSIGNED32(name, value)                                              \
    _Static_assert(IS_DWORD(name) && sizeof(name) == 4 && (name) == (value), \
        #name " is a 32-bit unsigned " #value)
#define SIZE(type, n) _Static_assert(sizeof(type) == (n), "sizeof(" #type ") is " #n)
#define OFFSET(type, member, n) \
    _Static_assert(offsetof(type, member) == (n), "offsetof(" #type ", " #member ") is " #n)
#define FUNCTION(fn, ...) \
    _Static_assert(_Generic(&fn, __VA_ARGS__ : 1, default : 0), #fn " has the SDK's type")
/* A name the header must not declare: declaring it as something else would clash. */
#define ABSENT(name) extern int name;

#ifndef _PEERDIST_H_
#error "the SDK header's include guard _PEERDIST_H_ is defined too"
#endif

/* ---- base types (LLP64 widths; pointer-sized where Windows' are) ---- */

SIZE(BYTE, 1);
SIZE(WORD, 2);
SIZE(DWORD, 4);
SIZE(LONG, 4);
SIZE(ULONG, 4);
SIZE(UINT, 4);
SIZE(BOOL, 4);
SIZE(LONGLONG, 8);
SIZE(ULONGLONG, 8);
SIZE(ULONG_PTR, sizeof(void *));
SIZE(LONG_PTR, sizeof(void *));
SIZE(SIZE_T, sizeof(void *));
SIZE(HANDLE, sizeof(void *));
SIZE(WCHAR, 2);
_Static_assert((BYTE)-1 > 0 && (WORD)-1 > 0 && (DWORD)-1 > 0 && (ULONG)-1 > 0 && (UINT)-1 > 0 &&
        (ULONGLONG)-1 > 0 && (ULONG_PTR)-1 > 0 && (SIZE_T)-1 > 0,
    "the unsigned types are unsigned");
_Static_assert((LONG)-1 < 0 && (BOOL)-1 < 0 && (LONGLONG)-1 < 0 && (LONG_PTR)-1 < 0,
    "the signed types are signed");
/* DWORD stays unsigned int (client/README.md says how ported code prints it). */
_Static_assert(_Generic((DWORD)0, unsigned int : 1, default : 0), "DWORD is unsigned int");
_Static_assert(_Generic((SIZE_T)0, size_t : 1, default : 0), "SIZE_T is size_t's type");

SIZE(LARGE_INTEGER, 8);
OFFSET(LARGE_INTEGER, LowPart, 0);
OFFSET(LARGE_INTEGER, HighPart, 4);
OFFSET(LARGE_INTEGER, u.LowPart, 0);
OFFSET(LARGE_INTEGER, u.HighPart, 4);
OFFSET(LARGE_INTEGER, QuadPart, 0);
SIZE(ULARGE_INTEGER, 8);
OFFSET(ULARGE_INTEGER, LowPart, 0);
OFFSET(ULARGE_INTEGER, HighPart, 4);
OFFSET(ULARGE_INTEGER, u.LowPart, 0);
OFFSET(ULARGE_INTEGER, u.HighPart, 4);
OFFSET(ULARGE_INTEGER, QuadPart, 0);
_Static_assert(_Generic(((LARGE_INTEGER){0}).HighPart, LONG : 1, default : 0) &&
        _Generic(((ULARGE_INTEGER){0}).HighPart, DWORD : 1, default : 0) &&
        _Generic(((LARGE_INTEGER){0}).QuadPart, LONGLONG : 1, default : 0) &&
        _Generic(((ULARGE_INTEGER){0}).QuadPart, ULONGLONG : 1, default : 0),
    "LARGE_INTEGER's high half is signed, ULARGE_INTEGER's unsigned");

/* OVERLAPPED: 20 bytes on x86, 32 on x64 (reference 1.6). */
#define PTR sizeof(void *)
SIZE(OVERLAPPED, 3 * PTR + 8);
OFFSET(OVERLAPPED, Internal, 0);
OFFSET(OVERLAPPED, InternalHigh, PTR);
OFFSET(OVERLAPPED, Offset, 2 * PTR);
OFFSET(OVERLAPPED, OffsetHigh, 2 * PTR + 4);
OFFSET(OVERLAPPED, Pointer, 2 * PTR);
OFFSET(OVERLAPPED, hEvent, 2 * PTR + 8);
_Static_assert(sizeof(void *) != 8 || sizeof(OVERLAPPED) == 32, "OVERLAPPED is 32 bytes on x64");
_Static_assert(sizeof(void *) != 4 || sizeof(OVERLAPPED) == 20, "OVERLAPPED is 20 bytes on x86");

/* OVERLAPPED_ENTRY (minwinbase.h): 32 bytes on x64, 16 on x86. */
OFFSET(OVERLAPPED_ENTRY, lpCompletionKey, 0);
OFFSET(OVERLAPPED_ENTRY, lpOverlapped, PTR);
OFFSET(OVERLAPPED_ENTRY, Internal, 2 * PTR);
OFFSET(OVERLAPPED_ENTRY, dwNumberOfBytesTransferred, 3 * PTR);
_Static_assert(sizeof(void *) != 8 || sizeof(OVERLAPPED_ENTRY) == 32,
    "OVERLAPPED_ENTRY is 32 bytes on x64");
_Static_assert(sizeof(void *) != 4 || sizeof(OVERLAPPED_ENTRY) == 16,
    "OVERLAPPED_ENTRY is 16 bytes on x86");

SIZE(SECURITY_ATTRIBUTES, PTR == 8 ? 24 : 12);

/* ---- constants of winerror.h, winnt.h and winbase.h ---- */

SIGNED32(ERROR_SUCCESS, 0);
SIGNED32(NO_ERROR, 0);
SIGNED32(ERROR_ACCESS_DENIED, 5);
SIGNED32(ERROR_INVALID_HANDLE, 6);
SIGNED32(ERROR_NOT_ENOUGH_MEMORY, 8);
SIGNED32(ERROR_INVALID_DATA, 13);
SIGNED32(ERROR_OUTOFMEMORY, 14);
SIGNED32(ERROR_WRITE_FAULT, 29);
SIGNED32(ERROR_HANDLE_EOF, 38);
SIGNED32(ERROR_NOT_SUPPORTED, 50);
SIGNED32(ERROR_REQ_NOT_ACCEP, 71);
SIGNED32(ERROR_INVALID_PARAMETER, 87);
SIGNED32(ERROR_DISK_FULL, 112);
SIGNED32(ERROR_CALL_NOT_IMPLEMENTED, 120);
SIGNED32(ERROR_INSUFFICIENT_BUFFER, 122);
SIGNED32(ERROR_ALREADY_EXISTS, 183);
SIGNED32(ERROR_MORE_DATA, 234);
SIGNED32(WAIT_TIMEOUT, 258); /* winerror.h's 258L: signed, unlike the other WAIT_ values */
SIGNED32(ERROR_NO_MORE_ITEMS, 259);
SIGNED32(ERROR_ABANDONED_WAIT_0, 735);
SIGNED32(ERROR_OPERATION_ABORTED, 995);
SIGNED32(ERROR_IO_INCOMPLETE, 996);
SIGNED32(ERROR_IO_PENDING, 997);
SIGNED32(ERROR_NOT_FOUND, 1168);
SIGNED32(ERROR_CANCELLED, 1223);
SIGNED32(ERROR_ACCESS_DISABLED_BY_POLICY, 1260);
SIGNED32(ERROR_INTERNAL_ERROR, 1359);
SIGNED32(ERROR_TIMEOUT, 1460);

SIGNED32(PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED, 4050);
SIGNED32(PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO, 4051);
SIGNED32(PEERDIST_ERROR_MISSING_DATA, 4052);
SIGNED32(PEERDIST_ERROR_NO_MORE, 4053);
SIGNED32(PEERDIST_ERROR_NOT_INITIALIZED, 4054);
SIGNED32(PEERDIST_ERROR_ALREADY_INITIALIZED, 4055);
SIGNED32(PEERDIST_ERROR_SHUTDOWN_IN_PROGRESS, 4056);
SIGNED32(PEERDIST_ERROR_INVALIDATED, 4057);
SIGNED32(PEERDIST_ERROR_ALREADY_EXISTS, 4058);
SIGNED32(PEERDIST_ERROR_OPERATION_NOTFOUND, 4059);
SIGNED32(PEERDIST_ERROR_ALREADY_COMPLETED, 4060);
SIGNED32(PEERDIST_ERROR_OUT_OF_BOUNDS, 4061);
SIGNED32(PEERDIST_ERROR_VERSION_UNSUPPORTED, 4062);
SIGNED32(PEERDIST_ERROR_INVALID_CONFIGURATION, 4063);
SIGNED32(PEERDIST_ERROR_NOT_LICENSED, 4064);
SIGNED32(PEERDIST_ERROR_SERVICE_UNAVAILABLE, 4065);
SIGNED32(PEERDIST_ERROR_TRUST_FAILURE, 4066);

UNSIGNED32(INFINITE, 0xFFFFFFFFu);
UNSIGNED32(STATUS_PENDING, 0x103);
UNSIGNED32(WAIT_OBJECT_0, 0);
UNSIGNED32(WAIT_ABANDONED, 0x80);
UNSIGNED32(WAIT_ABANDONED_0, 0x80);
UNSIGNED32(WAIT_FAILED, 0xFFFFFFFFu);
SIGNED32(MAXIMUM_WAIT_OBJECTS, 64);
SIGNED32(TRUE, 1);
SIGNED32(FALSE, 0);
_Static_assert(IS_WORD(MAKEWORD(1, 2)) && MAKEWORD(1, 2) == 0x0201, "MAKEWORD: low byte first");
_Static_assert(_Generic(MAKELONG(1, 2), LONG : 1, default : 0) && MAKELONG(1, 2) == 0x00020001,
    "MAKELONG: low word first");

/* ---- the shim's functions (Windows' prototypes) ---- */

FUNCTION(pdw32_CreateIoCompletionPort, HANDLE (*)(HANDLE, HANDLE, ULONG_PTR, DWORD));
FUNCTION(pdw32_GetQueuedCompletionStatus,
    BOOL (*)(HANDLE, LPDWORD, PULONG_PTR, LPOVERLAPPED *, DWORD));
FUNCTION(pdw32_GetQueuedCompletionStatusEx,
    BOOL (*)(HANDLE, LPOVERLAPPED_ENTRY, ULONG, PULONG, DWORD, BOOL));
FUNCTION(pdw32_PostQueuedCompletionStatus, BOOL (*)(HANDLE, DWORD, ULONG_PTR, LPOVERLAPPED));
FUNCTION(pdw32_GetOverlappedResult, BOOL (*)(HANDLE, LPOVERLAPPED, LPDWORD, BOOL));
FUNCTION(pdw32_CloseHandle, BOOL (*)(HANDLE));
FUNCTION(pdw32_CreateEventA, HANDLE (*)(LPSECURITY_ATTRIBUTES, BOOL, BOOL, LPCSTR));
FUNCTION(pdw32_CreateEventW, HANDLE (*)(LPSECURITY_ATTRIBUTES, BOOL, BOOL, LPCWSTR));
FUNCTION(pdw32_SetEvent, BOOL (*)(HANDLE));
FUNCTION(pdw32_ResetEvent, BOOL (*)(HANDLE));
FUNCTION(pdw32_WaitForSingleObject, DWORD (*)(HANDLE, DWORD));
FUNCTION(pdw32_WaitForMultipleObjects, DWORD (*)(DWORD, const HANDLE *, BOOL, DWORD));
FUNCTION(pdw32_Sleep, void (*)(DWORD));
FUNCTION(pdw32_GetLastError, DWORD (*)(void));
FUNCTION(pdw32_SetLastError, void (*)(DWORD));

#ifdef PEERDIST_NO_WIN32_NAMES
#if defined(CreateIoCompletionPort) || defined(GetQueuedCompletionStatus) ||                      \
    defined(GetQueuedCompletionStatusEx) || defined(PostQueuedCompletionStatus) ||                \
    defined(GetOverlappedResult) || defined(CloseHandle) || defined(CreateEvent) ||               \
    defined(CreateEventA) || defined(CreateEventW) || defined(SetEvent) || defined(ResetEvent) || \
    defined(WaitForSingleObject) || defined(WaitForMultipleObjects) || defined(Sleep) ||          \
    defined(GetLastError) || defined(SetLastError) || defined(ZeroMemory) ||                      \
    defined(CopyMemory) || defined(FillMemory)
#error "PEERDIST_NO_WIN32_NAMES leaves no Win32 name defined"
#endif
/* The names are free for the program's own use. */
ABSENT(GetOverlappedResult)
ABSENT(WaitForMultipleObjects)
ABSENT(Sleep)
ABSENT(ZeroMemory)
#else
FUNCTION(CreateIoCompletionPort, HANDLE (*)(HANDLE, HANDLE, ULONG_PTR, DWORD));
FUNCTION(GetQueuedCompletionStatus, BOOL (*)(HANDLE, LPDWORD, PULONG_PTR, LPOVERLAPPED *, DWORD));
FUNCTION(GetQueuedCompletionStatusEx,
    BOOL (*)(HANDLE, LPOVERLAPPED_ENTRY, ULONG, PULONG, DWORD, BOOL));
FUNCTION(PostQueuedCompletionStatus, BOOL (*)(HANDLE, DWORD, ULONG_PTR, LPOVERLAPPED));
FUNCTION(GetOverlappedResult, BOOL (*)(HANDLE, LPOVERLAPPED, LPDWORD, BOOL));
FUNCTION(CloseHandle, BOOL (*)(HANDLE));
FUNCTION(CreateEvent, HANDLE (*)(LPSECURITY_ATTRIBUTES, BOOL, BOOL, LPCSTR));
FUNCTION(CreateEventA, HANDLE (*)(LPSECURITY_ATTRIBUTES, BOOL, BOOL, LPCSTR));
FUNCTION(CreateEventW, HANDLE (*)(LPSECURITY_ATTRIBUTES, BOOL, BOOL, LPCWSTR));
FUNCTION(SetEvent, BOOL (*)(HANDLE));
FUNCTION(ResetEvent, BOOL (*)(HANDLE));
FUNCTION(WaitForSingleObject, DWORD (*)(HANDLE, DWORD));
FUNCTION(WaitForMultipleObjects, DWORD (*)(DWORD, const HANDLE *, BOOL, DWORD));
FUNCTION(Sleep, void (*)(DWORD));
FUNCTION(GetLastError, DWORD (*)(void));
FUNCTION(SetLastError, void (*)(DWORD));
#endif

/* ---- peerdist.h: what every target from Windows 7 on has ---- */

#if PD_EXPECT_TARGET >= 7
SIGNED32(PEERDIST_PUBLICATION_OPTIONS_VERSION_1, 1);
UNSIGNED32(PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY, 0);
UNSIGNED32(PEERDIST_READ_TIMEOUT_DEFAULT, 0xfffffffeu);

SIZE(PEERDIST_STATUS, 4);
_Static_assert(PEERDIST_STATUS_DISABLED == 0 && PEERDIST_STATUS_UNAVAILABLE == 1 &&
        PEERDIST_STATUS_AVAILABLE == 2,
    "PEERDIST_STATUS values");
SIZE(PEERDIST_PUBLICATION_OPTIONS, 8);
OFFSET(PEERDIST_PUBLICATION_OPTIONS, dwVersion, 0);
OFFSET(PEERDIST_PUBLICATION_OPTIONS, dwFlags, 4);
_Static_assert(_Generic((PPEERDIST_PUBLICATION_OPTIONS)0,
                   struct peerdist_publication_options_tag * : 1, default : 0) &&
        _Generic((PCPEERDIST_PUBLICATION_OPTIONS)0, const PEERDIST_PUBLICATION_OPTIONS * : 1,
            default : 0),
    "publication options: tag and pointer types");
SIZE(PEERDIST_CONTENT_TAG, 16);
OFFSET(PEERDIST_CONTENT_TAG, Data, 0);
_Static_assert(
    _Generic((PPEERDIST_CONTENT_TAG)0, struct peerdist_content_tag_tag * : 1, default : 0) &&
        _Generic((PCPEERDIST_CONTENT_TAG)0, const PEERDIST_CONTENT_TAG * : 1, default : 0),
    "content tag: tag and pointer types");
_Static_assert(_Generic((PEERDIST_INSTANCE_HANDLE)0, HANDLE : 1, default : 0) &&
        _Generic((PEERDIST_CONTENT_HANDLE)0, HANDLE : 1, default : 0) &&
        _Generic((PEERDIST_CONTENTINFO_HANDLE)0, HANDLE : 1, default : 0) &&
        _Generic((PEERDIST_STREAM_HANDLE)0, HANDLE : 1, default : 0) &&
        _Generic((PPEERDIST_INSTANCE_HANDLE)0, HANDLE * : 1, default : 0) &&
        _Generic((PPEERDIST_CONTENT_HANDLE)0, HANDLE * : 1, default : 0) &&
        _Generic((PPEERDIST_CONTENTINFO_HANDLE)0, HANDLE * : 1, default : 0) &&
        _Generic((PPEERDIST_STREAM_HANDLE)0, HANDLE * : 1, default : 0),
    "the handles are HANDLEs");

FUNCTION(PeerDistStartup, DWORD (*)(DWORD, PPEERDIST_INSTANCE_HANDLE, PDWORD));
FUNCTION(PeerDistShutdown, DWORD (*)(PEERDIST_INSTANCE_HANDLE));
FUNCTION(PeerDistGetStatus, DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_STATUS *));
FUNCTION(PeerDistRegisterForStatusChangeNotification,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, HANDLE, ULONG_PTR, LPOVERLAPPED, PEERDIST_STATUS *));
FUNCTION(PeerDistUnregisterForStatusChangeNotification, DWORD (*)(PEERDIST_INSTANCE_HANDLE));
FUNCTION(PeerDistServerPublishStream,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, DWORD, PBYTE, ULONGLONG, PCPEERDIST_PUBLICATION_OPTIONS,
        HANDLE, ULONG_PTR, PPEERDIST_STREAM_HANDLE));
FUNCTION(PeerDistServerPublishAddToStream,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_STREAM_HANDLE, DWORD, PBYTE, LPOVERLAPPED));
FUNCTION(PeerDistServerPublishCompleteStream,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_STREAM_HANDLE, LPOVERLAPPED));
FUNCTION(PeerDistServerCloseStreamHandle,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_STREAM_HANDLE));
FUNCTION(PeerDistServerUnpublish, DWORD (*)(PEERDIST_INSTANCE_HANDLE, DWORD, PBYTE));
FUNCTION(PeerDistServerOpenContentInformation,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, DWORD, PBYTE, ULONGLONG, ULONGLONG, HANDLE, ULONG_PTR,
        PPEERDIST_CONTENTINFO_HANDLE));
FUNCTION(PeerDistServerRetrieveContentInformation,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_CONTENTINFO_HANDLE, DWORD, PBYTE, LPOVERLAPPED));
FUNCTION(PeerDistServerCloseContentInformation,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_CONTENTINFO_HANDLE));
FUNCTION(PeerDistServerCancelAsyncOperation,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, DWORD, PBYTE, LPOVERLAPPED));
FUNCTION(PeerDistClientOpenContent,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, PCPEERDIST_CONTENT_TAG, HANDLE, ULONG_PTR,
        PPEERDIST_CONTENT_HANDLE));
FUNCTION(PeerDistClientCloseContent, DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_CONTENT_HANDLE));
FUNCTION(PeerDistClientAddContentInformation,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_CONTENT_HANDLE, DWORD, PBYTE, LPOVERLAPPED));
FUNCTION(PeerDistClientCompleteContentInformation,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_CONTENT_HANDLE, LPOVERLAPPED));
FUNCTION(PeerDistClientAddData,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_CONTENT_HANDLE, DWORD, PBYTE, LPOVERLAPPED));
FUNCTION(PeerDistClientBlockRead,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_CONTENT_HANDLE, DWORD, PBYTE, DWORD,
        LPOVERLAPPED));
FUNCTION(PeerDistClientStreamRead,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_CONTENT_HANDLE, DWORD, PBYTE, DWORD,
        LPOVERLAPPED));
FUNCTION(PeerDistClientFlushContent,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, PCPEERDIST_CONTENT_TAG, HANDLE, ULONG_PTR, LPOVERLAPPED));
FUNCTION(PeerDistClientCancelAsyncOperation,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_CONTENT_HANDLE, LPOVERLAPPED));
#else
#if defined(PEERDIST_VERSION) || defined(PEERDIST_PUBLICATION_OPTIONS_VERSION) || \
    defined(PEERDIST_PUBLICATION_OPTIONS_VERSION_1) ||                            \
    defined(PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY) || defined(PEERDIST_READ_TIMEOUT_DEFAULT)
#error "before Windows 7 the SDK header defines no PeerDist constant"
#endif
ABSENT(PEERDIST_STATUS)
ABSENT(PEERDIST_STATUS_AVAILABLE)
ABSENT(PEERDIST_PUBLICATION_OPTIONS)
ABSENT(PEERDIST_CONTENT_TAG)
ABSENT(PEERDIST_INSTANCE_HANDLE)
ABSENT(PPEERDIST_CONTENT_HANDLE)
ABSENT(PeerDistStartup)
ABSENT(PeerDistShutdown)
ABSENT(PeerDistGetStatus)
ABSENT(PeerDistServerPublishStream)
ABSENT(PeerDistClientOpenContent)
ABSENT(PeerDistClientBlockRead)
ABSENT(PeerDistClientFlushContent)
ABSENT(PeerDistClientCancelAsyncOperation)
struct peerdist_content_tag_tag {
    int absent;
};
#endif

/* ---- Windows 8 and later, or the Windows 7 header ---- */

#if PD_EXPECT_TARGET >= 8
SIGNED32(PEERDIST_PUBLICATION_OPTIONS_VERSION, 2);
SIGNED32(PEERDIST_PUBLICATION_OPTIONS_VERSION_2, 2);
UNSIGNED32(PEERDIST_VERSION, 2); /* ((DWORD)MAKELONG(2,0)) */
SIGNED32(PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION, 2);
SIGNED32(PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION_1, 1);
SIGNED32(PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION_2, 2);

SIZE(PEERDIST_RETRIEVAL_OPTIONS, 16);
OFFSET(PEERDIST_RETRIEVAL_OPTIONS, cbSize, 0);
OFFSET(PEERDIST_RETRIEVAL_OPTIONS, dwContentInfoMinVersion, 4);
OFFSET(PEERDIST_RETRIEVAL_OPTIONS, dwContentInfoMaxVersion, 8);
OFFSET(PEERDIST_RETRIEVAL_OPTIONS, dwReserved, 12);
_Static_assert(_Generic((PPEERDIST_RETRIEVAL_OPTIONS)0, struct peerdist_retrieval_options_tag * : 1,
                   default : 0) &&
        _Generic((PCPEERDIST_RETRIEVAL_OPTIONS)0, const PEERDIST_RETRIEVAL_OPTIONS * : 1,
            default : 0),
    "retrieval options: tag and pointer types");
SIZE(PEERDIST_STATUS_INFO, 16);
OFFSET(PEERDIST_STATUS_INFO, cbSize, 0);
OFFSET(PEERDIST_STATUS_INFO, status, 4);
OFFSET(PEERDIST_STATUS_INFO, dwMinVer, 8);
OFFSET(PEERDIST_STATUS_INFO, dwMaxVer, 12);
_Static_assert(
    _Generic((PPEERDIST_STATUS_INFO)0, struct peerdist_status_info_tag * : 1, default : 0) &&
        _Generic((PCPEERDIST_STATUS_INFO)0, const PEERDIST_STATUS_INFO * : 1, default : 0) &&
        _Generic(((PEERDIST_STATUS_INFO){0}).status, PEERDIST_STATUS : 1, default : 0),
    "status info: tag and types");
SIZE(PEERDIST_CLIENT_INFO_BY_HANDLE_CLASS, 4);
_Static_assert(PeerDistClientBasicInfo == 0 && MaximumPeerDistClientInfoByHandlesClass == 1,
    "info class values");
_Static_assert(_Generic((PPEERDIST_CLIENT_INFO_BY_HANDLE_CLASS)0,
                   enum _PEERDIST_CLIENT_INFO_BY_HANDLE_CLASS * : 1, default : 0),
    "info class: tag");
SIZE(PEERDIST_CLIENT_BASIC_INFO, 4);
OFFSET(PEERDIST_CLIENT_BASIC_INFO, fFlashCrowd, 0);
_Static_assert(_Generic((PPEERDIST_CLIENT_BASIC_INFO)0, struct _PEERDIST_CLIENT_BASIC_INFO * : 1,
                   default : 0) &&
        _Generic(((PEERDIST_CLIENT_BASIC_INFO){0}).fFlashCrowd, BOOL : 1, default : 0),
    "basic info: tag and types");

FUNCTION(PeerDistGetStatusEx, DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_STATUS_INFO *));
FUNCTION(PeerDistRegisterForStatusChangeNotificationEx,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, HANDLE, ULONG_PTR, LPOVERLAPPED, PEERDIST_STATUS_INFO *));
FUNCTION(PeerDistGetOverlappedResult, BOOL (*)(LPOVERLAPPED, LPDWORD, BOOL));
FUNCTION(PeerDistServerOpenContentInformationEx,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, DWORD, PBYTE, ULONGLONG, ULONGLONG,
        PEERDIST_RETRIEVAL_OPTIONS *, HANDLE, ULONG_PTR, PPEERDIST_CONTENTINFO_HANDLE));
FUNCTION(PeerDistClientGetInformationByHandle,
    DWORD (*)(PEERDIST_INSTANCE_HANDLE, PEERDIST_CONTENT_HANDLE,
        PEERDIST_CLIENT_INFO_BY_HANDLE_CLASS, DWORD, LPVOID));
#else
#if PD_EXPECT_TARGET == 7
SIGNED32(PEERDIST_PUBLICATION_OPTIONS_VERSION, 1);
_Static_assert(IS_WORD(PEERDIST_VERSION) && PEERDIST_VERSION == 1,
    "Windows 7: PEERDIST_VERSION is MAKEWORD(1,0)");
#endif
#if defined(PEERDIST_PUBLICATION_OPTIONS_VERSION_2) ||           \
    defined(PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION) ||   \
    defined(PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION_1) || \
    defined(PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION_2)
#error "the Windows 7 header has no version-2 or retrieval-version constant"
#endif
/* Every name Windows 8 added: types, enumerators, functions and tags. */
ABSENT(PEERDIST_RETRIEVAL_OPTIONS)
ABSENT(PPEERDIST_RETRIEVAL_OPTIONS)
ABSENT(PCPEERDIST_RETRIEVAL_OPTIONS)
ABSENT(PEERDIST_STATUS_INFO)
ABSENT(PPEERDIST_STATUS_INFO)
ABSENT(PCPEERDIST_STATUS_INFO)
ABSENT(PEERDIST_CLIENT_INFO_BY_HANDLE_CLASS)
ABSENT(PPEERDIST_CLIENT_INFO_BY_HANDLE_CLASS)
ABSENT(PeerDistClientBasicInfo)
ABSENT(MaximumPeerDistClientInfoByHandlesClass)
ABSENT(PEERDIST_CLIENT_BASIC_INFO)
ABSENT(PPEERDIST_CLIENT_BASIC_INFO)
ABSENT(PeerDistGetStatusEx)
ABSENT(PeerDistRegisterForStatusChangeNotificationEx)
ABSENT(PeerDistGetOverlappedResult)
ABSENT(PeerDistServerOpenContentInformationEx)
ABSENT(PeerDistClientGetInformationByHandle)
struct peerdist_retrieval_options_tag {
    int absent;
};
struct peerdist_status_info_tag {
    int absent;
};
enum _PEERDIST_CLIENT_INFO_BY_HANDLE_CLASS { PD_ABSENT_CLASS };
struct _PEERDIST_CLIENT_BASIC_INFO {
    int absent;
};
#endif

/* What cannot be a constant expression, and the memory macros, at run time. */
int main(void)
{
    int failed = 0;
    if ((ULONG_PTR)INVALID_HANDLE_VALUE != (ULONG_PTR)-1) {
        printf("INVALID_HANDLE_VALUE is not (HANDLE)-1\n");
        failed = 1;
    }
#ifndef PEERDIST_NO_WIN32_NAMES
    BYTE a[8], b[8];
    FillMemory(a, sizeof(a), 0xAB);
    CopyMemory(b, a, sizeof(b));
    ZeroMemory(a, 4);
    if (a[3] != 0 || a[4] != 0xAB || b[0] != 0xAB || b[7] != 0xAB) {
        printf("ZeroMemory/CopyMemory/FillMemory are not memset(0)/memcpy/memset\n");
        failed = 1;
    }
#endif
    if (!failed)
        printf("<peerdist.h> matches the Windows SDK header (target %d)\n", PD_EXPECT_TARGET);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
