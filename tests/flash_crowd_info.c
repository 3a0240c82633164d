/* SPDX-License-Identifier: MIT */
/*
 * flash_crowd_info.c - for tests/test_distributed.py: opens a content handle on the daemon of
 * PEERDIST_SOCKET with the content information in FILE, and prints what
 * PeerDistClientGetInformationByHandle (PeerDistClientBasicInfo) says: "fFlashCrowd 0|1".
 */
#include <stdio.h>
#include <stdlib.h>

#include <peerdist.h>

static DWORD wait_op(DWORD rc, OVERLAPPED *ov)
{
    if (rc != ERROR_IO_PENDING)
        return rc;
    DWORD n = 0;
    return PeerDistGetOverlappedResult(ov, &n, TRUE) ? ERROR_SUCCESS : GetLastError();
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: flash_crowd_info CONTENT-INFORMATION-FILE\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    static BYTE ci[16 << 20];
    size_t len = fread(ci, 1, sizeof(ci), f);
    fclose(f);
    PEERDIST_INSTANCE_HANDLE h;
    PEERDIST_CONTENT_HANDLE c;
    PEERDIST_CONTENT_TAG tag = {{0}};
    DWORD ver, rc;
    if ((rc = PeerDistStartup(PEERDIST_VERSION, &h, &ver)) != ERROR_SUCCESS ||
        (rc = PeerDistClientOpenContent(h, &tag, NULL, 0, &c)) != ERROR_SUCCESS) {
        fprintf(stderr, "flash_crowd_info: startup/open: %lu\n", (unsigned long)rc);
        return 1;
    }
    for (size_t at = 0; at < len;) {
        DWORD n = len - at > 65536 ? 65536 : (DWORD)(len - at), got = 0;
        OVERLAPPED ov = {0};
        rc = PeerDistClientAddContentInformation(h, c, n, ci + at, &ov);
        if (rc == ERROR_IO_PENDING)
            rc = PeerDistGetOverlappedResult(&ov, &got, TRUE) ? ERROR_SUCCESS : GetLastError();
        if (rc != ERROR_SUCCESS || got == 0) {
            fprintf(stderr, "flash_crowd_info: AddContentInformation: %lu\n", (unsigned long)rc);
            return 1;
        }
        at += got;
    }
    OVERLAPPED ov = {0};
    if ((rc = wait_op(PeerDistClientCompleteContentInformation(h, c, &ov), &ov)) != ERROR_SUCCESS) {
        fprintf(stderr, "flash_crowd_info: CompleteContentInformation: %lu\n", (unsigned long)rc);
        return 1;
    }
    PEERDIST_CLIENT_BASIC_INFO bi = {0};
    if ((rc = PeerDistClientGetInformationByHandle(h, c, PeerDistClientBasicInfo, sizeof(bi),
             &bi)) != ERROR_SUCCESS) {
        fprintf(stderr, "flash_crowd_info: GetInformationByHandle: %lu\n", (unsigned long)rc);
        return 1;
    }
    printf("fFlashCrowd %d\n", bi.fFlashCrowd ? 1 : 0);
    PeerDistClientCloseContent(h, c);
    PeerDistShutdown(h);
    return 0;
}
