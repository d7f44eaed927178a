#!/usr/bin/env python3
"""Convergence benchmark: N meshzero nodes on loopback in a random
4-regular mesh; R times a resource is registered on a random node and the
time until every node reports resource.added is measured.

  bench_converge.py MESHZERO [--nodes 50] [--regs 20] [--seed 7] [--json OUT]

Every node gets one API WebSocket subscribed to resource.added before the
registrations, all read by one selector thread that timestamps each event
on arrival (time.monotonic). The registration itself goes through a
WebSocket of the origin node's API; t0 is just before it is sent.
Messages per registration: the sum of counters.messages_out over all nodes
across the registrations, minus the same sum over an equally long idle
period (alive/keepalive traffic), divided by the number of registrations.
The nodes run with a 120 s lease (an `alive` every 40 s instead of 5 s) so
that idle traffic, whose bursts are random, does not swamp the count; the
lease plays no part in how fast a registration spreads.
One-hop one-way latency: per registration, the first event to arrive at a
direct neighbour of the origin (API request, signing, one link, event
delivery), median over registrations. Python stdlib only; the WebSocket
client and node start are meshbench.py's."""
import argparse, json, os, random, selectors, shutil, statistics, subprocess, sys
import tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from meshbench import WS, bfs, pct, rss_kib, start_node  # noqa: E402


def regular_graph(n, d, rng):
    """Random simple connected d-regular graph (pairing model, retried)."""
    while True:
        stubs = [v for v in range(n) for _ in range(d)]
        rng.shuffle(stubs)
        edges = set()
        ok = True
        for a, b in zip(stubs[::2], stubs[1::2]):
            e = (min(a, b), max(a, b))
            if a == b or e in edges:
                ok = False
                break
            edges.add(e)
        if not ok:
            continue
        adj = {v: set() for v in range(n)}
        for a, b in edges:
            adj[a].add(b)
            adj[b].add(a)
        if len(bfs(adj, 0)) == n:
            return sorted(edges), adj


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("meshzero")
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--regs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    n = a.nodes
    edges, adj = regular_graph(n, 4, rng)
    diameter = max(max(bfs(adj, v).values()) for v in range(n))
    tmp = tempfile.mkdtemp(prefix="mzconv")
    procs = []
    try:
        nodes = []
        for i in range(n):
            p, nid, listen, api = start_node(a.meshzero, f"{tmp}/n{i}",
                                             ("--lease-ms", "120000"))
            procs.append(p)
            nodes.append((nid, listen, api))
        ctl = [WS(api) for _, _, api in nodes]
        t_link = time.monotonic()
        for x, y in edges:
            ctl[x].call("connect_to_peer", {"url": nodes[y][1]})
        # Linked: every node sees exactly its neighbours.
        deadline = time.monotonic() + 30
        while True:
            want = sum(1 for i in range(n)
                       if {p["id"] for p in ctl[i].call("peers")} >= {nodes[j][0] for j in adj[i]})
            if want == n:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {want}/{n} nodes linked after 30 s")
            time.sleep(0.1)
        link_s = time.monotonic() - t_link
        time.sleep(1.0)   # hellos and directory syncs settle

        # Subscribers: one WebSocket per node, one reader thread.
        subs = [WS(api) for _, _, api in nodes]
        for s in subs:
            s.call("subscribe", {"topic": "resource.added"})
        seen = {}   # resource_id -> {node index: monotonic time}
        lock = threading.Lock()
        stop = threading.Event()
        sel = selectors.DefaultSelector()
        for i, s in enumerate(subs):
            s.sock.setblocking(False)
            sel.register(s.sock, selectors.EVENT_READ, i)

        def reader():
            while not stop.is_set():
                for key, _ in sel.select(0.05):
                    now = time.monotonic()
                    s = subs[key.data]
                    try:
                        d = s.sock.recv(65536)
                    except BlockingIOError:
                        continue
                    if not d:
                        sel.unregister(s.sock)
                        continue
                    s.buf += d
                    for raw in s.parse():
                        m = json.loads(raw)
                        if m.get("method") != "event":
                            continue
                        rid = (m["params"].get("data") or {}).get("resource_id")
                        with lock:
                            seen.setdefault(rid, {}).setdefault(key.data, now)

        th = threading.Thread(target=reader, daemon=True)
        th.start()

        def out_sum():
            return sum(c.call("status")["counters"]["messages_out"] for c in ctl)

        # Idle traffic over the same span the registrations will take.
        regs = []
        m0 = out_sum()
        t_start = time.monotonic()
        for r in range(a.regs):
            origin = rng.randrange(n)
            rid = f"conv-{a.seed}-{r}"
            t0 = time.monotonic()
            ctl[origin].call("register_resource", {"resource_id": rid, "resource_type": "bench",
                                                   "capabilities": ["converge"]})
            t_ack = time.monotonic()
            deadline = t0 + 10
            while time.monotonic() < deadline:
                with lock:
                    got = dict(seen.get(rid, {}))
                others = [i for i in range(n) if i != origin]
                if all(i in got for i in others):
                    break
                time.sleep(0.0005)
            missing = [i for i in range(n) if i != origin and i not in got]
            last = max(got[i] for i in got if i != origin) if got else t0
            nb = [got[j] for j in adj[origin] if j in got]
            regs.append({"origin": origin, "ms": (last - t0) * 1e3,
                         "ack_ms": (t_ack - t0) * 1e3,
                         "first_neighbour_ms": (min(nb) - t0) * 1e3 if nb else None,
                         "origin_event": origin in got, "missing": len(missing)})
            time.sleep(0.05)   # the flood has passed before the next one
        span = time.monotonic() - t_start
        m1 = out_sum()
        time.sleep(span)
        m2 = out_sum()
        stop.set()
        th.join()
        rss = [rss_kib(p.pid) for p in procs]

        conv = [r["ms"] for r in regs if r["missing"] == 0]
        one_hop = statistics.median(r["first_neighbour_ms"] for r in regs
                                    if r["first_neighbour_ms"] is not None)
        msgs_reg_raw = (m1 - m0) / a.regs
        msgs_idle = (m2 - m1) / a.regs
        res = {
            "nodes": n, "degree": 4, "edges": len(edges), "diameter": diameter,
            "registrations": a.regs, "complete": len(conv),
            "link_s": round(link_s, 2),
            "converge_ms_p50": round(pct(conv, 50), 2) if conv else None,
            "converge_ms_p99": round(pct(conv, 99), 2) if conv else None,
            "converge_ms_max": round(max(conv), 2) if conv else None,
            "register_ack_ms_p50": round(statistics.median(r["ack_ms"] for r in regs), 2),
            "one_hop_one_way_ms": round(one_hop, 3),
            "target_ms": round(5 * diameter * one_hop + 10, 2),
            "messages_per_registration": round(msgs_reg_raw - msgs_idle, 1),
            "messages_per_registration_raw": round(msgs_reg_raw, 1),
            "idle_messages_same_span_per_registration": round(msgs_idle, 1),
            "node_rss_kib_median": statistics.median(rss),
        }
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f)
        print(json.dumps(res))
        return 0 if conv else 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
