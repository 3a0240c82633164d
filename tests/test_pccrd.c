/* SPDX-License-Identifier: MIT */
/* test_pccrd.c - Check tests of common/pccrd: the §4 sample messages (Probe and ProbeMatch, V1
 * and V2, and an iPXE-style Probe) parse to the expected IDs, XAddrs, BlockCounts and bitmap;
 * built messages parse back; a built V1 ProbeMatch carries exactly what iPXE's text scan looks
 * for; hostile XML (DTDs, entities, billion laughs, oversize, lying counts) is refused. */
#include "check_run.h"
#include "pccrd.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENV                                                                  \
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>"                             \
    "<soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\" " \
    "xmlns:wsa=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" "        \
    "xmlns:wsd=\"http://schemas.xmlsoap.org/ws/2005/04/discovery\" "         \
    "xmlns:PeerDist=\"http://schemas.microsoft.com/p2p/2007/09/PeerDistributionDiscovery\">"

/* The synthetic 300 kB content's segment ID (vectors/synth300k_v1_expected.txt). */
#define SYNTH_ID_HEX "5F4F88BCD0C3216AD216C870BE49C2536B069223E3A92495574730BAA19A9C66"
#define IIS_V2_SEG0 "3371BBEADDB62353ADCEF970A06FDF65001E0421F4C7108276B0C37A9F9EC10F"
#define IIS_V2_SEG1 "D7E924425E8F4F88F01DC6A9BB1BC37BE113EC7917C745D4965C2B55FA163A6E"

/* A V1 Probe as iPXE sends it (§4.3, §7.5: also for V2 segment IDs). */
static const char PROBE_V1[] = ENV
    "<soap:Header><wsa:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>"
    "<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</wsa:Action>"
    "<wsa:MessageID>urn:uuid:8a1f63e2-0a53-4b5c-9d3e-51c6a7e5f2d0</wsa:MessageID>"
    "</soap:Header><soap:Body><wsd:Probe><wsd:Types>PeerDist:PeerDistData</wsd:Types>"
    "<wsd:Scopes MatchBy=\"http://schemas.xmlsoap.org/ws/2005/04/discovery/strcmp0\">" SYNTH_ID_HEX
    "</wsd:Scopes></wsd:Probe></soap:Body></soap:Envelope>";

