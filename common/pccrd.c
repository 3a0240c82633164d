/* SPDX-License-Identifier: MIT */
/* pccrd.c - MS-PCCRD Probe and ProbeMatches messages (pccrd.h). Built with snprintf from fixed
 * templates (the element prefixes iPXE's text scan needs); parsed with libxml2 by namespace
 * and local name, never by prefix, with DTDs refused before parsing, no entity substitution,
 * no network, and every count taken from the data rather than from the XML's own claims. */
#include "pccrd.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Namespaces and fixed strings (§4.2). */
#define NS_SOAP "http://www.w3.org/2003/05/soap-envelope"
#define NS_WSA "http://schemas.xmlsoap.org/ws/2004/08/addressing"
#define NS_WSD "http://schemas.xmlsoap.org/ws/2005/04/discovery"
#define NS_PD "http://schemas.microsoft.com/p2p/2007/09/PeerDistributionDiscovery"
#define TO_DISCOVERY "urn:schemas-xmlsoap-org:ws:2005:04:discovery"
#define TO_ANONYMOUS "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
#define ACTION_PROBE "http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe"
#define ACTION_MATCHES "http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches"
#define MATCHBY_V1 "http://schemas.xmlsoap.org/ws/2005/04/discovery/strcmp0"
#define MATCHBY_V2 "http://schemas.microsoft.com/p2p/2010/05/PeerDistV2MatchingRule"
#define TYPE_V1 "PeerDistData"
#define TYPE_V2 "PeerDistDataV2"

#define ENVELOPE_OPEN                                                                        \
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>"                                             \
    "<soap:Envelope xmlns:soap=\"" NS_SOAP "\" xmlns:wsa=\"" NS_WSA "\" xmlns:wsd=\"" NS_WSD \
    "\" xmlns:PeerDist=\"" NS_PD "\">"

/* V2 scope: u16 SegmentHashSize, u8 count, the IDs (§4.3). */
#define V2_SCOPE_MAX (3u + PCCRD_IDS_MAX * PCCRD_ID_MAX)

const char *pccrd_strerror(int err)
{
    switch (err) {
    case PCCRD_OK: return "ok";
    case PCCRD_E_SIZE: return "message empty or too long";
    case PCCRD_E_XML: return "not well-formed XML, or a DTD";
    case PCCRD_E_SHAPE: return "not the expected SOAP message";
    case PCCRD_E_FIELD: return "a field's value is malformed";
    case PCCRD_E_SPACE: return "output buffer too small or too many IDs";
    case PCCRD_E_RANDOM: return "no random bytes";
    default: return "unknown error";
    }
}

int pccrd_uuid_urn(char out[PCCRD_UUID_URN_SIZE])
{
    uint8_t u[16];
    if (RAND_bytes(u, sizeof(u)) != 1)
        return PCCRD_E_RANDOM;
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* version 4 */
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, PCCRD_UUID_URN_SIZE,
        "urn:uuid:%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
        u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    return 0;
}

/* ---- text helpers ---- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

static void b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = i + 1 < n ? B64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? B64[v & 63] : '=';
    }
    out[o] = 0;
}

static int b64_val(int c)
{
    const char *p = c ? strchr(B64, c) : NULL;
    return p ? (int)(p - B64) : -1;
}

/* Strict base64 (padded, no whitespace inside) of s[0..n) into out (cap); -1 if malformed or
 * longer than cap. */
static long b64_decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
    if (n == 0 || n % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pads = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pads++;
            } else if (pads || (v[k] = b64_val((unsigned char)s[i + k])) < 0) {
                return -1;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
            (uint32_t)v[3];
        if ((size_t)(3 - pads) > cap - o)
            return -1;
        out[o++] = (uint8_t)(w >> 16);
        if (pads < 2)
            out[o++] = (uint8_t)(w >> 8);
        if (pads < 1)
            out[o++] = (uint8_t)w;
    }
    return (long)o;
}

