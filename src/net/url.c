/* ws:// and wss:// URLs with an optional node-id pin (docs/TLS.md): the one
 * parser every transport and the command line use. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshzero/connmgr.h"

mz_status mz_url_parse2(const char *url, mz_url *u, mz_err *err)
{
    const char *p, *hs, *he, *ps, *frag;
    long v;

    memset(u, 0, sizeof *u);
    if (url != NULL && strncmp(url, "ws://", 5) == 0) {
        p = url + 5;
    } else if (url != NULL && strncmp(url, "wss://", 6) == 0) {
        p = url + 6;
        u->tls = true;
    } else {
        return mz_err_set(err, MZ_EINVAL, "url '%s': must start with ws:// or wss://",
                          url ? url : "(null)");
    }
    v = u->tls ? 443 : 80;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (he == NULL)
            return mz_err_set(err, MZ_EINVAL, "url '%s': unclosed '[' in host", url);
        p = he + 1;
    } else {
        hs = p;
        he = p + strcspn(p, ":/#?");
        p = he;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof u->host)
        return mz_err_set(err, MZ_EINVAL, "url '%s': missing or overlong host", url);
    memcpy(u->host, hs, (size_t)(he - hs));
    u->host[he - hs] = '\0';
    if (*p == ':') {
        char *end;
        errno = 0;
        v = strtol(p + 1, &end, 10);
        if (end == p + 1 || errno != 0 || v < 0 || v > 65535 ||
            (*end != '\0' && *end != '/' && *end != '#'))
            return mz_err_set(err, MZ_EINVAL, "url '%s': port must be 0-65535", url);
        p = end;
    }
    u->port = (int)v;
    ps = (*p == '/') ? p : "/";
    {
        size_t n = strcspn(ps, "#");
        if (n >= sizeof u->path)
            return mz_err_set(err, MZ_EINVAL, "url '%s': path too long", url);
        memcpy(u->path, ps, n);
        u->path[n] = '\0';
        if (n == 0)
            snprintf(u->path, sizeof u->path, "/");
    }
    /* The fragment pins the node id (docs/TLS.md). A typo must not quietly
     * turn pinning off, so anything but a whole id is refused. */
    frag = strchr(p, '#');
    if (frag != NULL && frag[1] != '\0') {
        frag++;
        if (strlen(frag) != MZ_URL_PIN_LEN)
            return mz_err_set(err, MZ_EINVAL, "url '%s': the #fragment must be a node id "
                              "(64 hex characters)", url);
        for (size_t i = 0; i < MZ_URL_PIN_LEN; i++) {
            char c = frag[i];
            if (c >= 'A' && c <= 'F')
                c = (char)(c - 'A' + 'a');
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                return mz_err_set(err, MZ_EINVAL, "url '%s': the #fragment must be a node "
                                  "id (64 hex characters)", url);
            u->pin[i] = c;
        }
        u->pin[MZ_URL_PIN_LEN] = '\0';
    }
    return MZ_OK;
}

mz_status mz_url_parse(const char *url, char *host, size_t host_len, int *port,
                       char *path, size_t path_len, mz_err *err)
{
    mz_url u;
    mz_status rc = mz_url_parse2(url, &u, err);

    if (rc != MZ_OK)
        return rc;
    if (strlen(u.host) >= host_len)
        return mz_err_set(err, MZ_EINVAL, "url '%s': missing or overlong host", url);
    if (strlen(u.path) >= path_len)
        return mz_err_set(err, MZ_EINVAL, "url '%s': path too long", url);
    snprintf(host, host_len, "%s", u.host);
    snprintf(path, path_len, "%s", u.path);
    *port = u.port;
    return MZ_OK;
}