/* Two scopes, other prefixes, whitespace and a comment (Windows-style formatting). */
static const char PROBE_V1_PREFIXES[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"\n"
    "  xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\">\n"
    " <s:Header>\n  <a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>\n"
    "  <a:Action> http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe </a:Action>\n"
    "  <a:MessageID>urn:uuid:00000000-0000-4000-8000-000000000001</a:MessageID>\n"
    " </s:Header>\n <s:Body><!-- probe -->\n"
    "  <d:Probe xmlns:d=\"http://schemas.xmlsoap.org/ws/2005/04/discovery\"\n"
    "      xmlns:p=\"http://schemas.microsoft.com/p2p/2007/09/PeerDistributionDiscovery\">\n"
    "   <d:Types>p:PeerDistData</d:Types>\n"
    "   <d:Scopes MatchBy=\"http://schemas.xmlsoap.org/ws/2005/04/discovery/strcmp0\">\n"
    "     " IIS_V2_SEG0 "\n\t" IIS_V2_SEG1 "\n   </d:Scopes>\n"
    "  </d:Probe>\n </s:Body>\n</s:Envelope>\n";

/* The V2 form (§4.3): one base64 scope = 0020 02 seg0 seg1 of the IIS V2 vector. */
static const char PROBE_V2_HEAD[] = ENV
    "<soap:Header><wsa:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>"
    "<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</wsa:Action>"
    "<wsa:MessageID>urn:uuid:11111111-2222-4333-8444-555555555555</wsa:MessageID>"
    "</soap:Header><soap:Body><wsd:Probe><wsd:Types>PeerDist:PeerDistDataV2</wsd:Types>"
    "<wsd:Scopes MatchBy=\"http://schemas.microsoft.com/p2p/2010/05/PeerDistV2MatchingRule\">";
static const char PROBE_TAIL[] = "</wsd:Scopes></wsd:Probe></soap:Body></soap:Envelope>";

/* The §4.4 ProbeMatch, V1: XAddrs 192.0.2.10:80, BlockCount 0000002A. */
static const char MATCH_V1[] = ENV
    "<soap:Header>"
    "<wsa:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>"
    "<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>"
    "<wsa:MessageID>urn:uuid:99999999-8888-4777-8666-555555555555</wsa:MessageID>"
    "<wsa:RelatesTo>urn:uuid:8a1f63e2-0a53-4b5c-9d3e-51c6a7e5f2d0</wsa:RelatesTo>"
    "<wsd:AppSequence InstanceId=\"1290000000\" MessageNumber=\"7\"/>"
    "</soap:Header><soap:Body><wsd:ProbeMatches><wsd:ProbeMatch>"
    "<wsa:EndpointReference><wsa:Address>urn:uuid:0f0e0d0c-0b0a-4908-8706-050403020100"
    "</wsa:Address></wsa:EndpointReference>"
    "<wsd:Types>PeerDist:PeerDistData</wsd:Types>"
    "<wsd:Scopes>" SYNTH_ID_HEX " " IIS_V2_SEG0 "</wsd:Scopes>"
    "<wsd:XAddrs>192.0.2.10:80 [2001:db8::1]:8080</wsd:XAddrs>"
    "<wsd:MetadataVersion>1</wsd:MetadataVersion>"
    "<PeerDist:PeerDistData><PeerDist:BlockCount>0000002A00000000</PeerDist:BlockCount>"
    "</PeerDist:PeerDistData></wsd:ProbeMatch></wsd:ProbeMatches></soap:Body>"
    "</soap:Envelope>";

/* The §4.4 V2 ProbeMatch: bitmap /////////////w== (40 segments, all complete). */
static const char MATCH_V2[] = ENV
    "<soap:Header>"
    "<wsa:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>"
    "<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>"
    "<wsa:MessageID>urn:uuid:99999999-8888-4777-8666-555555555556</wsa:MessageID>"
    "<wsa:RelatesTo>urn:uuid:11111111-2222-4333-8444-555555555555</wsa:RelatesTo>"
    "<wsd:AppSequence InstanceId=\"1\" MessageNumber=\"2\"/>"
    "</soap:Header><soap:Body><wsd:ProbeMatches><wsd:ProbeMatch>"
    "<wsa:EndpointReference><wsa:Address>urn:uuid:0f0e0d0c-0b0a-4908-8706-050403020100"
    "</wsa:Address></wsa:EndpointReference>"
    "<wsd:Types>PeerDist:PeerDistDataV2</wsd:Types>"
    "<wsd:Scopes>/////////////w==</wsd:Scopes>"
    "<wsd:XAddrs>192.0.2.11:80</wsd:XAddrs>"
    "<wsd:MetadataVersion>2</wsd:MetadataVersion>"
    "</wsd:ProbeMatch></wsd:ProbeMatches></soap:Body></soap:Envelope>";

static void unhex(const char *hex, uint8_t *out)
{
    for (size_t i = 0; hex[2 * i]; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static void tohex(const uint8_t *id, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02X", id[i]);
}

static void assert_id(const uint8_t *id, size_t len, const char *hex)
{
    char got[129];
    ck_assert_uint_eq(len * 2, strlen(hex));
    tohex(id, len, got);
    ck_assert_str_eq(got, hex);
}

static char *b64(const uint8_t *in, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
            (i + 2 < n ? in[i + 2] : 0);
        *o++ = t[v >> 18 & 63];
        *o++ = t[v >> 12 & 63];
        *o++ = i + 1 < n ? t[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? t[v & 63] : '=';
    }
    *o = 0;
    return out;
}

/* A V2 Probe whose scope is the raw bytes given. */
static char *probe_v2(const uint8_t *raw, size_t n, size_t *len)
{
    char *s = b64(raw, n);
    size_t cap = strlen(PROBE_V2_HEAD) + strlen(s) + strlen(PROBE_TAIL) + 1;
    char *x = malloc(cap);
    *len = (size_t)snprintf(x, cap, "%s%s%s", PROBE_V2_HEAD, s, PROBE_TAIL);
    free(s);
    return x;
}

/* --- the §4 samples ----------------------------------------------------------------------- */

START_TEST(test_probe_v1_sample)
{
    struct pccrd_probe *p = malloc(sizeof(*p));
    ck_assert_int_eq(pccrd_probe_parse(PROBE_V1, strlen(PROBE_V1), p), 0);
    ck_assert_int_eq(p->form, PCCRD_FORM_V1);
    ck_assert_str_eq(p->message_id, "urn:uuid:8a1f63e2-0a53-4b5c-9d3e-51c6a7e5f2d0");
    ck_assert_uint_eq(p->n_ids, 1);
    assert_id(p->ids[0], p->id_len[0], SYNTH_ID_HEX);

    ck_assert_int_eq(pccrd_probe_parse(PROBE_V1_PREFIXES, strlen(PROBE_V1_PREFIXES), p), 0);
    ck_assert_int_eq(p->form, PCCRD_FORM_V1);
    ck_assert_uint_eq(p->n_ids, 2);
    assert_id(p->ids[0], p->id_len[0], IIS_V2_SEG0);
    assert_id(p->ids[1], p->id_len[1], IIS_V2_SEG1);
    free(p);
}
END_TEST

START_TEST(test_probe_v2_sample)
{
    uint8_t raw[3 + 64];
    raw[0] = 0x00;
    raw[1] = 0x20;
    raw[2] = 2;
    unhex(IIS_V2_SEG0, raw + 3);
    unhex(IIS_V2_SEG1, raw + 35);
    size_t len;
    char *x = probe_v2(raw, sizeof(raw), &len);
    struct pccrd_probe *p = malloc(sizeof(*p));
    ck_assert_int_eq(pccrd_probe_parse(x, len, p), 0);
    ck_assert_int_eq(p->form, PCCRD_FORM_V2);
    ck_assert_str_eq(p->message_id, "urn:uuid:11111111-2222-4333-8444-555555555555");
    ck_assert_uint_eq(p->n_ids, 2);
    assert_id(p->ids[0], p->id_len[0], IIS_V2_SEG0);
    assert_id(p->ids[1], p->id_len[1], IIS_V2_SEG1);
    free(x);

    /* The spec's example starts ACABKQEa...: 0020 01 and an ID beginning 29 01 1a. */
    uint8_t one[35] = {0x00, 0x20, 0x01, 0x29, 0x01, 0x1a};
    x = probe_v2(one, sizeof(one), &len);
    ck_assert(strstr(x, ">ACABKQEa") != NULL);
    ck_assert_int_eq(pccrd_probe_parse(x, len, p), 0);
    ck_assert_uint_eq(p->n_ids, 1);
    ck_assert_uint_eq(p->ids[0][0], 0x29);
    free(x);

    /* Lying counts: more IDs claimed than there, fewer, size 0, trailing bytes. */
    uint8_t bad[3 + 64];
    memcpy(bad, raw, sizeof(bad));
    bad[2] = 255;
    x = probe_v2(bad, sizeof(bad), &len);
    ck_assert_int_eq(pccrd_probe_parse(x, len, p), PCCRD_E_FIELD);
    free(x);
    bad[2] = 1;
    x = probe_v2(bad, sizeof(bad), &len);
    ck_assert_int_eq(pccrd_probe_parse(x, len, p), PCCRD_E_FIELD);
    free(x);
    bad[2] = 0;
    x = probe_v2(bad, 3, &len);
    ck_assert_int_eq(pccrd_probe_parse(x, len, p), PCCRD_E_FIELD);
    free(x);
    bad[1] = 0;
    bad[2] = 2;
    x = probe_v2(bad, sizeof(bad), &len);
    ck_assert_int_eq(pccrd_probe_parse(x, len, p), PCCRD_E_FIELD);
    free(x);
    free(p);
}
END_TEST

START_TEST(test_match_v1_sample)
{
    struct pccrd_match *m = malloc(sizeof(*m));
    ck_assert_int_eq(pccrd_match_parse(MATCH_V1, strlen(MATCH_V1), m), 0);
    ck_assert_int_eq(m->form, PCCRD_FORM_V1);
    ck_assert_str_eq(m->relates_to, "urn:uuid:8a1f63e2-0a53-4b5c-9d3e-51c6a7e5f2d0");
    ck_assert_str_eq(m->message_id, "urn:uuid:99999999-8888-4777-8666-555555555555");
    ck_assert_str_eq(m->endpoint, "urn:uuid:0f0e0d0c-0b0a-4908-8706-050403020100");
    ck_assert_uint_eq(m->instance_id, 1290000000);
    ck_assert_uint_eq(m->message_number, 7);
    ck_assert_uint_eq(m->metadata_version, 1);
    ck_assert_uint_eq(m->n_xaddrs, 2);
    ck_assert_str_eq(m->xaddrs[0].host, "192.0.2.10");
    ck_assert_uint_eq(m->xaddrs[0].port, 80);
    ck_assert_str_eq(m->xaddrs[1].host, "2001:db8::1");
    ck_assert_uint_eq(m->xaddrs[1].port, 8080);
    ck_assert_uint_eq(m->n_ids, 2);
    assert_id(m->ids[0], m->id_len[0], SYNTH_ID_HEX);
    assert_id(m->ids[1], m->id_len[1], IIS_V2_SEG0);
    ck_assert_uint_eq(m->block_counts[0], 42);
    ck_assert_uint_eq(m->block_counts[1], 0);
    free(m);
}
END_TEST

START_TEST(test_match_v2_sample)
{
    struct pccrd_match *m = malloc(sizeof(*m));
    ck_assert_int_eq(pccrd_match_parse(MATCH_V2, strlen(MATCH_V2), m), 0);
    ck_assert_int_eq(m->form, PCCRD_FORM_V2);
    ck_assert_uint_eq(m->metadata_version, 2);
    ck_assert_str_eq(m->relates_to, "urn:uuid:11111111-2222-4333-8444-555555555555");
    ck_assert_uint_eq(m->n_xaddrs, 1);
    ck_assert_str_eq(m->xaddrs[0].host, "192.0.2.11");
    ck_assert_uint_eq(m->bitmap_len, 10);
    for (size_t i = 0; i < 40; i++) {
        bool have, complete;
        pccrd_bitmap_get(m->bitmap, m->bitmap_len, i, &have, &complete);
        ck_assert(have && complete);
    }
    bool have, complete;
    pccrd_bitmap_get(m->bitmap, m->bitmap_len, 40, &have, &complete);
    ck_assert(!have && !complete);
    free(m);
}
END_TEST

/* --- built messages ----------------------------------------------------------------------- */

START_TEST(test_probe_build)
{
    char urn[PCCRD_UUID_URN_SIZE], urn2[PCCRD_UUID_URN_SIZE];
    ck_assert_int_eq(pccrd_uuid_urn(urn), 0);
    ck_assert_int_eq(pccrd_uuid_urn(urn2), 0);
    ck_assert_uint_eq(strlen(urn), 45);
    ck_assert(strncmp(urn, "urn:uuid:", 9) == 0 && urn[23] == '4');
    ck_assert_str_ne(urn, urn2);

    uint8_t a[32], b[48], c[64];
    unhex(SYNTH_ID_HEX, a);
    for (int i = 0; i < 48; i++)
        b[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 64; i++)
        c[i] = (uint8_t)(0xff - i);
    const uint8_t *ids[3] = {a, b, c};
    size_t lens[3] = {32, 48, 64};
    char *out = malloc(PCCRD_MSG_MAX);
    size_t len;
    struct pccrd_probe *p = malloc(sizeof(*p));
    ck_assert_int_eq(pccrd_probe_build(PCCRD_FORM_V1, ids, lens, 3, urn, out, PCCRD_MSG_MAX, &len),
        0);
    ck_assert(strstr(out, ">" SYNTH_ID_HEX " ") != NULL); /* upper-case hex, spaces */
    ck_assert_int_eq(pccrd_probe_parse(out, len, p), 0);
    ck_assert_int_eq(p->form, PCCRD_FORM_V1);
    ck_assert_str_eq(p->message_id, urn);
    ck_assert_uint_eq(p->n_ids, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(p->id_len[i], lens[i]);
        ck_assert(memcmp(p->ids[i], ids[i], lens[i]) == 0);
    }
    /* The V1 form is iPXE's Probe, byte for byte. */
    ck_assert_int_eq(pccrd_probe_build(PCCRD_FORM_V1, ids, lens, 1,
                         "urn:uuid:8a1f63e2-0a53-4b5c-9d3e-51c6a7e5f2d0", out, PCCRD_MSG_MAX, &len),
        0);
    ck_assert_uint_eq(len, strlen(PROBE_V1));
    ck_assert(memcmp(out, PROBE_V1, len) == 0);

    /* V2: all IDs one size; 255 of them, the most the form counts. */
    ck_assert_int_eq(pccrd_probe_build(PCCRD_FORM_V2, ids, lens, 2, urn, out, PCCRD_MSG_MAX, &len),
        PCCRD_E_FIELD);
    const uint8_t *many[256];
    size_t mlens[256];
    uint8_t store[256][32];
    for (int i = 0; i < 256; i++) {
        memset(store[i], i, 32);
        many[i] = store[i];
        mlens[i] = 32;
    }
    ck_assert_int_eq(
        pccrd_probe_build(PCCRD_FORM_V2, many, mlens, 255, urn, out, PCCRD_MSG_MAX, &len), 0);
    ck_assert_int_eq(pccrd_probe_parse(out, len, p), 0);
    ck_assert_int_eq(p->form, PCCRD_FORM_V2);
    ck_assert_uint_eq(p->n_ids, 255);
    ck_assert_uint_eq(p->ids[254][31], 254);
    ck_assert_int_eq(
        pccrd_probe_build(PCCRD_FORM_V2, many, mlens, 256, urn, out, PCCRD_MSG_MAX, &len),
        PCCRD_E_SPACE);
    ck_assert_int_eq(
        pccrd_probe_build(PCCRD_FORM_V1, many, mlens, 255, urn, out, PCCRD_MSG_MAX, &len), 0);
    ck_assert_int_eq(pccrd_probe_parse(out, len, p), 0);
    ck_assert_uint_eq(p->n_ids, 255);
    ck_assert_int_eq(pccrd_probe_build(PCCRD_FORM_V1, many, mlens, 1, urn, out, 100, &len),
        PCCRD_E_SPACE);
    ck_assert_int_eq(
        pccrd_probe_build(PCCRD_FORM_V1, many, mlens, 1, "a<b", out, PCCRD_MSG_MAX, &len),
        PCCRD_E_FIELD);
    free(p);
    free(out);
}
END_TEST

/* What iPXE's parser does: the text between <TAG> and </TAG>, found by plain string search. */
static char *scan(const char *xml, const char *tag)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *s = strstr(xml, open);
    ck_assert_msg(s != NULL, "no %s", open);
    s += strlen(open);
    const char *e = strstr(s, close);
    ck_assert_msg(e != NULL, "no %s", close);
    return strndup(s, (size_t)(e - s));
}

START_TEST(test_match_build_v1)
{
    struct pccrd_match *m = calloc(1, sizeof(*m)), *back = malloc(sizeof(*back));
    m->form = PCCRD_FORM_V1;
    ck_assert_int_eq(pccrd_uuid_urn(m->message_id), 0);
    strcpy(m->relates_to, "urn:uuid:8a1f63e2-0a53-4b5c-9d3e-51c6a7e5f2d0");
    strcpy(m->endpoint, "urn:uuid:0f0e0d0c-0b0a-4908-8706-050403020100");
    m->instance_id = 1764672000;
    m->message_number = 3;
    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, "10.99.0.1", &sin.sin_addr);
    char xa[64];
    ck_assert_int_eq(pccrd_xaddr_format((struct sockaddr *)&sin, 8080, xa, sizeof(xa)), 0);
    ck_assert_str_eq(xa, "10.99.0.1:8080");
    strcpy(m->xaddrs[0].host, "10.99.0.1");
    m->xaddrs[0].port = 8080;
    m->n_xaddrs = 1;
    m->n_ids = 2;
    unhex(SYNTH_ID_HEX, m->ids[0]);
    m->id_len[0] = 32;
    unhex(IIS_V2_SEG1, m->ids[1]);
    m->id_len[1] = 32;
    m->block_counts[0] = 5;
    m->block_counts[1] = 0x1ff;
    char *out = malloc(PCCRD_MSG_MAX);
    size_t len;
    ck_assert_int_eq(pccrd_match_build(m, out, PCCRD_MSG_MAX, &len), 0);
    ck_assert_uint_eq(strlen(out), len);

    /* iPXE's text scan finds exactly our values. */
    char *scopes = scan(out, "wsd:Scopes"), *xaddrs = scan(out, "wsd:XAddrs");
    char *count = scan(out, "PeerDist:BlockCount");
    ck_assert_str_eq(scopes, SYNTH_ID_HEX " " IIS_V2_SEG1);
    ck_assert_str_eq(xaddrs, "10.99.0.1:8080");
    ck_assert_str_eq(count, "00000005000001FF");
    free(scopes);
    free(xaddrs);
    free(count);
    ck_assert(strstr(out, "<wsd:MetadataVersion>1</wsd:MetadataVersion>") != NULL);
    ck_assert(strstr(out, "<wsa:RelatesTo>urn:uuid:8a1f63e2-0a53-4b5c-9d3e-51c6a7e5f2d0<") != NULL);
    ck_assert(strstr(out, "InstanceId=\"1764672000\" MessageNumber=\"3\"") != NULL);

    ck_assert_int_eq(pccrd_match_parse(out, len, back), 0);
    ck_assert_int_eq(back->form, PCCRD_FORM_V1);
    ck_assert_str_eq(back->relates_to, m->relates_to);
    ck_assert_str_eq(back->message_id, m->message_id);
    ck_assert_str_eq(back->endpoint, m->endpoint);
    ck_assert_uint_eq(back->instance_id, m->instance_id);
    ck_assert_uint_eq(back->message_number, 3);
    ck_assert_uint_eq(back->metadata_version, 1);
    ck_assert_uint_eq(back->n_xaddrs, 1);
    ck_assert_str_eq(back->xaddrs[0].host, "10.99.0.1");
    ck_assert_uint_eq(back->xaddrs[0].port, 8080);
    ck_assert_uint_eq(back->n_ids, 2);
    ck_assert(memcmp(back->ids[1], m->ids[1], 32) == 0);
    ck_assert_uint_eq(back->block_counts[1], 0x1ff);

    /* IPv6 XAddrs in brackets. */
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "fe80::1", &sin6.sin6_addr);
    ck_assert_int_eq(pccrd_xaddr_format((struct sockaddr *)&sin6, 80, xa, sizeof(xa)), 0);
    ck_assert_str_eq(xa, "[fe80::1]:80");
    ck_assert_int_eq(pccrd_xaddr_format((struct sockaddr *)&sin6, 80, xa, 8), PCCRD_E_SPACE);
    strcpy(m->xaddrs[0].host, "fe80::1");
    m->xaddrs[0].port = 80;
    ck_assert_int_eq(pccrd_match_build(m, out, PCCRD_MSG_MAX, &len), 0);
    ck_assert(strstr(out, "<wsd:XAddrs>[fe80::1]:80</wsd:XAddrs>") != NULL);
    ck_assert_int_eq(pccrd_match_parse(out, len, back), 0);
    ck_assert_str_eq(back->xaddrs[0].host, "fe80::1");

    /* Refused: no address, text with markup, too small a buffer. */
    m->n_xaddrs = 0;
    ck_assert_int_eq(pccrd_match_build(m, out, PCCRD_MSG_MAX, &len), PCCRD_E_FIELD);
    m->n_xaddrs = 1;
    strcpy(m->relates_to, "urn:<x>");
    ck_assert_int_eq(pccrd_match_build(m, out, PCCRD_MSG_MAX, &len), PCCRD_E_FIELD);
    strcpy(m->relates_to, "urn:uuid:1");
    ck_assert_int_eq(pccrd_match_build(m, out, 200, &len), PCCRD_E_SPACE);
    free(out);
    free(back);
    free(m);
}
END_TEST

