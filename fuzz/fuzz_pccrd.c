/* SPDX-License-Identifier: MIT */
/* fuzz_pccrd.c - libFuzzer harness for the MS-PCCRD parsers (common/pccrd.c, libxml2): every
 * input is parsed as a Probe and as a ProbeMatches; what is accepted must build again (in the
 * same form) into a message that parses back to the same IDs, addresses, counts and bitmap. */
#include "pccrd.h"

#include <stdlib.h>
#include <string.h>

static char out[PCCRD_MSG_MAX];

static void probe(const char *xml, size_t len)
{
    static struct pccrd_probe p, r;
    if (pccrd_probe_parse(xml, len, &p) != 0) {
        if (p.n_ids)
            abort();
        return;
    }
    if (p.n_ids == 0 || p.n_ids > PCCRD_IDS_MAX ||
        (p.form != PCCRD_FORM_V1 && p.form != PCCRD_FORM_V2))
        abort();
    const uint8_t *ids[PCCRD_IDS_MAX];
    for (size_t i = 0; i < p.n_ids; i++) {
        if (p.id_len[i] == 0 || p.id_len[i] > PCCRD_ID_MAX)
            abort();
        ids[i] = p.ids[i];
    }
    size_t n;
    int rc = pccrd_probe_build(p.form, ids, p.id_len, p.n_ids, p.message_id, out, sizeof(out), &n);
    if (rc == PCCRD_E_FIELD)
        return; /* a MessageID with markup characters in it: we never send one */
    if (rc || pccrd_probe_parse(out, n, &r) != 0)
        abort();
    if (r.form != p.form || r.n_ids != p.n_ids || strcmp(r.message_id, p.message_id) != 0)
        abort();
    for (size_t i = 0; i < p.n_ids; i++)
        if (r.id_len[i] != p.id_len[i] || memcmp(r.ids[i], p.ids[i], p.id_len[i]) != 0)
            abort();
}

static void match(const char *xml, size_t len)
{
    static struct pccrd_match m, r;
    if (pccrd_match_parse(xml, len, &m) != 0) {
        if (m.n_ids || m.n_xaddrs || m.bitmap_len)
            abort();
        return;
    }
    if (m.n_xaddrs == 0 || m.n_xaddrs > PCCRD_XADDRS_MAX || m.n_ids > PCCRD_IDS_MAX ||
        m.bitmap_len > PCCRD_BITMAP_MAX)
        abort();
    size_t n;
    int rc = pccrd_match_build(&m, out, sizeof(out), &n);
    if (rc == PCCRD_E_FIELD)
        return; /* an empty endpoint or a URI with markup characters: we never send one */
    if (rc || pccrd_match_parse(out, n, &r) != 0)
        abort();
    if (r.form != m.form || r.n_ids != m.n_ids || r.n_xaddrs != m.n_xaddrs ||
        r.bitmap_len != m.bitmap_len || memcmp(r.bitmap, m.bitmap, m.bitmap_len) != 0 ||
        strcmp(r.relates_to, m.relates_to) != 0 || r.instance_id != m.instance_id ||
        r.message_number != m.message_number)
        abort();
    for (size_t i = 0; i < m.n_ids; i++)
        if (r.id_len[i] != m.id_len[i] || memcmp(r.ids[i], m.ids[i], m.id_len[i]) != 0 ||
            r.block_counts[i] != m.block_counts[i])
            abort();
    for (size_t i = 0; i < m.n_xaddrs; i++)
        if (strcmp(r.xaddrs[i].host, m.xaddrs[i].host) != 0 || r.xaddrs[i].port != m.xaddrs[i].port)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    probe((const char *)data, size);
    match((const char *)data, size);
    return 0;
}
