/* SPDX-License-Identifier: MIT */
/*
 * sdk_win8_calls.c - calls what Windows 8 added to <peerdist.h>. Only compiled
 * (tests/CMakeLists.txt): as is it must build; with -D_WIN32_WINNT=0x0601 the
 * compiler must refuse it, as with the Windows SDK.
 */
#include <peerdist.h>

BOOL wait_for(LPOVERLAPPED ov)
{
    DWORD bytes;
    return PeerDistGetOverlappedResult(ov, &bytes, TRUE);
}

DWORD flash_crowd(PEERDIST_INSTANCE_HANDLE h, PEERDIST_CONTENT_HANDLE c, BOOL *crowd)
{
    DWORD rc = PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo, sizeof(BOOL),
        crowd);
    return rc;
}
