/*
 * secret.h - the server passphrase in the state directory (<state_dir>/secret,
 * raw bytes, mode 0600): read at start-up, generated (32 random bytes) when
 * missing, and turned into Ks for content-information V1 and V2.
 */
#ifndef PEERDIST_SECRET_H
#define PEERDIST_SECRET_H

#include "contentinfo.h"

/* Bytes generated for a new secret, and the largest secret file we read. */
#define SECRET_GENERATED_BYTES 32
#define SECRET_MAX_BYTES 4096
#define SECRET_FILE_NAME "secret"

/* Fills ks_v1 (SHA-256) and ks_v2 (SHA-512 truncated). 0, or -1 (logged). */
int secret_load(const char *state_dir, struct ci_secret *ks_v1, struct ci_secret *ks_v2);

#endif
