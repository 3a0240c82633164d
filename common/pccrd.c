/* SPDX-License-Identifier: MIT */
/* pccrd.c - MS-PCCRD Probe and ProbeMatches building and parsing (pccrd.h). Not implemented yet. */
#include "pccrd.h"

const char *pccrd_strerror(int err) { (void)err; return "not implemented"; }
int pccrd_uuid_urn(char out[PCCRD_UUID_URN_SIZE]) { (void)out; return PCCRD_E_RANDOM; }
int pccrd_probe_build(enum pccrd_form f, const uint8_t *const *ids, const size_t *l, size_t n, const char *m, char *o, size_t c, size_t *ol) { (void)f; (void)ids; (void)l; (void)n; (void)m; (void)o; (void)c; (void)ol; return PCCRD_E_SPACE; }
int pccrd_probe_parse(const char *x, size_t l, struct pccrd_probe *o) { (void)x; (void)l; (void)o; return PCCRD_E_XML; }
int pccrd_match_build(const struct pccrd_match *m, char *o, size_t c, size_t *ol) { (void)m; (void)o; (void)c; (void)ol; return PCCRD_E_SPACE; }
int pccrd_match_parse(const char *x, size_t l, struct pccrd_match *o) { (void)x; (void)l; (void)o; return PCCRD_E_XML; }
void pccrd_bitmap_set(uint8_t *b, size_t i, bool h, bool c) { (void)b; (void)i; (void)h; (void)c; }
void pccrd_bitmap_get(const uint8_t *b, size_t bl, size_t i, bool *h, bool *c) { (void)b; (void)bl; (void)i; *h = false; *c = false; }
size_t pccrd_bitmap_len(size_t n) { return (2 * n + 7) / 8; }
int pccrd_xaddr_format(const struct sockaddr *sa, uint16_t p, char *o, size_t c) { (void)sa; (void)p; (void)o; (void)c; return PCCRD_E_FIELD; }
