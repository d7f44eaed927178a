/* The dashboard: static files under /ui/ on the local API listener, compiled
 * into the binary from ui/ (cmake/embed_ui.cmake writes the table). */
#ifndef MZ_SVC_UI_H
#define MZ_SVC_UI_H

#include <stddef.h>

struct lws;

/* One embedded file. index.html has style.css and app.js inlined, so the
 * page is one request (a token in its URL covers it) and its CSP names the
 * two inline blocks by their SHA-256. */
typedef struct mz_ui_file {
    const char *name;                  /* "index.html", "app.js", ... */
    const unsigned char *data;
    size_t len;
} mz_ui_file;

extern const mz_ui_file mz__ui_files[];
extern const size_t mz__ui_n_files;
extern const char mz__ui_script_sha256[];   /* hex digest of index.html's <script> body */
extern const char mz__ui_style_sha256[];    /* hex digest of index.html's <style> body */

/* Answers an HTTP request for /ui, /ui/ or /ui/<file> (at LWS_CALLBACK_HTTP,
 * uri as lws gives it: the path without the query). Returns 1 when uri is
 * not the dashboard's (the caller goes on), else what the lws callback
 * returns (0 or -1 to close). The API's access rules (loopback, token) were
 * applied before this is reached. */
int mz__ui_http(struct lws *wsi, const char *uri);

#endif
