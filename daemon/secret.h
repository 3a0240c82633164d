/* SPDX-License-Identifier: MIT */
/*
 * secret.h - the server passphrase in the state directory (<state_dir>/secret,
 * raw bytes, mode 0600): read at start-up, generated (32 random bytes) when
 * missing, replaced by an admin (peerdistctl key set), and turned into Ks for
 * content-information V1 and V2.
 */
#ifndef PEERDIST_SECRET_H
#define PEERDIST_SECRET_H

#include <stddef.h>
#include <stdint.h>

#include "contentinfo.h"

/* Bytes generated for a new secret, and the largest secret file we read. */
#define SECRET_GENERATED_BYTES 32
#define SECRET_MAX_BYTES 4096
#define SECRET_FILE_NAME "secret"

/* A passphrase as the file holds it. */
struct secret {
    uint8_t bytes[SECRET_MAX_BYTES];
    size_t len;
};
/* Hex digits of a fingerprint: the first 16 bytes of SHA-256 of the passphrase. */
#define SECRET_FINGERPRINT_LEN 32

/* Reads <state_dir>/secret (generated first when missing). 0, or -1 (logged). */
int secret_load_raw(const char *state_dir, struct secret *out);
/* Ks for V1 (SHA-256) and V2 (SHA-512 truncated) from the passphrase. 0, or -1 (logged). */
int secret_derive(const struct secret *s, struct ci_secret *ks_v1, struct ci_secret *ks_v2);
/* Replaces <state_dir>/secret atomically (mode 0600). 0, or -1 (logged). */
int secret_store(const char *state_dir, const struct secret *s);
/* Lowercase hex, never the secret itself. */
void secret_fingerprint(const struct secret *s, char out[SECRET_FINGERPRINT_LEN + 1]);

/* Fills ks_v1 (SHA-256) and ks_v2 (SHA-512 truncated). 0, or -1 (logged). */
int secret_load(const char *state_dir, struct ci_secret *ks_v1, struct ci_secret *ks_v2);

#endif