START_TEST(test_match_build_v2)
{
    struct pccrd_match *m = calloc(1, sizeof(*m)), *back = malloc(sizeof(*back));
    m->form = PCCRD_FORM_V2;
    strcpy(m->message_id, "urn:uuid:a");
    strcpy(m->relates_to, "urn:uuid:11111111-2222-4333-8444-555555555555");
    strcpy(m->endpoint, "urn:uuid:b");
    strcpy(m->xaddrs[0].host, "10.0.0.2");
    m->xaddrs[0].port = 80;
    m->n_xaddrs = 1;
    /* 5 segments asked: 0 complete, 2 partial, the rest not held */
    m->bitmap_len = pccrd_bitmap_len(5);
    ck_assert_uint_eq(m->bitmap_len, 2);
    pccrd_bitmap_set(m->bitmap, 0, true, true);
    pccrd_bitmap_set(m->bitmap, 2, true, false);
    pccrd_bitmap_set(m->bitmap, 4, false, false);
    ck_assert_uint_eq(m->bitmap[0], 0xc8); /* 11 00 10 00, MSB first */
    ck_assert_uint_eq(m->bitmap[1], 0x00);
    char out[4096];
    size_t len;
    ck_assert_int_eq(pccrd_match_build(m, out, sizeof(out), &len), 0);
    ck_assert(strstr(out, "<wsd:Types>PeerDist:PeerDistDataV2</wsd:Types>") != NULL);
    ck_assert(strstr(out, "<wsd:Scopes>yAA=</wsd:Scopes>") != NULL);
    ck_assert(strstr(out, "<wsd:MetadataVersion>2</wsd:MetadataVersion>") != NULL);
    ck_assert(strstr(out, "BlockCount") == NULL);
    ck_assert_int_eq(pccrd_match_parse(out, len, back), 0);
    ck_assert_int_eq(back->form, PCCRD_FORM_V2);
    ck_assert_uint_eq(back->metadata_version, 2);
    ck_assert_str_eq(back->relates_to, m->relates_to);
    ck_assert_uint_eq(back->bitmap_len, 2);
    bool have, complete;
    pccrd_bitmap_get(back->bitmap, back->bitmap_len, 0, &have, &complete);
    ck_assert(have && complete);
    pccrd_bitmap_get(back->bitmap, back->bitmap_len, 1, &have, &complete);
    ck_assert(!have && !complete);
    pccrd_bitmap_get(back->bitmap, back->bitmap_len, 2, &have, &complete);
    ck_assert(have && !complete);
    pccrd_bitmap_set(m->bitmap, 0, false, false);
    ck_assert_uint_eq(m->bitmap[0], 0x08);
    free(back);
    free(m);
}
END_TEST

