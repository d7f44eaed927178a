#!/usr/bin/env python3
"""Memory benchmark: a node's resident set idle, with 1,000 idle
API client links, and with many remote records.

  bench_memory.py MESHZERO [--clients 1000] [--records 100000] [--json OUT]

Client links: raw-socket WebSocket upgrades to the node's API
(--max-api-clients clients+100), RLIMIT_NOFILE raised; RSS read from
/proc/PID/status after 1 s of settling. Remote records: a second node B
registers them through one API WebSocket (pipelined, 256 in flight); node A,
linked to B, learns them as remote records; the per-record figure is A's RSS
growth between half and all of them (fixed costs excluded), and the total
growth over the count is reported too. If registering takes too long, --records can be
lowered (the output says how many were used: per-record figures scale).
The idle figure is VmRSS, shared library pages included; idle_breakdown splits
it from /proc/PID/smaps (docs/PERFORMANCE.md, "Memory").
Python stdlib only; the WebSocket client is meshbench.WS."""
import argparse, json, os, resource, shutil, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from meshbench import WS, start_node, rss_kib  # noqa: E402


def smaps_breakdown(pid):
    """What the resident set is made of, in KiB: file-backed pages still
    shared with the page cache (library code and read-only data), pages of
    file mappings this process wrote (relocations, .data), anonymous memory
    (heap, malloc mmaps, stacks), shared memory (SQLite's WAL index); PSS
    and private pages; and the resident KiB of each mapped object."""
    res = {"rss_kib": 0, "pss_kib": 0, "private_kib": 0, "file_pages_kib": 0,
           "file_written_kib": 0, "anon_kib": 0, "shmem_kib": 0}
    objects = {}
    name = kind = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            p = line.split()
            if "-" in p[0] and not p[0].endswith(":"):
                name = p[5] if len(p) > 5 else "[anon]"
                shared = p[1].endswith("s")
                kind = "shmem" if shared else "file" if name.startswith("/") else "anon"
                name = os.path.basename(name)
                continue
            key, val = p[0].rstrip(":"), int(p[1]) if len(p) > 1 and p[1].isdigit() else 0
            if key == "Rss":
                res["rss_kib"] += val
                objects[name] = objects.get(name, 0) + val
                if kind == "anon":
                    res["anon_kib"] += val
                elif kind == "shmem":
                    res["shmem_kib"] += val
                else:
                    res["file_pages_kib"] += val
            elif key == "Anonymous" and kind == "file":
                res["file_pages_kib"] -= val
                res["file_written_kib"] += val
            elif key == "Pss":
                res["pss_kib"] += val
            elif key in ("Private_Clean", "Private_Dirty"):
                res["private_kib"] += val
    res["objects_kib"] = dict(sorted(objects.items(), key=lambda kv: -kv[1])[:16])
    return res


