/*
 * ctl-data.h - peerdistctl sub-commands that move content through the daemon
 * with the public API: publish, inject, get, tags, flush.
 */
#ifndef PEERDIST_CTL_DATA_H
#define PEERDIST_CTL_DATA_H

/* argv[0] is the sub-command's name; each returns an exit status (ctl-util.h). */
int ctl_publish_main(int argc, char **argv);
int ctl_inject_main(int argc, char **argv);
int ctl_get_main(int argc, char **argv);
int ctl_tags_main(const char *socket_path, int argc, char **argv);
int ctl_flush_main(int argc, char **argv);

#endif