/* --- refused ------------------------------------------------------------------------------ */

/* A copy of s with the first `from` replaced by `to`. */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    ck_assert_msg(at != NULL, "no %s", from);
    size_t n = strlen(s) - strlen(from) + strlen(to);
    char *out = malloc(n + 1);
    size_t pre = (size_t)(at - s);
    memcpy(out, s, pre);
    strcpy(out + pre, to);
    strcat(out, at + strlen(from));
    return out;
}

static const struct {
    const char *from, *to;
    int want;
} PROBE_BAD[] = {
    {SYNTH_ID_HEX, "", PCCRD_E_FIELD}, /* empty scopes */
    {SYNTH_ID_HEX, "5f4f88bcd0c3216ad216c870be49c2536b069223e3a92495574730baa19a9c66",
        PCCRD_E_FIELD},                                                /* lower case */
    {SYNTH_ID_HEX, SYNTH_ID_HEX "0", PCCRD_E_FIELD},                   /* odd length */
    {SYNTH_ID_HEX, "5F4F88BCD0C3216AD216C870BE49C253", PCCRD_E_FIELD}, /* 16 bytes */
    {SYNTH_ID_HEX, "5G4F88BCD0C3216AD216C870BE49C2536B069223E3A92495574730BAA19A9C66",
        PCCRD_E_FIELD},
    {"discovery/strcmp0", "discovery/rfc3986", PCCRD_E_SHAPE}, /* other MatchBy */
    {" MatchBy=\"http://schemas.xmlsoap.org/ws/2005/04/discovery/strcmp0\"", "", PCCRD_E_SHAPE},
    {"PeerDist:PeerDistData<", "PeerDist:Other<", PCCRD_E_SHAPE},   /* other Types */
    {"PeerDist:PeerDistData<", "wsd:PeerDistData<", PCCRD_E_SHAPE}, /* wrong namespace */
    {"discovery/Probe<", "discovery/Resolve<", PCCRD_E_SHAPE},      /* other Action */
    {"<wsa:MessageID>urn:uuid:8a1f63e2-0a53-4b5c-9d3e-51c6a7e5f2d0</wsa:MessageID>", "",
        PCCRD_E_FIELD},
    {"http://www.w3.org/2003/05/soap-envelope", "http://schemas.xmlsoap.org/soap/envelope/",
        PCCRD_E_SHAPE},                                              /* SOAP 1.1 */
    {"</soap:Envelope>", "", PCCRD_E_XML},                           /* not well-formed */
    {">" SYNTH_ID_HEX "<", "><x/>" SYNTH_ID_HEX "<", PCCRD_E_FIELD}, /* element in scopes */
    {SYNTH_ID_HEX, "&xxe;", PCCRD_E_XML},                            /* undeclared entity */
};

