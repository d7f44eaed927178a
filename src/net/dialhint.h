/* The likely cause of a failed dial, in words a user can act on: the
 * connection manager reports what lws saw ("closed before established"),
 * this says what it usually means for the URL that was dialed. */
#ifndef MZ_NET_DIALHINT_H
#define MZ_NET_DIALHINT_H

#include <stddef.h>

/* Writes "<what was tried>: <likely cause> (<the raw reason>)" for a dial of
 * url (shown without its query, where a token may be) that failed with
 * reason. api: the dial was to a local API, not a peer port. Returns out. */
char *mz__dial_explain(const char *url, const char *reason, int api, char *out, size_t len);

/* url without "?..." (a token) into out. Returns out. */
char *mz__url_shown(const char *url, char *out, size_t len);

#endif
