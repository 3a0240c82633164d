/*
 * fsutil.h - small file-system helpers peerdistd's start-up shares.
 */
#ifndef PEERDIST_FSUTIL_H
#define PEERDIST_FSUTIL_H

/* Creates the directory that holds path (one level, mode 0755) if missing; 0 or -1 (logged). */
int fs_make_parent_dir(const char *path);

#endif