START_TEST(test_probe_malformed)
{
    char *x = replace(PROBE_V1, PROBE_BAD[_i].from, PROBE_BAD[_i].to);
    struct pccrd_probe *p = malloc(sizeof(*p));
    ck_assert_int_eq(pccrd_probe_parse(x, strlen(x), p), PROBE_BAD[_i].want);
    ck_assert_uint_eq(p->n_ids, 0);
    free(p);
    free(x);
}
END_TEST

static const struct {
    const char *from, *to;
    int want;
} MATCH_BAD[] = {
    {"0000002A00000000", "0000002A0000000", PCCRD_E_FIELD}, /* a digit short */
    {"0000002A00000000", "0000002A000000000", PCCRD_E_FIELD},
    {"0000002A00000000", "002A0000", PCCRD_E_FIELD}, /* the prose's 4 digits */
    {"0000002A00000000", "0000002G00000000", PCCRD_E_FIELD},
    {"<PeerDist:BlockCount>0000002A00000000</PeerDist:BlockCount>", "", PCCRD_E_SHAPE},
    {"192.0.2.10:80 [2001:db8::1]:8080", "", PCCRD_E_SHAPE},
    {"192.0.2.10:80 [2001:db8::1]:8080", "host.example:80 192.0.2.1 1.2.3.4:0 1.2.3.4:70000",
        PCCRD_E_FIELD}, /* no usable address */
    {"<wsa:RelatesTo>urn:uuid:8a1f63e2-0a53-4b5c-9d3e-51c6a7e5f2d0</wsa:RelatesTo>", "",
        PCCRD_E_SHAPE},
    {"discovery/ProbeMatches<", "discovery/Probe<", PCCRD_E_SHAPE},
    {"<wsd:ProbeMatch>", "<wsd:ProbeMatchX>", PCCRD_E_XML},
};

