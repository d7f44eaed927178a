/* meshzero: a mesh network for AI agents and tools.
 * The seed's calls map to C as follows:
 *   register_resource   -> mz_node_register_resource
 *   unregister_resource -> mz_node_unregister_resource
 *   query_resources     -> mz_node_query_resources
 *   connect_to_peer     -> mz_node_connect_to_peer
 * See examples/embed.c for a program embedding a node.
 *
 * Build against the installed library with
 *   cc prog.c $(pkg-config --cflags --libs meshzero)
 * The headers expose two dependencies' types, so programs use them too:
 * jansson (json_t: records, params and results are JSON, as on the wire)
 * and libuv (uv_loop_t: the node runs on the embedder's loop). The others
 * (libwebsockets, libsodium, SQLite, OpenSSL) stay inside the library.
 * meshzero/version.h: MZ_VERSION_MAJOR/MINOR/PATCH and mz_version(). */
#ifndef MESHZERO_H
#define MESHZERO_H

#include "meshzero/err.h"
#include "meshzero/msg.h"
#include "meshzero/directory.h"
#include "meshzero/connmgr.h"
#include "meshzero/node.h"
#include "meshzero/agreement.h"
#include "meshzero/version.h"

#endif
