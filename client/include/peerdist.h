/* SPDX-License-Identifier: MIT */
/*
 * peerdist.h - the Windows Peer Distribution (BranchCache) API for Linux.
 * Same names, types, layouts, constants and error codes as Windows'
 * peerdist.h; a program written for Windows builds against it unchanged
 * (drop its #include <windows.h>). Implemented by libpeerdist.so.1 talking to
 * peerdistd. Behaviour where Windows is silent: peerdist(3).
 */
#if !defined(PEERDIST_H) && !defined(_PEERDIST_H_)
#define PEERDIST_H
#define _PEERDIST_H_ /* the Windows SDK header's guard, for code that tests it */

#include "peerdist-win32.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The Windows version the program targets, as sdkddkver.h derives it:
 * NTDDI_VERSION if defined, else _WIN32_WINNT (0x0601 is Windows 7), else the
 * newest. Below Windows 8 the SDK header hides what Windows 8 added; below
 * Windows 7 it declares nothing; so does this one. A version macro that reads
 * 0 (a sdkddkver.h name this header does not define, such as NTDDI_WIN10)
 * counts as the newest. The library itself always sees the whole API.
 */
#ifndef NTDDI_WIN7
#define NTDDI_WIN7 0x06010000
#endif
#ifndef NTDDI_WIN8
#define NTDDI_WIN8 0x06020000
#endif
#ifndef _WIN32_WINNT_WIN7
#define _WIN32_WINNT_WIN7 0x0601
#endif
#ifndef _WIN32_WINNT_WIN8
#define _WIN32_WINNT_WIN8 0x0602
#endif
#if defined(PEERDIST_BUILDING_LIBRARY)
#define PEERDIST_TARGET_NTDDI NTDDI_WIN8
#elif defined(NTDDI_VERSION) && NTDDI_VERSION != 0
#define PEERDIST_TARGET_NTDDI NTDDI_VERSION
#elif defined(_WIN32_WINNT) && _WIN32_WINNT != 0
#define PEERDIST_TARGET_NTDDI ((_WIN32_WINNT)*0x10000)
#else
#define PEERDIST_TARGET_NTDDI NTDDI_WIN8
#endif

/* PeerDist error codes (winerror.h: every Windows version has them). */
#define PEERDIST_ERROR_CONTENTINFO_VERSION_UNSUPPORTED 4050
#define PEERDIST_ERROR_CANNOT_PARSE_CONTENTINFO 4051
#define PEERDIST_ERROR_MISSING_DATA 4052
#define PEERDIST_ERROR_NO_MORE 4053
#define PEERDIST_ERROR_NOT_INITIALIZED 4054
#define PEERDIST_ERROR_ALREADY_INITIALIZED 4055
#define PEERDIST_ERROR_SHUTDOWN_IN_PROGRESS 4056
#define PEERDIST_ERROR_INVALIDATED 4057
#define PEERDIST_ERROR_ALREADY_EXISTS 4058
#define PEERDIST_ERROR_OPERATION_NOTFOUND 4059
#define PEERDIST_ERROR_ALREADY_COMPLETED 4060
#define PEERDIST_ERROR_OUT_OF_BOUNDS 4061
#define PEERDIST_ERROR_VERSION_UNSUPPORTED 4062
#define PEERDIST_ERROR_INVALID_CONFIGURATION 4063
#define PEERDIST_ERROR_NOT_LICENSED 4064
#define PEERDIST_ERROR_SERVICE_UNAVAILABLE 4065
#define PEERDIST_ERROR_TRUST_FAILURE 4066

#if PEERDIST_TARGET_NTDDI >= NTDDI_WIN7

/* Constants have Windows' 32-bit types (see peerdist-win32.h): 1L is an int here, 0UL an unsigned int. */
#define PEERDIST_PUBLICATION_OPTIONS_VERSION_1 1
#if PEERDIST_TARGET_NTDDI >= NTDDI_WIN8
#define PEERDIST_PUBLICATION_OPTIONS_VERSION 2
#define PEERDIST_PUBLICATION_OPTIONS_VERSION_2 2
#define PEERDIST_VERSION ((DWORD)MAKELONG(2, 0))
#else
#define PEERDIST_PUBLICATION_OPTIONS_VERSION 1
#define PEERDIST_VERSION MAKEWORD(1, 0)
#endif

#define PEERDIST_READ_TIMEOUT_LOCAL_CACHE_ONLY 0U
#define PEERDIST_READ_TIMEOUT_DEFAULT 0xfffffffeU

typedef enum {
    PEERDIST_STATUS_DISABLED,
    PEERDIST_STATUS_UNAVAILABLE,
    PEERDIST_STATUS_AVAILABLE,
} PEERDIST_STATUS;