START_TEST(test_match_malformed)
{
    char *x = replace(MATCH_V1, MATCH_BAD[_i].from, MATCH_BAD[_i].to);
    struct pccrd_match *m = malloc(sizeof(*m));
    ck_assert_int_eq(pccrd_match_parse(x, strlen(x), m), MATCH_BAD[_i].want);
    ck_assert_uint_eq(m->n_ids, 0);
    ck_assert_uint_eq(m->n_xaddrs, 0);
    free(m);
    free(x);
    /* A V2 bitmap longer than any Probe asks for, or not base64. */
    m = malloc(sizeof(*m));
    x = replace(MATCH_V2, "/////////////w==",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AA");
    ck_assert_int_eq(pccrd_match_parse(x, strlen(x), m), PCCRD_E_FIELD);
    free(x);
    x = replace(MATCH_V2, "/////////////w==", "////*///");
    ck_assert_int_eq(pccrd_match_parse(x, strlen(x), m), PCCRD_E_FIELD);
    free(x);
    x = replace(MATCH_V2, "/////////////w==", "/w== /w==");
    ck_assert_int_eq(pccrd_match_parse(x, strlen(x), m), PCCRD_E_FIELD);
    free(x);
    free(m);
}
END_TEST

/* 256 V1 scopes: one more than a Probe may carry. */
START_TEST(test_too_many_ids)
{
    size_t cap = 256 * 65 + 1;
    char *ids = malloc(cap);
    ids[0] = 0;
    for (int i = 0; i < 256; i++) {
        strcat(ids, SYNTH_ID_HEX);
        strcat(ids, " ");
    }
    char *x = replace(PROBE_V1, SYNTH_ID_HEX, ids);
    struct pccrd_probe *p = malloc(sizeof(*p));
    ck_assert_int_eq(pccrd_probe_parse(x, strlen(x), p), PCCRD_E_FIELD);
    free(x);
    ids[255 * 65] = 0;
    x = replace(PROBE_V1, SYNTH_ID_HEX, ids);
    ck_assert_int_eq(pccrd_probe_parse(x, strlen(x), p), 0);
    ck_assert_uint_eq(p->n_ids, 255);
    free(x);
    free(p);
    free(ids);
}
END_TEST

/* DTDs in any form are refused before libxml2 sees them; nothing is expanded or fetched. */
static const char *const HOSTILE[] = {
    /* billion laughs */
    "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
    "<!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
    "<!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">"
    "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">"
    "<!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">"
    "<!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">"
    "<!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">"
    "<!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">"
    "<!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">"
    "<!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">]>"
    "<lolz>&lol9;</lolz>",
    /* external entity */
    "<?xml version=\"1.0\"?><!DOCTYPE e [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><e>&x;</e>",
    /* external DTD over the network */
    "<?xml version=\"1.0\"?><!DOCTYPE e SYSTEM \"http://192.0.2.1/e.dtd\"><e/>",
    /* parameter entity */
    "<?xml version=\"1.0\"?><!DOCTYPE e [<!ENTITY % p SYSTEM \"http://192.0.2.1/p\"> %p;]><e/>",
    /* an entity in a Probe's scopes */
    NULL,
};

