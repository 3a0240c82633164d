/* SPDX-License-Identifier: MIT */
/*
 * fsutil.h - what peerdistd's start-up does to the file system before it opens anything:
 * who owns what it creates, which directories it trusts, and the lock that makes it the only
 * daemon on its database directory (docs/peerdistd.8.md, Files and permissions).
 */
#ifndef PEERDIST_FSUTIL_H
#define PEERDIST_FSUTIL_H

#include <stdbool.h>
#include <sys/types.h>

/* The system group of the service (packaging/peerdist.sysusers); its members are the admins. */
#define FS_SERVICE_GROUP "peerdist"
/* Nothing peerdistd creates is for others: files 0640, directories 0750 (the socket is the
 * exception, made 0666 on purpose by server.c, and its directory 0755). */
#define FS_UMASK 027
#define FS_FILE_MODE 0640
#define FS_DIR_MODE 0750
/* The lock file in the database directory; it holds the pid of the daemon that owns it. */
#define FS_LOCK_NAME "peerdistd.lock"

/*
 * Once, before any file is created and before any thread starts: sets the umask to FS_UMASK
 * and picks the group of what the daemon creates. Started as root, the daemon takes
 * FS_SERVICE_GROUP as its effective group when that group exists (so an admin's hand-started
 * daemon leaves files its group may read); otherwise its files get its own group.
 */
void fs_init_ownership(void);
/* The group fs_init_ownership chose (the effective group until it ran). */
gid_t fs_file_group(void);

/* Creates the directory that holds path (one level, mode 0755 whatever the umask: a socket's
 * directory, which every user must reach) if missing; 0 or -1 (logged). */
int fs_make_parent_dir(const char *path);
/* Creates dir (one level) with exactly mode if missing; *created says whether it did. 0 or
 * -1 (logged). */
int fs_make_dir(const char *dir, mode_t mode, bool *created);
/* The directory that holds path, in buf ("." when path has no slash, "/" for "/name"). */
void fs_dirname(const char *path, char *buf, size_t buflen);

/*
 * Refuses (-1, logged, naming what) a directory peerdistd must not keep its files in: one
 * other users can write; one its group can write unless that group is fs_file_group(); one
 * owned by anyone but root or the daemon's own user (that owner could swap the files under
 * it). 0 if it is trusted.
 */
int fs_check_dir(const char *what, const char *dir);
/* An existing regular file of the daemon's (the database, its -wal and -shm, from an older
 * start under a looser umask) loses every permission for others and, as root, takes
 * fs_file_group(). 0 if done or the file is absent; -1 (logged) otherwise. */
int fs_restrict_file(const char *path);
/* The same for a directory of the daemon's (data/): mode FS_DIR_MODE exactly, and, as root,
 * group fs_file_group(). 0 if done or absent; -1 (logged) otherwise. */
int fs_restrict_dir(const char *path);

/*
 * Takes the exclusive lock of dir (an fcntl write lock on dir/FS_LOCK_NAME, created mode
 * FS_FILE_MODE) and writes the daemon's pid in it. The descriptor, to keep open as long as
 * the daemon uses the directory; -1 if another process holds the lock (the message names its
 * pid) or the file cannot be made.
 */
int fs_lock_dir(const char *dir);

#endif
