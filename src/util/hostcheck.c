/* Host header checks for local listeners. */
#include <string.h>
#include <strings.h>

#include "util/hostcheck.h"

static bool s_loopback_v4(const char *h, size_t n)
{
    int parts = 0, digits = 0, val = 0;

    if (n < 4 || strncmp(h, "127.", 4) != 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (h[i] == '.') {
            if (digits == 0)
                return false;
            parts++;
            digits = val = 0;
        } else if (h[i] >= '0' && h[i] <= '9' && digits < 3) {
            val = val * 10 + (h[i] - '0');
            digits++;
            if (val > 255)
                return false;
        } else {
            return false;
        }
    }
    return parts == 3 && digits > 0;
}

bool mz_host_allowed(const char *hostport, size_t n, const char *listen_host)
{
    size_t hn = n;

    if (hostport == NULL || n == 0)
        return false;
    /* Strip ":port" (after a closing bracket for IPv6 literals). */
    for (size_t i = n; i > 0; i--) {
        char ch = hostport[i - 1];
        if (ch == ':') {
            if (i == n)
                return false;                   /* "host:" */
            hn = i - 1;
            break;
        }
        if (ch < '0' || ch > '9')
            break;
    }
    if (hn == 0)
        return false;
    if ((hn == 9 && strncasecmp(hostport, "localhost", 9) == 0) ||
        (hn == 5 && strncmp(hostport, "[::1]", 5) == 0) || s_loopback_v4(hostport, hn))
        return true;
    return listen_host != NULL && listen_host[0] != '\0' && strlen(listen_host) == hn &&
           strncasecmp(hostport, listen_host, hn) == 0;
}

bool mz_url_host(const char *url, char *out, size_t cap)
{
    const char *h = url ? strstr(url, "://") : NULL, *end;
    size_t n;

    if (cap == 0)
        return false;
    out[0] = '\0';
    if (h == NULL)
        return false;
    h += 3;
    if (*h == '[') {
        end = strchr(h, ']');
        end = end ? end + 1 : h + strlen(h);
    } else {
        end = h + strcspn(h, ":/");
    }
    n = (size_t)(end - h);
    if (n >= cap)
        return false;
    memcpy(out, h, n);
    out[n] = '\0';
    return true;
}

bool mz_host_wildcard(const char *host)
{
    return strcmp(host, "0.0.0.0") == 0 || strcmp(host, "[::]") == 0 || strcmp(host, "::") == 0;
}
