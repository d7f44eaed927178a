/* The node's counters: one list, from which struct mz_counters, the names
 * `status` shows and the /metrics exposition are all generated (the pattern
 * of libuv's UV_ERRNO_MAP). Add a counter here and it appears everywhere.
 *
 * X(field, status_name, family, help)
 *   field        the member of struct mz_counters (node->c.field)
 *   status_name  its key under `status`.counters
 *   family       its Prometheus family, without the meshzero_ prefix and
 *                the _total suffix. A family shared by several rows is one
 *                metric with a label whose value is the status name (the
 *                label is "reason");
 *                a family of its own row is unlabeled.
 *   help         HELP text of that row (of the family: its first row's). */
#ifndef MZ_COUNTERS_H
#define MZ_COUNTERS_H

#define MZ_NODE_COUNTERS(X)                                                                     \
    X(msgs_handled, messages_handled, messages_handled, "Messages verified and handled here")   \
    X(forwarded, forwarded, messages_forwarded, "Messages relayed on towards other nodes")       \
    X(malformed, malformed, messages_dropped, "Messages dropped, by reason")                    \
    X(forged, forged, messages_dropped, "")                                                     \
    X(unknown_type, unknown_type, messages_dropped, "")                                         \
    X(duplicates, duplicates, messages_dropped, "")                                             \
    X(hop_limit_drops, hop_limit_drops, messages_dropped, "")                                   \
    X(unroutable, unroutable, messages_dropped, "")                                             \
    X(stale, stale, messages_dropped, "")                                                       \
    X(replayed, replayed, messages_dropped, "")                                                 \
    X(bad_seals, bad_seals, messages_dropped, "")                                               \
    X(relay_drops, relay_drops, messages_dropped, "")                                           \
    X(late_results, late_results, messages_dropped, "")                                         \
    X(hello_failures, hello_failures, peers_refused, "Peer links refused, by reason")           \
    X(refused_pin, refused_pin, peers_refused, "")                                              \
    X(refused_trust, refused_trust, peers_refused, "")                                          \
    X(refused_network, refused_network, peers_refused, "")                                      \
    X(preauth_refused, preauth_refused, peers_refused, "")                                      \
    X(links_shed, links_shed, links_closed, "Peer links closed by this node, by reason")        \
    X(rate_closes, rate_closes, links_closed, "")                                               \
    X(links_dialed_auto, links_dialed_auto, links_dialed_auto,                                  \
      "Links dialed by the link policy to keep the mesh connected")                            \
    X(throttled, throttled, links_throttled, "Times a flooding link's reading was paused")      \
    X(conflicts, conflicts, records_conflicts, "Records refused: the id is another owner's")    \
    X(bad_records, bad_records, records_refused, "Records refused, by reason")                  \
    X(rollbacks, rollbacks, records_refused, "")                                                \
    X(record_limit, record_limit, records_refused, "")                                          \
    X(leases_expired, leases_expired, leases_expired, "Nodes whose lease ran out")              \
    X(ghosts_removed, ghosts_removed, records_ghosts_removed,                                   \
      "Records dropped: their node's complete sync no longer lists them")                      \
    X(errors_received, errors_received, errors_received, "error messages received")            \
    X(exec_calls, exec_calls, exec_calls, "Calls started at this node (as caller)")             \
    X(exec_served, exec_served, exec_served, "Calls that reached this node as host")           \
    X(exec_timeouts, exec_timeouts, exec_timeouts, "Calls that timed out, here as either end")  \
    X(exec_busy, exec_busy, exec_refused, "Calls refused by this host, by reason")             \
    X(caller_busy, caller_busy, exec_refused, "")                                               \
    X(exec_denied, exec_denied, exec_refused, "")                                               \
    X(exec_held, exec_held, exec_held, "Calls held while their host had no route")              \
    X(exec_retries, exec_retries, exec_retries, "Calls sent again after a path failure")        \
    X(exec_retransmits, exec_retransmits, exec_retransmits,                                    \
      "Calls sent again after silence")                                                         \
    X(exec_repeats, exec_repeats, exec_repeats, "Repeated calls answered without a second run") \
    X(kept_evicted, kept_evicted, exec_kept_evicted, "Kept answers dropped over their limits")  \
    X(events_published, events_published, events_published, "Events published here")           \
    X(events_delivered, events_delivered, events_delivered, "Events delivered to subscribers")  \
    X(subs_refused, subs_refused, subscriptions_refused, "Subscriptions refused (limit)")      \
    X(sync_fetches, sync_fetches, sync_fetches, "Record fetches sent to other nodes")           \
    X(sync_busy, sync_busy, sync_busy, "Sync requests refused: too many replies in progress") \
    X(routes_demoted, routes_demoted, routes_demoted,                                          \
      "Routes replaced by a second path the sender's own alive proved")                        \
    X(fetch_refused, fetch_refused, sync_refused, "Sync requests refused, by reason")          \
    X(fetch_dups, fetch_dups, sync_refused, "")                                                \
    X(replies_paced, replies_paced, sync_replies_paced,                                        \
      "Replies held back by an asker's reply budget")                                          \
    X(unbound_records, unbound_records, records_refused, "")                                   \
    X(frames_in, frames_in, frames_in, "Wire v2 frames received")                              \
    X(frames_relayed, frames_relayed, frames_relayed,                                          \
      "Wire v2 unicast frames relayed from their header alone")

/* The link layer's counters (struct mz_connmgr_stats), same columns. */
#define MZ_LINK_COUNTERS(X)                                                                     \
    X(links_opened, links_opened, links_opened, "Links opened (peers and API clients)")         \
    X(links_refused_full, links_refused_full, peers_refused, "")                                \
    X(tls_refusals, tls_refusals, peers_refused, "")                                            \
    X(api_refused, api_refused, api_refused, "API requests refused: token missing or wrong")   \
    X(slow_link_closes, slow_link_closes, links_closed, "")                                     \
    X(oversize_closes, oversize_closes, links_closed, "")                                       \
    X(dial_failures, dial_failures, dial_failures, "Dials that failed")                         \
    X(api_host_refused, api_host_refused, api_host_refused,                                    \
      "API requests refused: their Host names another host")                                   \
    X(msgs_in, messages_in, link_messages_received, "Messages received on all links")          \
    X(msgs_out, messages_out, link_messages_sent, "Messages sent on all links")                \
    X(bytes_in, bytes_in, link_received_bytes, "Bytes received on all links")                  \
    X(bytes_out, bytes_out, link_sent_bytes, "Bytes sent on all links")

#endif