typedef struct peerdist_publication_options_tag {
    DWORD dwVersion;
    DWORD dwFlags;
} PEERDIST_PUBLICATION_OPTIONS, *PPEERDIST_PUBLICATION_OPTIONS;
typedef const PEERDIST_PUBLICATION_OPTIONS *PCPEERDIST_PUBLICATION_OPTIONS;

typedef struct peerdist_content_tag_tag {
    BYTE Data[16];
} PEERDIST_CONTENT_TAG, *PPEERDIST_CONTENT_TAG;
typedef const PEERDIST_CONTENT_TAG *PCPEERDIST_CONTENT_TAG;

typedef HANDLE PEERDIST_INSTANCE_HANDLE, *PPEERDIST_INSTANCE_HANDLE;
typedef HANDLE PEERDIST_CONTENT_HANDLE, *PPEERDIST_CONTENT_HANDLE;
typedef HANDLE PEERDIST_CONTENTINFO_HANDLE, *PPEERDIST_CONTENTINFO_HANDLE;
typedef HANDLE PEERDIST_STREAM_HANDLE, *PPEERDIST_STREAM_HANDLE;

/* Session */
PEERDIST_API DWORD WINAPI PeerDistStartup(DWORD dwVersionRequested,
    PPEERDIST_INSTANCE_HANDLE phPeerDist, PDWORD pdwSupportedVersion);
PEERDIST_API DWORD WINAPI PeerDistShutdown(PEERDIST_INSTANCE_HANDLE hPeerDist);
PEERDIST_API DWORD WINAPI PeerDistGetStatus(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STATUS *pPeerDistStatus);
PEERDIST_API DWORD WINAPI PeerDistRegisterForStatusChangeNotification(
    PEERDIST_INSTANCE_HANDLE hPeerDist, HANDLE hCompletionPort, ULONG_PTR ulCompletionKey,
    LPOVERLAPPED lpOverlapped, PEERDIST_STATUS *pPeerDistStatus);
PEERDIST_API DWORD WINAPI PeerDistUnregisterForStatusChangeNotification(
    PEERDIST_INSTANCE_HANDLE hPeerDist);

/* Server (publisher) */
PEERDIST_API DWORD WINAPI PeerDistServerPublishStream(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier, ULONGLONG cbContentLength,
    PCPEERDIST_PUBLICATION_OPTIONS pPublishOptions, HANDLE hCompletionPort,
    ULONG_PTR ulCompletionKey, PPEERDIST_STREAM_HANDLE phStream);
PEERDIST_API DWORD WINAPI PeerDistServerPublishAddToStream(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STREAM_HANDLE hStream, DWORD cbNumberOfBytes, PBYTE pBuffer,
    LPOVERLAPPED lpOverlapped);
PEERDIST_API DWORD WINAPI PeerDistServerPublishCompleteStream(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STREAM_HANDLE hStream, LPOVERLAPPED lpOverlapped);
PEERDIST_API DWORD WINAPI PeerDistServerCloseStreamHandle(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STREAM_HANDLE hStream);
PEERDIST_API DWORD WINAPI PeerDistServerUnpublish(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier);
PEERDIST_API DWORD WINAPI PeerDistServerOpenContentInformation(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier, ULONGLONG ullContentOffset,
    ULONGLONG cbContentLength, HANDLE hCompletionPort, ULONG_PTR ulCompletionKey,
    PPEERDIST_CONTENTINFO_HANDLE phContentInfo);
PEERDIST_API DWORD WINAPI PeerDistServerRetrieveContentInformation(
    PEERDIST_INSTANCE_HANDLE hPeerDist, PEERDIST_CONTENTINFO_HANDLE hContentInfo,
    DWORD cbMaxNumberOfBytes, PBYTE pBuffer, LPOVERLAPPED lpOverlapped);
PEERDIST_API DWORD WINAPI PeerDistServerCloseContentInformation(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENTINFO_HANDLE hContentInfo);
PEERDIST_API DWORD WINAPI PeerDistServerCancelAsyncOperation(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier, LPOVERLAPPED pOverlapped);

/* Client (consumer) */
PEERDIST_API DWORD WINAPI PeerDistClientOpenContent(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PCPEERDIST_CONTENT_TAG pContentTag, HANDLE hCompletionPort, ULONG_PTR ulCompletionKey,
    PPEERDIST_CONTENT_HANDLE phContentHandle);
PEERDIST_API DWORD WINAPI PeerDistClientCloseContent(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle);
PEERDIST_API DWORD WINAPI PeerDistClientAddContentInformation(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle, DWORD cbNumberOfBytes, PBYTE pBuffer,
    LPOVERLAPPED lpOverlapped);
