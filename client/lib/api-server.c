/*
 * api-server.c - PeerDistServer* of <peerdist.h>. Not built yet: each
 * returns ERROR_CALL_NOT_IMPLEMENTED so programs link and fail clearly.
 */
#include "api-internal.h"

PEERDIST_API DWORD WINAPI PeerDistServerPublishStream(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier, ULONGLONG cbContentLength,
    PCPEERDIST_PUBLICATION_OPTIONS pPublishOptions, HANDLE hCompletionPort,
    ULONG_PTR ulCompletionKey, PPEERDIST_STREAM_HANDLE phStream)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerPublishAddToStream(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STREAM_HANDLE hStream, DWORD cbNumberOfBytes, PBYTE pBuffer,
    LPOVERLAPPED lpOverlapped)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerPublishCompleteStream(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STREAM_HANDLE hStream, LPOVERLAPPED lpOverlapped)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerCloseStreamHandle(PEERDIST_INSTANCE_HANDLE hPeerDist,
    PEERDIST_STREAM_HANDLE hStream)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerUnpublish(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerOpenContentInformation(
    PEERDIST_INSTANCE_HANDLE hPeerDist, DWORD cbContentIdentifier, PBYTE pContentIdentifier,
    ULONGLONG ullContentOffset, ULONGLONG cbContentLength, HANDLE hCompletionPort,
    ULONG_PTR ulCompletionKey, PPEERDIST_CONTENTINFO_HANDLE phContentInfo)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerOpenContentInformationEx(
    PEERDIST_INSTANCE_HANDLE hPeerDist, DWORD cbContentIdentifier, PBYTE pContentIdentifier,
    ULONGLONG ullContentOffset, ULONGLONG cbContentLength,
    PEERDIST_RETRIEVAL_OPTIONS *pRetrievalOptions, HANDLE hCompletionPort,
    ULONG_PTR ulCompletionKey, PPEERDIST_CONTENTINFO_HANDLE phContentInfo)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerRetrieveContentInformation(
    PEERDIST_INSTANCE_HANDLE hPeerDist, PEERDIST_CONTENTINFO_HANDLE hContentInfo,
    DWORD cbMaxNumberOfBytes, PBYTE pBuffer, LPOVERLAPPED lpOverlapped)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerCloseContentInformation(
    PEERDIST_INSTANCE_HANDLE hPeerDist, PEERDIST_CONTENTINFO_HANDLE hContentInfo)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

PEERDIST_API DWORD WINAPI PeerDistServerCancelAsyncOperation(PEERDIST_INSTANCE_HANDLE hPeerDist,
    DWORD cbContentIdentifier, PBYTE pContentIdentifier, LPOVERLAPPED pOverlapped)
{
    return ERROR_CALL_NOT_IMPLEMENTED;
}