START_TEST(test_hostile)
{
    struct pccrd_probe *p = malloc(sizeof(*p));
    struct pccrd_match *m = malloc(sizeof(*m));
    for (int i = 0; HOSTILE[i]; i++) {
        ck_assert_int_eq(pccrd_probe_parse(HOSTILE[i], strlen(HOSTILE[i]), p), PCCRD_E_XML);
        ck_assert_int_eq(pccrd_match_parse(HOSTILE[i], strlen(HOSTILE[i]), m), PCCRD_E_XML);
    }
    /* The same with a valid Probe after the DOCTYPE. */
    char *x = replace(PROBE_V1, "<soap:Envelope",
        "<!DOCTYPE soap:Envelope [<!ENTITY id \"" SYNTH_ID_HEX "\">]><soap:Envelope");
    char *y = replace(x, ">" SYNTH_ID_HEX "<", ">&id;<");
    ck_assert_int_eq(pccrd_probe_parse(y, strlen(y), p), PCCRD_E_XML);
    free(y);
    free(x);

    /* A DOCTYPE hidden by an encoding: UTF-7 as declared (read as UTF-8, so it stays text and
     * the document has no root-level markup to parse), UTF-16 with a BOM (NUL bytes). */
    static const char utf7[] =
        "<?xml version=\"1.0\" encoding=\"UTF-7\"?>+ADw-!DOCTYPE e +AFs-+ADw-!ENTITY x "
        "SYSTEM +ACI-file:///etc/passwd+ACI-+AD4-+AF0-+AD4-+ADw-e+AD4-+ACY-x;+ADw-/e+AD4-";
    ck_assert_int_eq(pccrd_probe_parse(utf7, strlen(utf7), p), PCCRD_E_XML);
    char utf16[256];
    const char *doc16 = "<!DOCTYPE e [<!ENTITY x \"y\">]><e>&x;</e>";
    utf16[0] = (char)0xff;
    utf16[1] = (char)0xfe;
    size_t n16 = 2;
    for (const char *c = doc16; *c; c++) {
        utf16[n16++] = *c;
        utf16[n16++] = 0;
    }
    ck_assert_int_eq(pccrd_probe_parse(utf16, n16, p), PCCRD_E_XML);
    ck_assert_int_eq(pccrd_match_parse(utf16 + 2, n16 - 2, m), PCCRD_E_XML);
    /* A UTF-8 BOM is fine. */
    char *bom = replace(PROBE_V1, "<?xml", "\xef\xbb\xbf<?xml");
    ck_assert_int_eq(pccrd_probe_parse(bom, strlen(bom), p), 0);
    free(bom);

    /* Too long: refused unparsed; empty; deep nesting within the cap. */
    char *huge = malloc(PCCRD_MSG_MAX + 2);
    memset(huge, ' ', PCCRD_MSG_MAX + 1);
    memcpy(huge, PROBE_V1, strlen(PROBE_V1));
    huge[PCCRD_MSG_MAX + 1] = 0;
    ck_assert_int_eq(pccrd_probe_parse(huge, PCCRD_MSG_MAX + 1, p), PCCRD_E_SIZE);
    ck_assert_int_eq(pccrd_match_parse(huge, PCCRD_MSG_MAX + 1, m), PCCRD_E_SIZE);
    ck_assert_int_eq(pccrd_probe_parse(huge, 0, p), PCCRD_E_SIZE);
    size_t n = 0;
    while (n + 7 < PCCRD_MSG_MAX / 2) {
        memcpy(huge + n, "<a><b>", 6);
        n += 6;
    }
    huge[n] = 0;
    ck_assert_int_lt(pccrd_probe_parse(huge, n, p), 0);
    /* Trailing whitespace within the cap is fine. */
    memset(huge, ' ', PCCRD_MSG_MAX);
    memcpy(huge, PROBE_V1, strlen(PROBE_V1));
    ck_assert_int_eq(pccrd_probe_parse(huge, PCCRD_MSG_MAX, p), 0);
    /* Binary junk and a NUL inside. */
    for (size_t i = 0; i < 4096; i++)
        huge[i] = (char)(i * 37 + 11);
    ck_assert_int_lt(pccrd_probe_parse(huge, 4096, p), 0);
    memcpy(huge, PROBE_V1, strlen(PROBE_V1));
    huge[100] = 0;
    ck_assert_int_lt(pccrd_probe_parse(huge, strlen(PROBE_V1), p), 0);
    free(huge);
    free(m);
    free(p);
}
END_TEST