PEERDIST_API DWORD WINAPI PeerDistClientCompleteContentInformation(
    PEERDIST_INSTANCE_HANDLE hPeerDist, PEERDIST_CONTENT_HANDLE hContentHandle,
    LPOVERLAPPED lpOverlapped);
PEERDIST_API DWORD WINAPI PeerDistClientAddData(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle, DWORD cbNumberOfBytes, PBYTE pBuffer,
    LPOVERLAPPED lpOverlapped);
PEERDIST_API DWORD WINAPI PeerDistClientBlockRead(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle, DWORD cbMaxNumberOfBytes, PBYTE pBuffer,
    DWORD dwTimeoutInMilliseconds, LPOVERLAPPED lpOverlapped);
PEERDIST_API DWORD WINAPI PeerDistClientStreamRead(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle, DWORD cbMaxNumberOfBytes, PBYTE pBuffer,
    DWORD dwTimeoutInMilliseconds, LPOVERLAPPED lpOverlapped);
PEERDIST_API DWORD WINAPI PeerDistClientFlushContent(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PCPEERDIST_CONTENT_TAG pContentTag, HANDLE hCompletionPort, ULONG_PTR ulCompletionKey,
    LPOVERLAPPED lpOverlapped);
PEERDIST_API DWORD WINAPI PeerDistClientCancelAsyncOperation(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle, LPOVERLAPPED pOverlapped);

#endif /* Windows 7 */

#if PEERDIST_TARGET_NTDDI >= NTDDI_WIN8

#define PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION 2
#define PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION_1 1
#define PEERDIST_RETRIEVAL_OPTIONS_CONTENTINFO_VERSION_2 2

typedef struct peerdist_retrieval_options_tag {
    DWORD cbSize;
    DWORD dwContentInfoMinVersion;
    DWORD dwContentInfoMaxVersion;
    DWORD dwReserved;
} PEERDIST_RETRIEVAL_OPTIONS, *PPEERDIST_RETRIEVAL_OPTIONS;
typedef const PEERDIST_RETRIEVAL_OPTIONS *PCPEERDIST_RETRIEVAL_OPTIONS;

typedef struct peerdist_status_info_tag {
    DWORD cbSize;
    PEERDIST_STATUS status;
    DWORD dwMinVer;
    DWORD dwMaxVer;
} PEERDIST_STATUS_INFO, *PPEERDIST_STATUS_INFO;
typedef const PEERDIST_STATUS_INFO *PCPEERDIST_STATUS_INFO;

typedef enum _PEERDIST_CLIENT_INFO_BY_HANDLE_CLASS {
    PeerDistClientBasicInfo = 0,
    MaximumPeerDistClientInfoByHandlesClass
} PEERDIST_CLIENT_INFO_BY_HANDLE_CLASS,
    *PPEERDIST_CLIENT_INFO_BY_HANDLE_CLASS;

typedef struct _PEERDIST_CLIENT_BASIC_INFO {
    BOOL fFlashCrowd;
} PEERDIST_CLIENT_BASIC_INFO, *PPEERDIST_CLIENT_BASIC_INFO;

PEERDIST_API DWORD WINAPI PeerDistGetStatusEx(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STATUS_INFO *pPeerDistStatus);
PEERDIST_API DWORD WINAPI PeerDistRegisterForStatusChangeNotificationEx(
    PEERDIST_INSTANCE_HANDLE hPeerDist, HANDLE hCompletionPort, ULONG_PTR ulCompletionKey,
    LPOVERLAPPED lpOverlapped, PEERDIST_STATUS_INFO *pPeerDistStatus);
PEERDIST_API BOOL WINAPI PeerDistGetOverlappedResult(LPOVERLAPPED lpOverlapped,
    LPDWORD lpNumberOfBytesTransferred, BOOL bWait);
PEERDIST_API DWORD WINAPI PeerDistServerOpenContentInformationEx(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier, ULONGLONG ullContentOffset,
    ULONGLONG cbContentLength, PEERDIST_RETRIEVAL_OPTIONS *pRetrievalOptions,
    HANDLE hCompletionPort, ULONG_PTR ulCompletionKey, PPEERDIST_CONTENTINFO_HANDLE phContentInfo);
PEERDIST_API DWORD WINAPI PeerDistClientGetInformationByHandle(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_CONTENT_HANDLE hContentHandle,
    PEERDIST_CLIENT_INFO_BY_HANDLE_CLASS PeerDistClientInfoClass, DWORD dwBufferSize,
    LPVOID lpInformation);

#endif /* Windows 8 */

#ifdef __cplusplus
}
#endif

#endif /* PEERDIST_H */
