/* The dashboard at /ui/ on the local API listener: files compiled into the
 * binary (ui/, embedded by cmake/embed_ui.cmake), answered in the HTTP
 * callback itself. The page then talks to the node over the API WebSocket
 * like any client; it holds no data of its own. README "Dashboard". */
#include <libwebsockets.h>
#include <sodium.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svc/ui.h"
#include "util/log.h"

/* Content types by file name ending. */
static const struct {
    const char *ext;
    const char *ctype;
} s_types[] = {
    { ".html", "text/html; charset=utf-8" },
    { ".js", "text/javascript; charset=utf-8" },
    { ".css", "text/css; charset=utf-8" },
    { ".svg", "image/svg+xml" },
    { ".png", "image/png" },
    { ".json", "application/json" },
};

/* Headers every answer carries: the page's URL may hold the API token, so
 * no Referer leaves it; nothing may frame it or sniff a type. */
static const struct {
    const char *name;
    const char *value;
} s_fixed[] = {
    { "cache-control:", "no-cache" },
    { "x-content-type-options:", "nosniff" },
    { "referrer-policy:", "no-referrer" },
    { "x-frame-options:", "DENY" },
};

static const char *s_ctype(const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < sizeof s_types / sizeof s_types[0]; i++) {
        size_t e = strlen(s_types[i].ext);
        if (n > e && strcmp(name + n - e, s_types[i].ext) == 0)
            return s_types[i].ctype;
    }
    return "application/octet-stream";
}

static const mz_ui_file *s_find(const char *name)
{
    for (size_t i = 0; i < mz__ui_n_files; i++)
        if (strcmp(mz__ui_files[i].name, name) == 0)
            return &mz__ui_files[i];
    return NULL;
}

/* 'sha256-<base64>' of a hex digest; false when hex is not 32 bytes' worth. */
static bool s_csp_hash(const char *hex, char *out, size_t cap)
{
    unsigned char bin[32];
    size_t n = 0;
    char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];

    if (sodium_hex2bin(bin, sizeof bin, hex, strlen(hex), NULL, &n, NULL) != 0 || n != 32)
        return false;
    sodium_bin2base64(b64, sizeof b64, bin, sizeof bin, sodium_base64_VARIANT_ORIGINAL);
    return (size_t)snprintf(out, cap, "'sha256-%s'", b64) < cap;
}

/* The page runs its one inline script and style and nothing else; it may
 * connect only to where it came from (the API WebSocket, /health). */
static bool s_csp(char *out, size_t cap)
{
    char js[64], css[64];

    if (!s_csp_hash(mz__ui_script_sha256, js, sizeof js) ||
        !s_csp_hash(mz__ui_style_sha256, css, sizeof css))
        return false;
    return (size_t)snprintf(out, cap,
                            "default-src 'none'; script-src %s; style-src %s; "
                            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                            "form-action 'none'; frame-ancestors 'none'",
                            js, css) < cap;
}

static int s_header(struct lws *wsi, const char *name, const char *value, unsigned char **p,
                    unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)value, (int)strlen(value), p, end);
}

/* Writes the whole answer now (lws keeps what the socket does not take yet
 * and completes the transaction after it). */
static int s_answer(struct lws *wsi, unsigned status, const char *ctype,
                    const unsigned char *body, size_t len, const char *csp)
{
    unsigned char hb[LWS_PRE + 1536], *start = hb + LWS_PRE, *p = start;
    unsigned char *end = hb + sizeof hb - 1;
    unsigned char *buf;
    int n;

    if (lws_add_http_common_headers(wsi, status, ctype, len, &p, end))
        return -1;
    for (size_t i = 0; i < sizeof s_fixed / sizeof s_fixed[0]; i++)
        if (s_header(wsi, s_fixed[i].name, s_fixed[i].value, &p, end))
            return -1;
    if (csp != NULL && s_header(wsi, "content-security-policy:", csp, &p, end))
        return -1;
    if (status == HTTP_STATUS_METHOD_NOT_ALLOWED && s_header(wsi, "allow:", "GET", &p, end))
        return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (len > 0) {
        if ((buf = malloc(LWS_PRE + len)) == NULL)
            return -1;
        memcpy(buf + LWS_PRE, body, len);
        n = lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_HTTP_FINAL);
        free(buf);
        if (n < 0)
            return -1;
    }
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int s_text(struct lws *wsi, unsigned status, const char *text)
{
    return s_answer(wsi, status, "text/plain; charset=utf-8", (const unsigned char *)text,
                    strlen(text), NULL);
}

int mz__ui_http(struct lws *wsi, const char *uri)
{
    const mz_ui_file *f;
    const char *name;
    char csp[512], why[200];

    if (uri == NULL || strncmp(uri, "/ui", 3) != 0 || (uri[3] != '\0' && uri[3] != '/'))
        return 1;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return s_text(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, "the dashboard answers GET only\n");
    name = uri[3] == '\0' || uri[4] == '\0' ? "index.html" : uri + 4;
    if ((f = s_find(name)) == NULL) {
        snprintf(why, sizeof why, "no dashboard file '%.100s'; the dashboard is at /ui/\n",
                 name);
        return s_text(wsi, HTTP_STATUS_NOT_FOUND, why);
    }
    if (strcmp(f->name, "index.html") == 0 && !s_csp(csp, sizeof csp)) {
        mz_log(MZ_LOG_ERROR, "ui", "the embedded page's digests are malformed");
        return s_text(wsi, HTTP_STATUS_INTERNAL_SERVER_ERROR, "dashboard build is broken\n");
    }
    return s_answer(wsi, HTTP_STATUS_OK, s_ctype(f->name), f->data, f->len,
                    strcmp(f->name, "index.html") == 0 ? csp : NULL);
}
