/* Host names a local listener answers to (internal): the defence against
 * DNS rebinding, where a web page reaches a loopback port under a name of
 * its own (PROTOCOL.md §8). */
#ifndef MZ_HOSTCHECK_H
#define MZ_HOSTCHECK_H

#include <stdbool.h>
#include <stddef.h>

/* True when the n bytes at hostport (a Host header: name or address, an
 * optional ":port") name this machine's loopback (localhost, 127.0.0.0/8,
 * [::1]) or equal listen_host (may be NULL; compared without case). */
bool mz_host_allowed(const char *hostport, size_t n, const char *listen_host);
/* Writes the host of url (scheme://host:port/..., IPv6 brackets kept) into
 * out; false when url has none or it does not fit. */
bool mz_url_host(const char *url, char *out, size_t cap);
/* True for an address that listens on every interface (0.0.0.0, [::]). */
bool mz_host_wildcard(const char *host);

#endif
