/* SPDX-License-Identifier: MIT */
/*
 * fsutil.c - the file-system side of peerdistd's start-up (fsutil.h): ownership and modes of
 * what it creates, the directories it refuses, the database directory's lock.
 */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static bool file_group_set;
static gid_t file_group;

void fs_init_ownership(void)
{
    umask(FS_UMASK);
    file_group = getegid();
    file_group_set = true;
    if (geteuid() != 0)
        return; /* the service user's own group is the service group (packaging/) */
    struct group *gr = getgrnam(FS_SERVICE_GROUP);
    if (!gr || gr->gr_gid == file_group)
        return;
    if (setegid(gr->gr_gid) != 0) {
        log_warn("cannot take group %s (setegid: %s); files get group %u", FS_SERVICE_GROUP,
            strerror(errno), (unsigned)file_group);
        return;
    }
    file_group = gr->gr_gid;
}

gid_t fs_file_group(void)
{
    return file_group_set ? file_group : getegid();
}

void fs_dirname(const char *path, char *buf, size_t buflen)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(buf, buflen, ".");
    else if (slash == path)
        snprintf(buf, buflen, "/");
    else
        snprintf(buf, buflen, "%.*s", (int)(slash - path), path);
}

int fs_make_dir(const char *dir, mode_t mode, bool *created)
{
    *created = false;
    if (mkdir(dir, mode) == 0) {
        *created = true;
        if (chmod(dir, mode) == 0) /* mkdir's mode passes through the umask */
            return 0;
        log_error("chmod %s: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    log_error("cannot create %s: %s", dir, errno == EEXIST ? "not a directory" : strerror(errno));
    return -1;
}

int fs_make_parent_dir(const char *path)
{
    char dir[PATH_MAX];
    bool created;
    if (!strchr(path, '/'))
        return 0;
    fs_dirname(path, dir, sizeof(dir));
    return fs_make_dir(dir, 0755, &created);
}

static const char *group_name(gid_t gid, char *buf, size_t len)
{
    struct group *gr = getgrgid(gid);
    if (gr)
        snprintf(buf, len, "%s", gr->gr_name);
    else
        snprintf(buf, len, "%u", (unsigned)gid);
    return buf;
}

int fs_check_dir(const char *what, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        log_error("%s %s: %s", what, dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        log_error("%s %s: not a directory", what, dir);
        return -1;
    }
    unsigned mode = (unsigned)(st.st_mode & 07777);
    char g[64], mine[64];
    if (st.st_mode & S_IWOTH) {
        log_error("%s %s is writable by other users (mode %04o), who could replace the files in "
                  "it; refusing to use it (chmod o-w it, or choose another directory)",
            what, dir, mode);
        return -1;
    }
    if ((st.st_mode & S_IWGRP) && st.st_gid != fs_file_group()) {
        log_error("%s %s is writable by group %s, which is not peerdistd's group %s (mode %04o); "
                  "refusing to use it (chmod g-w it, or chgrp it to %s)",
            what, dir, group_name(st.st_gid, g, sizeof(g)),
            group_name(fs_file_group(), mine, sizeof(mine)), mode, mine);
        return -1;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        log_error("%s %s belongs to uid %u, who could replace the files in it; peerdistd (uid %u) "
                  "uses only a directory of its own user or of root (run peerdistd as uid %u, "
                  "or choose another directory)",
            what, dir, (unsigned)st.st_uid, (unsigned)geteuid(), (unsigned)st.st_uid);
        return -1;
    }
    return 0;
}

/*
 * path's mode becomes `want` (a file: its own mode without the bits for others; a directory:
 * FS_DIR_MODE) and, under root, its group the service group. Opened without following a
 * link; a missing path is fine.
 */
static int restrict_path(const char *path, bool dir)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        log_error("%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) != 0) {
        log_error("%s: %s", path, strerror(errno));
        goto out;
    }
    if (!dir && !S_ISREG(st.st_mode)) {
        log_error("%s: not a regular file", path);
        goto out;
    }
    mode_t want = dir ? FS_DIR_MODE : st.st_mode & 0770;
    if ((st.st_mode & 07777) != want) {
        if (fchmod(fd, want) != 0) {
            log_error("chmod %s: %s", path, strerror(errno));
            goto out;
        }
        log_info("%s: mode %04o -> %04o (nothing of the cache is for other users)", path,
            (unsigned)(st.st_mode & 07777), (unsigned)want);
    }
    if (geteuid() == 0 && st.st_gid != fs_file_group() &&
        fchown(fd, (uid_t)-1, fs_file_group()) != 0) {
        log_error("chgrp %s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

int fs_restrict_file(const char *path)
{
    return restrict_path(path, false);
}

int fs_restrict_dir(const char *path)
{
    return restrict_path(path, true);
}

/* The pid holding fd's lock: the kernel's answer, else what the holder wrote in the file
 * (a holder in another pid namespace shows as 0); 0 if neither says. -1 if it is free. */
static pid_t lock_holder(int fd)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type == F_UNLCK)
        return -1;
    if (fl.l_pid > 0)
        return fl.l_pid;
    char buf[32] = {0};
    if (pread(fd, buf, sizeof(buf) - 1, 0) > 0)
        return (pid_t)atoi(buf);
    return 0;
}

int fs_lock_dir(const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", dir, FS_LOCK_NAME) >= (int)sizeof(path)) {
        log_error("database directory path too long: %s", dir);
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, FS_FILE_MODE);
    if (fd < 0) {
        log_error("cannot open the lock file %s: %s", path, strerror(errno));
        return -1;
    }
    /* An fcntl lock: the kernel drops it when the process dies, kill -9 included, and can say
     * who holds it. Only this descriptor ever opens the file (closing any other would drop it). */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    for (int attempt = 0;; attempt++) {
        if (fcntl(fd, F_SETLK, &fl) == 0)
            break;
        if (errno != EACCES && errno != EAGAIN) {
            log_error("cannot lock %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        pid_t holder = lock_holder(fd);
        if (holder < 0 && attempt == 0)
            continue; /* the holder just let go */
        char who[32] = "pid unknown";
        if (holder > 0)
            snprintf(who, sizeof(who), "pid %d", (int)holder);
        log_error("database directory %s is in use by another peerdistd (%s, lock %s); one "
                  "daemon per database directory: stop that one first, or give this one a "
                  "database in another directory",
            dir, who, path);
        close(fd);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 ||
        ((st.st_mode & 07777) != FS_FILE_MODE && fchmod(fd, FS_FILE_MODE) != 0)) {
        log_error("lock file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    /* The pid is for people; the lock is held already. Overwritten in place, then cut, so a
     * start on a full disk (the space comes back later, docs/cache.md) does not fail here. */
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (pwrite(fd, pid, (size_t)n, 0) != n || ftruncate(fd, n) != 0)
        log_warn("lock file %s: cannot write the pid: %s", path, strerror(errno));
    return fd;
}