static int hex_val(int c, bool upper_only)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (!upper_only && c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* An ID's hex text (32, 48 or 64 bytes); upper_only as a V1 Probe's strcmp0 scopes demand. */
static int hex_id(const char *s, size_t n, bool upper_only, uint8_t *id, size_t *id_len)
{
    if (n != 64 && n != 96 && n != 128)
        return PCCRD_E_FIELD;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hex_val((unsigned char)s[i], upper_only);
        int lo = hex_val((unsigned char)s[i + 1], upper_only);
        if (hi < 0 || lo < 0)
            return PCCRD_E_FIELD;
        id[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    *id_len = n / 2;
    return 0;
}

static bool is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The next whitespace-separated token of s at *pos: its start and length, false at the end. */
static bool next_token(const char *s, size_t *pos, const char **tok, size_t *len)
{
    size_t i = *pos;
    while (s[i] && is_space((unsigned char)s[i]))
        i++;
    if (!s[i])
        return false;
    size_t start = i;
    while (s[i] && !is_space((unsigned char)s[i]))
        i++;
    *tok = s + start;
    *len = i - start;
    *pos = i;
    return true;
}

/* ---- builders ---- */

struct sb {
    char *p;
    size_t cap, len;
    bool overflow;
};

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sb *b, const char *fmt, ...)
{
    if (b->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len) {
        b->overflow = true;
        return;
    }
    b->len += (size_t)n;
}

static void sb_hex(struct sb *b, const uint8_t *id, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sb_printf(b, "%02X", id[i]);
}

/* Text that goes into XML: what we put there is ours (URNs, addresses); refuse markup. */
static bool plain_text(const char *s, size_t max)
{
    if (!s)
        return false;
    size_t n = strnlen(s, max);
    if (n == 0 || n >= max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '<' || s[i] == '>' || s[i] == '&' || s[i] == '"' || (unsigned char)s[i] < 0x20)
            return false;
    return true;
}

static int sb_finish(struct sb *b, size_t *out_len)
{
    if (b->overflow || b->len > PCCRD_MSG_MAX)
        return PCCRD_E_SPACE;
    *out_len = b->len;
    return 0;
}

int pccrd_probe_build(enum pccrd_form form, const uint8_t *const *ids, const size_t *id_lens,
    size_t n, const char *message_id, char *out, size_t cap, size_t *out_len)
{
    if ((form != PCCRD_FORM_V1 && form != PCCRD_FORM_V2) || !ids || !id_lens ||
        !plain_text(message_id, PCCRD_URI_MAX) || !out || cap == 0)
        return PCCRD_E_FIELD;
    if (n == 0 || n > PCCRD_IDS_MAX)
        return PCCRD_E_SPACE;
    for (size_t i = 0; i < n; i++)
        if (!ids[i] || id_lens[i] == 0 || id_lens[i] > PCCRD_ID_MAX ||
            (form == PCCRD_FORM_V2 && id_lens[i] != id_lens[0]))
            return PCCRD_E_FIELD;
    struct sb b = {out, cap, 0, false};
    sb_printf(&b,
        ENVELOPE_OPEN "<soap:Header><wsa:To>" TO_DISCOVERY "</wsa:To><wsa:Action>" ACTION_PROBE
                      "</wsa:Action><wsa:MessageID>%s</wsa:MessageID></soap:Header>"
                      "<soap:Body><wsd:Probe><wsd:Types>PeerDist:%s</wsd:Types>"
                      "<wsd:Scopes MatchBy=\"%s\">",
        message_id, form == PCCRD_FORM_V1 ? TYPE_V1 : TYPE_V2,
        form == PCCRD_FORM_V1 ? MATCHBY_V1 : MATCHBY_V2);
    if (form == PCCRD_FORM_V1) {
        for (size_t i = 0; i < n; i++) {
            if (i)
                sb_printf(&b, " ");
            sb_hex(&b, ids[i], id_lens[i]);
        }
    } else {
        uint8_t *scope = malloc(V2_SCOPE_MAX);
        char *text = malloc(b64_len(V2_SCOPE_MAX) + 1);
        if (!scope || !text) {
            free(scope);
            free(text);
            return PCCRD_E_SPACE;
        }
        size_t sl = 3;
        scope[0] = (uint8_t)(id_lens[0] >> 8);
        scope[1] = (uint8_t)id_lens[0];
        scope[2] = (uint8_t)n;
        for (size_t i = 0; i < n; i++, sl += id_lens[0])
            memcpy(scope + sl, ids[i], id_lens[0]);
        b64_encode(scope, sl, text);
        sb_printf(&b, "%s", text);
        free(text);
        free(scope);
    }
    sb_printf(&b, "</wsd:Scopes></wsd:Probe></soap:Body></soap:Envelope>");
    return sb_finish(&b, out_len);
}

int pccrd_match_build(const struct pccrd_match *m, char *out, size_t cap, size_t *out_len)
{
    if (!m || (m->form != PCCRD_FORM_V1 && m->form != PCCRD_FORM_V2) || !out || cap == 0 ||
        !plain_text(m->message_id, PCCRD_URI_MAX) || !plain_text(m->relates_to, PCCRD_URI_MAX) ||
        !plain_text(m->endpoint, PCCRD_URI_MAX) || m->n_xaddrs == 0 ||
        m->n_xaddrs > PCCRD_XADDRS_MAX)
        return PCCRD_E_FIELD;
    if (m->form == PCCRD_FORM_V1 ? (m->n_ids == 0 || m->n_ids > PCCRD_IDS_MAX)
                                 : (m->bitmap_len == 0 || m->bitmap_len > PCCRD_BITMAP_MAX))
        return PCCRD_E_FIELD;
    for (size_t i = 0; i < m->n_xaddrs; i++)
        if (!plain_text(m->xaddrs[i].host, PCCRD_XADDR_HOST_MAX) || m->xaddrs[i].port == 0)
            return PCCRD_E_FIELD;
    uint32_t mv = m->metadata_version ? m->metadata_version : (uint32_t)m->form;
    struct sb b = {out, cap, 0, false};
    sb_printf(&b,
        ENVELOPE_OPEN "<soap:Header><wsa:To>" TO_ANONYMOUS "</wsa:To><wsa:Action>" ACTION_MATCHES
                      "</wsa:Action><wsa:MessageID>%s</wsa:MessageID>"
                      "<wsa:RelatesTo>%s</wsa:RelatesTo>"
                      "<wsd:AppSequence InstanceId=\"%" PRIu64 "\" MessageNumber=\"%" PRIu64
                      "\"/></soap:Header><soap:Body><wsd:ProbeMatches><wsd:ProbeMatch>"
                      "<wsa:EndpointReference><wsa:Address>%s</wsa:Address>"
                      "</wsa:EndpointReference><wsd:Types>PeerDist:%s</wsd:Types><wsd:Scopes>",
        m->message_id, m->relates_to, m->instance_id, m->message_number, m->endpoint,
        m->form == PCCRD_FORM_V1 ? TYPE_V1 : TYPE_V2);
    if (m->form == PCCRD_FORM_V1) {
        for (size_t i = 0; i < m->n_ids; i++) {
            if (m->id_len[i] == 0 || m->id_len[i] > PCCRD_ID_MAX)
                return PCCRD_E_FIELD;
            if (i)
                sb_printf(&b, " ");
            sb_hex(&b, m->ids[i], m->id_len[i]);
        }
    } else {
        char text[b64_len(PCCRD_BITMAP_MAX) + 1];
        b64_encode(m->bitmap, m->bitmap_len, text);
        sb_printf(&b, "%s", text);
    }
    sb_printf(&b, "</wsd:Scopes><wsd:XAddrs>");
    for (size_t i = 0; i < m->n_xaddrs; i++) {
        bool v6 = strchr(m->xaddrs[i].host, ':') != NULL;
        sb_printf(&b, "%s%s%s%s:%u", i ? " " : "", v6 ? "[" : "", m->xaddrs[i].host, v6 ? "]" : "",
            (unsigned)m->xaddrs[i].port);
    }
    sb_printf(&b, "</wsd:XAddrs><wsd:MetadataVersion>%" PRIu32 "</wsd:MetadataVersion>", mv);
    if (m->form == PCCRD_FORM_V1) {
        /* 8 upper-case hex digits per scope, run together (§4.4, §9.10) */
        sb_printf(&b, "<PeerDist:PeerDistData><PeerDist:BlockCount>");
        for (size_t i = 0; i < m->n_ids; i++)
            sb_printf(&b, "%08" PRIX32, m->block_counts[i]);
        sb_printf(&b, "</PeerDist:BlockCount></PeerDist:PeerDistData>");
    }
    sb_printf(&b, "</wsd:ProbeMatch></wsd:ProbeMatches></soap:Body></soap:Envelope>");
    return sb_finish(&b, out_len);
}

/* ---- parsing ---- */

/*
 * Parses xml into a document, or refuses: empty or over PCCRD_MSG_MAX; a NUL byte; anything
 * but markup first (after a UTF-8 BOM and whitespace: so no UTF-16, UTF-32 or EBCDIC); any
 * DOCTYPE (so no entity can be declared: no expansion, no billion laughs, no external entity).
 * The bytes are read as UTF-8 whatever the declaration says (XML_PARSE_IGNORE_ENC), so the
 * DOCTYPE scan sees what libxml2 sees. No XML_PARSE_NOENT (entities are never substituted),
 * no XML_PARSE_DTDLOAD, XML_PARSE_NONET; errors are not printed (the caller logs our reason).
 */
static int parse_doc(const char *xml, size_t len, xmlDocPtr *out)
{
    if (!xml || len == 0 || len > PCCRD_MSG_MAX)
        return PCCRD_E_SIZE;
    size_t i = len >= 3 && memcmp(xml, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
    while (i < len && is_space((unsigned char)xml[i]))
        i++;
    if (i == len || xml[i] != '<' || memchr(xml, 0, len))
        return PCCRD_E_XML;
    for (; i + 1 < len; i++)
        if (xml[i] == '<' && xml[i + 1] == '!') {
            /* comments and CDATA are harmless; a DOCTYPE is not taken */
            if (!(i + 3 < len && xml[i + 2] == '-' && xml[i + 3] == '-') &&
                !(i + 8 < len && memcmp(xml + i + 2, "[CDATA[", 7) == 0))
                return PCCRD_E_XML;
        }
    xmlInitParser();
    xmlDocPtr doc = xmlReadMemory(xml, (int)len, NULL, "UTF-8",
        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA |
            XML_PARSE_IGNORE_ENC);
    if (!doc)
        return PCCRD_E_XML;
    if (doc->intSubset || doc->extSubset || !xmlDocGetRootElement(doc)) {
        xmlFreeDoc(doc);
        return PCCRD_E_XML;
    }
    *out = doc;
    return 0;
}

static bool is_el(const xmlNode *n, const char *ns, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
        strcmp((const char *)n->ns->href, ns) == 0 && strcmp((const char *)n->name, name) == 0;
}

/* The first child element ns:name of parent, or NULL. */
static xmlNode *child(const xmlNode *parent, const char *ns, const char *name)
{
    if (!parent)
        return NULL;
    for (xmlNode *c = parent->children; c; c = c->next)
        if (is_el(c, ns, name))
            return c;
    return NULL;
}

/*
 * The text of an element (its text and CDATA children only, no nested elements), whitespace
 * trimmed, into out (cap); false if absent, with an element inside, empty, or too long.
 */
static bool el_text(const xmlNode *el, char *out, size_t cap)
{
    if (!el)
        return false;
    size_t n = 0;
    for (const xmlNode *c = el->children; c; c = c->next) {
        if (c->type == XML_COMMENT_NODE)
            continue;
        if ((c->type != XML_TEXT_NODE && c->type != XML_CDATA_SECTION_NODE) || !c->content)
            return false;
        size_t l = strlen((const char *)c->content);
        if (l >= cap - n)
            return false;
        memcpy(out + n, c->content, l);
        n += l;
    }
    out[n] = 0;
    size_t s = 0;
    while (s < n && is_space((unsigned char)out[s]))
        s++;
    while (n > s && is_space((unsigned char)out[n - 1]))
        n--;
    memmove(out, out + s, n - s);
    out[n - s] = 0;
    return n > s;
}

/* Envelope > Header and Body, Action checked; MessageID into message_id. */
static int envelope(xmlDocPtr doc, const char *action, char *message_id, xmlNode **header,
    xmlNode **body)
{
    char text[PCCRD_URI_MAX];
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!is_el(root, NS_SOAP, "Envelope"))
        return PCCRD_E_SHAPE;
    *header = child(root, NS_SOAP, "Header");
    *body = child(root, NS_SOAP, "Body");
    if (!*header || !*body)
        return PCCRD_E_SHAPE;
    if (!el_text(child(*header, NS_WSA, "Action"), text, sizeof(text)) || strcmp(text, action))
        return PCCRD_E_SHAPE;
    if (!el_text(child(*header, NS_WSA, "MessageID"), message_id, PCCRD_URI_MAX))
        return PCCRD_E_FIELD;
    return 0;
}

/*
 * The form a Types element names: a list of QNames, one of them PeerDist:PeerDistData (V1) or
 * PeerDistDataV2 (V2), whatever prefix the sender bound to the PeerDist namespace.
 */
static int types_form(xmlDocPtr doc, xmlNode *types, enum pccrd_form *form)
{
    char text[512];
    if (!el_text(types, text, sizeof(text)))
        return PCCRD_E_SHAPE;
    size_t pos = 0, len;
    const char *tok;
    while (next_token(text, &pos, &tok, &len)) {
        const char *colon = memchr(tok, ':', len);
        char prefix[64];
        size_t plen = colon ? (size_t)(colon - tok) : 0;
        if (plen >= sizeof(prefix))
            continue;
        memcpy(prefix, tok, plen);
        prefix[plen] = 0;
        xmlNsPtr ns = xmlSearchNs(doc, types, plen ? (const xmlChar *)prefix : NULL);
        if (!ns || !ns->href || strcmp((const char *)ns->href, NS_PD))
            continue;
        const char *local = colon ? colon + 1 : tok;
        size_t llen = len - (size_t)(local - tok);
        if (llen == strlen(TYPE_V1) && memcmp(local, TYPE_V1, llen) == 0) {
            *form = PCCRD_FORM_V1;
            return 0;
        }
        if (llen == strlen(TYPE_V2) && memcmp(local, TYPE_V2, llen) == 0) {
            *form = PCCRD_FORM_V2;
            return 0;
        }
    }
    return PCCRD_E_SHAPE;
}

/* Element text big enough for any scope list we accept, allocated once per parse. */
#define SCOPES_TEXT_MAX (PCCRD_IDS_MAX * (2 * PCCRD_ID_MAX + 1) + 64)

static int parse_probe_scopes(const char *text, enum pccrd_form form, struct pccrd_probe *out)
{
    size_t pos = 0, len;
    const char *tok;
    if (form == PCCRD_FORM_V1) {
        while (next_token(text, &pos, &tok, &len)) {
            if (out->n_ids == PCCRD_IDS_MAX)
                return PCCRD_E_FIELD;
            int rc = hex_id(tok, len, true, out->ids[out->n_ids], &out->id_len[out->n_ids]);
            if (rc)
                return rc;
            out->n_ids++;
        }
        return out->n_ids ? 0 : PCCRD_E_FIELD;
    }
    /* V2: exactly one base64 token */
    if (!next_token(text, &pos, &tok, &len) || len > b64_len(V2_SCOPE_MAX))
        return PCCRD_E_FIELD;
    size_t p2 = pos;
    const char *t2;
    size_t l2;
    if (next_token(text, &p2, &t2, &l2))
        return PCCRD_E_FIELD;
    uint8_t raw[V2_SCOPE_MAX];
    long n = b64_decode(tok, len, raw, sizeof(raw));
    if (n < 3)
        return PCCRD_E_FIELD;
    size_t size = (size_t)raw[0] << 8 | raw[1], count = raw[2];
    /* the count must agree with the bytes actually there */
    if (size == 0 || size > PCCRD_ID_MAX || count == 0 || (size_t)n != 3 + size * count)
        return PCCRD_E_FIELD;
    for (size_t i = 0; i < count; i++) {
        memcpy(out->ids[i], raw + 3 + i * size, size);
        out->id_len[i] = size;
    }
    out->n_ids = count;
    return 0;
}

int pccrd_probe_parse(const char *xml, size_t len, struct pccrd_probe *out)
{
    memset(out, 0, sizeof(*out));
    xmlDocPtr doc;
    int rc = parse_doc(xml, len, &doc);
    if (rc)
        return rc;
    xmlNode *header, *body;
    char *text = malloc(SCOPES_TEXT_MAX);
    if (!text) {
        rc = PCCRD_E_SPACE;
        goto done;
    }
    if ((rc = envelope(doc, ACTION_PROBE, out->message_id, &header, &body)))
        goto done;
    xmlNode *probe = child(body, NS_WSD, "Probe");
    xmlNode *scopes = child(probe, NS_WSD, "Scopes");
    if (!probe || !scopes) {
        rc = PCCRD_E_SHAPE;
        goto done;
    }
    if ((rc = types_form(doc, child(probe, NS_WSD, "Types"), &out->form)))
        goto done;
    xmlChar *matchby = xmlGetNoNsProp(scopes, (const xmlChar *)"MatchBy");
    bool mb_ok = matchby &&
        strcmp((const char *)matchby, out->form == PCCRD_FORM_V1 ? MATCHBY_V1 : MATCHBY_V2) == 0;
    xmlFree(matchby);
    if (!mb_ok) {
        rc = PCCRD_E_SHAPE;
        goto done;
    }
    if (!el_text(scopes, text, SCOPES_TEXT_MAX)) {
        rc = PCCRD_E_FIELD;
        goto done;
    }
    rc = parse_probe_scopes(text, out->form, out);
done:
    free(text);
    xmlFreeDoc(doc);
    if (rc)
        out->n_ids = 0;
    return rc;
}

/* "a.b.c.d:port" or "[v6]:port" (an optional http:// in front and path after tolerated). */
static bool parse_xaddr(const char *tok, size_t len, struct pccrd_xaddr *x)
{
    if (len > 7 && strncmp(tok, "http://", 7) == 0) {
        tok += 7;
        len -= 7;
        const char *slash = memchr(tok, '/', len);
        if (slash)
            len = (size_t)(slash - tok);
    }
    const char *host = tok, *port;
    size_t hlen;
    bool v6 = len && tok[0] == '[';
    if (v6) {
        const char *close = memchr(tok, ']', len);
        if (!close || (size_t)(close - tok) + 1 >= len || close[1] != ':')
            return false;
        host = tok + 1;
        hlen = (size_t)(close - host);
        port = close + 2;
    } else {
        const char *colon = NULL;
        for (size_t i = 0; i < len; i++)
            if (tok[i] == ':')
                colon = tok + i;
        if (!colon)
            return false;
        hlen = (size_t)(colon - tok);
        port = colon + 1;
    }
    size_t plen = len - (size_t)(port - tok);
    if (hlen == 0 || hlen >= PCCRD_XADDR_HOST_MAX || plen == 0 || plen > 5)
        return false;
    unsigned long p = 0;
    for (size_t i = 0; i < plen; i++) {
        if (port[i] < '0' || port[i] > '9')
            return false;
        p = p * 10 + (unsigned long)(port[i] - '0');
    }
    if (p == 0 || p > 65535)
        return false;
    char h[PCCRD_XADDR_HOST_MAX];
    memcpy(h, host, hlen);
    h[hlen] = 0;
    uint8_t addr[16];
    char *pct = v6 ? strchr(h, '%') : NULL;
    if (pct)
        *pct = 0; /* a zone: the receiving interface's, whatever the text says */
    if (inet_pton(v6 ? AF_INET6 : AF_INET, h, addr) != 1)
        return false;
    memcpy(x->host, h, strlen(h) + 1);
    x->port = (uint16_t)p;
    return true;
}

static uint64_t attr_u64(xmlNode *el, const char *name)
{
    xmlChar *v = el ? xmlGetNoNsProp(el, (const xmlChar *)name) : NULL;
    uint64_t n = 0;
    if (v) {
        for (const xmlChar *p = v; *p >= '0' && *p <= '9' && n < UINT64_MAX / 10; p++)
            n = n * 10 + (uint64_t)(*p - '0');
        xmlFree(v);
    }
    return n;
}

static int parse_match_v1(const char *scopes, xmlNode *pm, struct pccrd_match *out)
{
    char counts[PCCRD_IDS_MAX * 8 + 64];
    size_t pos = 0, len;
    const char *tok;
    while (next_token(scopes, &pos, &tok, &len)) {
        if (out->n_ids == PCCRD_IDS_MAX)
            return PCCRD_E_FIELD;
        int rc = hex_id(tok, len, false, out->ids[out->n_ids], &out->id_len[out->n_ids]);
        if (rc)
            return rc;
        out->n_ids++;
    }
    if (!out->n_ids)
        return PCCRD_E_FIELD;
    xmlNode *bc = child(child(pm, NS_PD, "PeerDistData"), NS_PD, "BlockCount");
    if (!el_text(bc, counts, sizeof(counts)))
        return PCCRD_E_SHAPE;
    /* 8 hex digits per ID, no separator (§4.4) */
    if (strlen(counts) != 8 * out->n_ids)
        return PCCRD_E_FIELD;
    for (size_t i = 0; i < out->n_ids; i++) {
        uint32_t v = 0;
        for (size_t k = 0; k < 8; k++) {
            int d = hex_val((unsigned char)counts[8 * i + k], false);
            if (d < 0)
                return PCCRD_E_FIELD;
            v = v << 4 | (uint32_t)d;
        }
        out->block_counts[i] = v;
    }
    return 0;
}

int pccrd_match_parse(const char *xml, size_t len, struct pccrd_match *out)
{
    memset(out, 0, sizeof(*out));
    xmlDocPtr doc;
    int rc = parse_doc(xml, len, &doc);
    if (rc)
        return rc;
    char *text = malloc(SCOPES_TEXT_MAX);
    char num[32];
    xmlNode *header, *body;
    if (!text) {
        rc = PCCRD_E_SPACE;
        goto done;
    }
    if ((rc = envelope(doc, ACTION_MATCHES, out->message_id, &header, &body)))
        goto done;
    if (!el_text(child(header, NS_WSA, "RelatesTo"), out->relates_to, sizeof(out->relates_to))) {
        rc = PCCRD_E_SHAPE;
        goto done;
    }
    xmlNode *seq = child(header, NS_WSD, "AppSequence");
    out->instance_id = attr_u64(seq, "InstanceId");
    out->message_number = attr_u64(seq, "MessageNumber");
    xmlNode *pm = child(child(body, NS_WSD, "ProbeMatches"), NS_WSD, "ProbeMatch");
    if (!pm) {
        rc = PCCRD_E_SHAPE;
        goto done;
    }
    if ((rc = types_form(doc, child(pm, NS_WSD, "Types"), &out->form)))
        goto done;
    el_text(child(child(pm, NS_WSA, "EndpointReference"), NS_WSA, "Address"), out->endpoint,
        sizeof(out->endpoint));
    if (el_text(child(pm, NS_WSD, "MetadataVersion"), num, sizeof(num))) {
        for (const char *p = num; *p >= '0' && *p <= '9' && out->metadata_version < 100000000u; p++)
            out->metadata_version = out->metadata_version * 10 + (uint32_t)(*p - '0');
    }
    /* XAddrs: keep the first PCCRD_XADDRS_MAX valid entries; at least one needed */
    if (!el_text(child(pm, NS_WSD, "XAddrs"), text, SCOPES_TEXT_MAX)) {
        rc = PCCRD_E_SHAPE;
        goto done;
    }
    size_t pos = 0, tl;
    const char *tok;
    while (out->n_xaddrs < PCCRD_XADDRS_MAX && next_token(text, &pos, &tok, &tl))
        if (parse_xaddr(tok, tl, &out->xaddrs[out->n_xaddrs]))
            out->n_xaddrs++;
    if (!out->n_xaddrs) {
        rc = PCCRD_E_FIELD;
        goto done;
    }
    if (!el_text(child(pm, NS_WSD, "Scopes"), text, SCOPES_TEXT_MAX)) {
        rc = PCCRD_E_FIELD;
        goto done;
    }
    if (out->form == PCCRD_FORM_V1) {
        rc = parse_match_v1(text, pm, out);
    } else {
        pos = 0;
        size_t p2;
        const char *t2;
        size_t l2;
        if (!next_token(text, &pos, &tok, &tl) || tl > b64_len(PCCRD_BITMAP_MAX)) {
            rc = PCCRD_E_FIELD;
            goto done;
        }
        p2 = pos;
        long n = next_token(text, &p2, &t2, &l2)
            ? -1
            : b64_decode(tok, tl, out->bitmap, sizeof(out->bitmap));
        if (n <= 0)
            rc = PCCRD_E_FIELD;
        else
            out->bitmap_len = (size_t)n;
    }
done:
    free(text);
    xmlFreeDoc(doc);
    if (rc) {
        out->n_ids = 0;
        out->n_xaddrs = 0;
        out->bitmap_len = 0;
    }
    return rc;
}

/* ---- helpers ---- */

void pccrd_bitmap_set(uint8_t *bitmap, size_t i, bool have, bool complete)
{
    size_t bit = 2 * i; /* MSB first: pair i is bits 7-2(i%4) and 6-2(i%4) of byte i/4 */
    uint8_t hi = (uint8_t)(0x80u >> (bit % 8)), lo = (uint8_t)(0x40u >> (bit % 8));
    uint8_t *b = &bitmap[bit / 8];
    *b = (uint8_t)((*b & ~(hi | lo)) | (have ? hi : 0) | (complete ? lo : 0));
}

void pccrd_bitmap_get(const uint8_t *bitmap, size_t bitmap_len, size_t i, bool *have,
    bool *complete)
{
    size_t bit = 2 * i;
    if (!bitmap || bit / 8 >= bitmap_len) {
        *have = *complete = false;
        return;
    }
    uint8_t b = bitmap[bit / 8];
    *have = (b & (0x80u >> (bit % 8))) != 0;
    *complete = (b & (0x40u >> (bit % 8))) != 0;
}

size_t pccrd_bitmap_len(size_t n)
{
    return (2 * n + 7) / 8;
}

int pccrd_xaddr_format(const struct sockaddr *sa, uint16_t port, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN];
    int n;
    if (!sa || port == 0)
        return PCCRD_E_FIELD;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        if (!inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host)))
            return PCCRD_E_FIELD;
        n = snprintf(out, cap, "%s:%u", host, (unsigned)port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        if (!inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host)))
            return PCCRD_E_FIELD;
        n = snprintf(out, cap, "[%s]:%u", host, (unsigned)port);
    } else {
        return PCCRD_E_FIELD;
    }
    return n < 0 || (size_t)n >= cap ? PCCRD_E_SPACE : 0;
}