def settle_rss(pid, secs=1.0):
    time.sleep(secs)
    return rss_kib(pid)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("meshzero")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--records", type=int, default=100000)
    ap.add_argument("--budget-s", type=float, default=90,
                    help="stop registering after this long and report what was reached")
    ap.add_argument("--json")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.clients + 200
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    tmp = tempfile.mkdtemp(prefix="mzmem")
    procs, res = [], {}
    try:
        # --- 1,000 idle client links -------------------------------------
        pa, ida, la, apia = start_node(a.meshzero, f"{tmp}/a",
                                       ["--max-api-clients", str(a.clients + 100),
                                        "--max-records-per-node", str(max(a.records, 100000) + 10)])
        procs.append(pa)
        idle = settle_rss(pa.pid)
        res["idle_breakdown"] = smaps_breakdown(pa.pid)
        conns = []
        for _ in range(a.clients):
            conns.append(WS(apia))
        # Each link proven live: one request on the last one.
        conns[-1].call("status")
        with_clients = settle_rss(pa.pid)
        res["idle_rss_kib"] = idle
        res["clients"] = len(conns)
        res["rss_with_clients_kib"] = with_clients
        res["kib_per_client_link"] = round((with_clients - idle) / len(conns), 2)
        for c in conns:
            c.close()
        conns = []
        time.sleep(1.0)
        base = rss_kib(pa.pid)

        # --- remote records ----------------------------------------------
        pb, idb, lb, apib = start_node(a.meshzero, f"{tmp}/b",
                                       ["--peer", la])
        procs.append(pb)
        ctl_a = WS(apia)
        deadline = time.monotonic() + 20
        while not ctl_a.call("peers"):
            if time.monotonic() > deadline:
                raise RuntimeError("B did not link to A")
            time.sleep(0.05)
        ctl_a.close()
        time.sleep(0.5)
        base = rss_kib(pa.pid)
        w = WS(apib, timeout=60)
        t0 = time.monotonic()
        stop_at = t0 + a.budget_s
        reg_s = 0.0

        def register(first, last):
            """Records first..last-1 on B, pipelined; returns how many acked."""
            sent = acked = first
            window, batch = 256, 64
            while acked < last:
                if sent < last and sent - acked < window and time.monotonic() < stop_at:
                    frames = []
                    for _ in range(min(batch, last - sent, window - (sent - acked))):
                        frames.append(WS.frame(json.dumps({
                            "jsonrpc": "2.0", "id": sent, "method": "register_resource",
                            "params": {"resource_id": f"mem-{sent}", "resource_type": f"type-{sent % 20}",
                                       "capabilities": [f"cap-{(sent * 7 + k * 13) % 200}" for k in range(4)],
                                       "owner": f"owner-{sent % 1000}",
                                       "metadata": {"version": "1.0"}}})))
                        sent += 1
                    w.sock.sendall(b"".join(frames))
                    continue
                if sent == acked:
                    break
                m = json.loads(w.recv())
                if "error" in m:
                    raise RuntimeError(f"register: {m['error']}")
                acked += 1
                for raw in getattr(w, "pending", []):
                    json.loads(raw)
                    acked += 1
                if hasattr(w, "pending"):
                    w.pending.clear()
            return acked

        def learned(n):
            """Waits until A holds n remote records; returns the count held."""
            deadline = time.monotonic() + 120
            while True:
                c = WS(apia)   # fresh: an idle client is dropped after --hangup-secs
                remote = c.call("status")["resources"]["remote"]
                c.close()
                if remote >= n or time.monotonic() > deadline:
                    return remote
                time.sleep(0.2)

        # Two halves: the slope between them excludes fixed costs (B's link,
        # table growth steps) from the per-record figure and extrapolation.
        half = a.records // 2
        t = time.monotonic()
        n1 = register(0, half)
        reg_s += time.monotonic() - t
        remote1 = learned(n1)
        rss_half = settle_rss(pa.pid)
        t = time.monotonic()
        n = register(n1, a.records)
        reg_s += time.monotonic() - t
        print(f"registered {n} in {reg_s:.1f} s", file=sys.stderr)
        remote = learned(n)
        learn_s = time.monotonic() - t0
        with_records = settle_rss(pa.pid)
        slope = (with_records - rss_half) * 1024 / max(remote - remote1, 1)
        res.update({
            "records_target": a.records, "records": n, "remote_at_a": remote,
            "register_per_s": round(n / reg_s), "learned_s": round(learn_s, 1),
            "rss_before_records_kib": base, "rss_at_half_kib": rss_half,
            "rss_with_records_kib": with_records,
            "bytes_per_remote_record_total": round((with_records - base) * 1024 / max(remote, 1), 1),
            "bytes_per_remote_record": round(slope, 1),
            "rss_b_kib": rss_kib(pb.pid),
        })
        if remote < 100000:
            res["rss_at_100k_records_kib_extrapolated"] = round(
                with_records + slope * (100000 - remote) / 1024)
        w.close()
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f)
        print(json.dumps(res))
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except Exception:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
