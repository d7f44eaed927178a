/* Likely causes of failed dials (dialhint.h): one row per symptom. */
#include <stdio.h>
#include <string.h>

#include "net/dialhint.h"

static const struct {
    const char *symptom;        /* in connmgr's reason */
    const char *tls;            /* cause when the URL is wss:// (NULL: same as plain) */
    const char *plain;          /* cause for ws:// and unix: */
} s_hints[] = {
    { "closed before established", NULL,
      "no node listening there (connection refused)" },
    { "cannot resolve host", NULL, "the host name does not resolve" },
    { "TLS handshake failed", "the server does not speak TLS there: use ws://", NULL },
    { "closed before the websocket upgrade", "the TLS handshake or the upgrade was refused",
      "the server closed the connection before the upgrade; if it speaks TLS, use wss://" },
    { "read failed", NULL, NULL },     /* filled in below: depends on api */
};

char *mz__url_shown(const char *url, char *out, size_t len)
{
    snprintf(out, len, "%.*s", (int)strcspn(url, "?"), url);
    return out;
}

char *mz__dial_explain(const char *url, const char *reason, int api, char *out, size_t len)
{
    char shown[300];
    const char *cause = NULL;
    int tls = strncmp(url, "wss://", 6) == 0;

    mz__url_shown(url, shown, sizeof shown);
    for (size_t i = 0; i < sizeof s_hints / sizeof s_hints[0] && cause == NULL; i++)
        if (strstr(reason, s_hints[i].symptom) != NULL)
            cause = tls && s_hints[i].tls ? s_hints[i].tls : s_hints[i].plain;
    if (cause == NULL && strstr(reason, "read failed") != NULL)
        cause = api ? "the server refused the API connection: the API may require a token "
                      "(set MESHZERO_API_TOKEN), or this is a peer port, not an API port"
                    : "the server refused the upgrade: is this a meshzero peer port (not an "
                      "API port)?";
    if (cause == NULL)
        snprintf(out, len, "%s: %s", shown, reason);
    else
        snprintf(out, len, "%s: %s (%s)", shown, cause, reason);
    return out;
}