/* Every truncation of the samples is refused. */
START_TEST(test_truncations)
{
    struct pccrd_probe *p = malloc(sizeof(*p));
    struct pccrd_match *m = malloc(sizeof(*m));
    size_t n = strlen(PROBE_V1);
    for (size_t k = 0; k < n; k++) {
        char *c = malloc(k + 1);
        memcpy(c, PROBE_V1, k);
        ck_assert_msg(pccrd_probe_parse(c, k, p) < 0, "probe prefix %zu accepted", k);
        free(c);
    }
    n = strlen(MATCH_V1);
    for (size_t k = 0; k < n; k++) {
        char *c = malloc(k + 1);
        memcpy(c, MATCH_V1, k);
        ck_assert_msg(pccrd_match_parse(c, k, m) < 0, "match prefix %zu accepted", k);
        free(c);
    }
    free(m);
    free(p);
}
END_TEST

static Suite *pccrd_suite(void)
{
    Suite *s = suite_create("pccrd");
    TCase *sam = tcase_create("samples"), *bld = tcase_create("build");
    TCase *bad = tcase_create("refused");
    tcase_add_test(sam, test_probe_v1_sample);
    tcase_add_test(sam, test_probe_v2_sample);
    tcase_add_test(sam, test_match_v1_sample);
    tcase_add_test(sam, test_match_v2_sample);
    tcase_add_test(bld, test_probe_build);
    tcase_add_test(bld, test_match_build_v1);
    tcase_add_test(bld, test_match_build_v2);
    tcase_add_loop_test(bad, test_probe_malformed, 0,
        (int)(sizeof(PROBE_BAD) / sizeof(PROBE_BAD[0])));
    tcase_add_loop_test(bad, test_match_malformed, 0,
        (int)(sizeof(MATCH_BAD) / sizeof(MATCH_BAD[0])));
    tcase_add_test(bad, test_too_many_ids);
    tcase_add_test(bad, test_hostile);
    tcase_add_test(bad, test_truncations);
    tcase_set_timeout(bad, 60);
    suite_add_tcase(s, sam);
    suite_add_tcase(s, bld);
    suite_add_tcase(s, bad);
    return s;
}

int main(void)
{
    return check_run(pccrd_suite());
}
