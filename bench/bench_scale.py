#!/usr/bin/python3
"""Scale benchmark: N real node processes on loopback (port 0), each dialing
2 nodes started before it (a random mesh of about 2N links), first idle,
then R registrations.

  bench_scale.py MESHZERO [--nodes 30] [--idle-s 20] [--regs 20] [--sample 24]
                 [--json OUT] [--node-arg=--lease-ms=15000 ...]

Measured:
- idle, over --idle-s seconds once every node has its links: CPU per node in
  % of one core (utime+stime from /proc/PID/stat, mean over the nodes) and
  messages sent per second per node (status counters.messages_out);
- per registration, on a random origin: the time from just before the API
  call until `resource.added` has arrived at every node of a sample (p50 and
  p99 over the registrations) and the messages it cost mesh-wide: the sum of
  messages_out over all nodes across the registrations minus each node's idle
  rate over the same span, over R (both spans a whole number of alive
  periods, lease/3: see until_periods);
- the median resident set of the nodes at the end.

Built to keep up at 1,000 nodes: nodes start in batches, each with a bounded
wait for its first line (stdout to a file, no pipe held); status is polled
with short-lived API connections, at most --poll-batch at once; only the
sample's nodes are watched through long-lived API connections, whose reader
answers the node's pings. Every node started is killed by PID on exit, error,
Ctrl-C or SIGTERM (and dies with the harness: PR_SET_PDEATHSIG). The open
file limit is raised to what the run needs when the hard limit allows.
By default the nodes run with --max-links 64 so that the topology stays the
one dialed (above the default high watermark of 8 a node sheds its newest
inbound link, and its dialer redials: churn, not idle cost).
asyncio, websockets (python3-websockets), and meshbench.py."""
import argparse, asyncio, ctypes, json, math, os, random, resource, shutil, signal
import statistics, subprocess, sys, tempfile, time

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from meshbench import CLK_TCK, bfs, cpu_ticks, node_argv, parse_ready, pct, rss_kib  # noqa: E402

PROCS = []   # every node process started, killed by PID in stop_all()
SNAPSHOT_S = []   # how long each status snapshot of all nodes took


def die_with_parent():
    """Runs in the child before exec: SIGTERM when the harness dies."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG


def stop_all():
    for p in PROCS:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 10
    for p in PROCS:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < want:
        print(f"bench_scale: open files limited to {new} (hard limit), {want} wanted", file=sys.stderr)
    return new


class Node:
    def __init__(self, i, proc, out):
        self.i, self.proc, self.out = i, proc, out
        self.id = self.listen = self.api = None


async def start_batch(a, tmp, nodes, first, count, rng):
    """Starts nodes first..first+count-1, each dialing 2 random nodes among
    those already started, and waits (bounded) for every one's first line."""
    edges = []
    batch = []
    for i in range(first, first + count):
        earlier = rng.sample(range(first), min(2, first))
        peers = []
        for j in earlier:
            peers += ["--peer", nodes[j].listen]
            edges.append((j, i))
        data = f"{tmp}/n{i}"
        os.mkdir(data)
        with open(f"{data}.out", "w") as out, open(f"{data}.err", "w") as err:
            p = subprocess.Popen(node_argv(a.meshzero, data, [*a.node_arg, *peers]),
                                 stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                 preexec_fn=die_with_parent)
        PROCS.append(p)
        batch.append(Node(i, p, f"{data}.out"))
    deadline = time.monotonic() + a.start_timeout
    waiting = list(batch)
    while waiting:
        for n in list(waiting):
            with open(n.out) as f:
                line = f.readline()
            ready = parse_ready(line) if line.endswith("\n") else None   # whole lines only
            if ready:
                n.id, n.listen, n.api = ready
                waiting.remove(n)
            elif n.proc.poll() is not None:
                err = open(n.out[:-4] + ".err").read().strip().splitlines()
                raise RuntimeError(f"node {n.i} exited with {n.proc.returncode}: "
                                   + " / ".join(err[:2]))   # what it said first
        if waiting and time.monotonic() > deadline:
            raise RuntimeError(f"{len(waiting)} nodes of batch {first}.. gave no first line "
                               f"within {a.start_timeout} s")
        if waiting:
            await asyncio.sleep(0.05)
    nodes.extend(batch)
    return edges


async def rpc(url, method, params=None, timeout=10.0):
    """One call over a short-lived API connection."""
    async with websockets.connect(url, open_timeout=timeout, close_timeout=1,
                                  ping_interval=None, max_size=1 << 22) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                  "params": params or {}}))
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            if m.get("id") == 1:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]


async def snapshot(a, nodes):
    """status of every node, at most --poll-batch connections at once:
    {node index: (monotonic time of the answer, status)}."""
    sem = asyncio.Semaphore(a.poll_batch)
    t0 = time.monotonic()

    async def one(n):
        async with sem:
            st = await rpc(n.api, "status")
            return n.i, (time.monotonic(), st)
    snap = dict(await asyncio.gather(*(one(n) for n in nodes)))
    SNAPSHOT_S.append(time.monotonic() - t0)
    return snap


async def wait_linked(a, nodes, degree):
    """Until every node has its dialed links up and knows every node, or the
    deadline: (seconds taken, the last snapshot)."""
    t0 = time.monotonic()
    deadline = t0 + a.link_timeout
    while True:
        snap = await snapshot(a, nodes)
        short = [i for i, (_, st) in snap.items() if st["peers"] < degree[i]]
        # nodes_known counts the other nodes, not this one.
        unknown = [i for i, (_, st) in snap.items() if st["nodes_known"] < len(nodes) - 1]
        if not short and not unknown:
            return time.monotonic() - t0, snap
        if time.monotonic() > deadline:
            known = min(st["nodes_known"] for _, st in snap.values())
            if short:
                raise RuntimeError(f"after {a.link_timeout} s: {len(short)} nodes short of their"
                                   f" links, {len(unknown)} not knowing all {len(nodes) - 1} others"
                                   f" (known: min {known})")
            # Linked, but the mesh does not know itself yet: measured anyway,
            # and said so (nodes_known_min in the result).
            print(f"bench_scale: after {a.link_timeout} s, {len(unknown)} nodes know only"
                  f" {known} of the {len(nodes) - 1} others; measuring anyway", file=sys.stderr)
            return time.monotonic() - t0, snap
        await asyncio.sleep(0.5)


def counter(snap, i, key):
    return snap[i][1]["counters"][key]


def idle_rates(s0, s1, key):
    return {i: (counter(s1, i, key) - counter(s0, i, key)) / (s1[i][0] - s0[i][0]) for i in s0}


async def until_periods(t_start, period, busy_until=None):
    """Sleeps until a whole number of alive periods has passed since
    t_start, at least up to busy_until. Nodes started together send their
    `alive`s in bursts, one a period: a count over a window that is not a
    whole number of periods would hold 0 or 1 burst by chance."""
    end = t_start + period * max(1, math.ceil(((busy_until or t_start) - t_start) / period))
    await asyncio.sleep(max(0.0, end - time.monotonic()))


async def measure_idle(a, nodes, period):
    """CPU over exactly --idle-s (read from /proc, no API traffic inside the
    window); message rates from status snapshots around it, a whole number
    of alive periods apart."""
    t_s0 = time.monotonic()
    s0 = await snapshot(a, nodes)
    c0, t0 = {n.i: cpu_ticks(n.proc.pid) for n in nodes}, time.monotonic()
    await asyncio.sleep(a.idle_s)
    c1, t1 = {n.i: cpu_ticks(n.proc.pid) for n in nodes}, time.monotonic()
    await until_periods(t_s0, period, t1)
    s1 = await snapshot(a, nodes)
    cpu = [(c1[i] - c0[i]) / CLK_TCK / (t1 - t0) * 100 for i in c0]
    return {"cpu": cpu, "out": idle_rates(s0, s1, "messages_out"),
            "in": idle_rates(s0, s1, "messages_in"), "bytes": idle_rates(s0, s1, "bytes_out")}


class Watcher:
    """A long-lived API connection subscribed to resource.added; its reader
    timestamps each event on arrival (and answers pings while reading)."""

    def __init__(self, node, seen):
        self.node, self.seen = node, seen

    async def start(self):
        self.ws = await websockets.connect(self.node.api, open_timeout=10, close_timeout=1,
                                           ping_interval=None, max_size=1 << 22)
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe",
                                       "params": {"topic": "resource.added"}}))
        while json.loads(await asyncio.wait_for(self.ws.recv(), 10)).get("id") != 1:
            pass
        self.task = asyncio.create_task(self.read())

    async def read(self):
        async for raw in self.ws:
            now = time.monotonic()
            m = json.loads(raw)
            if m.get("method") == "event":
                rid = (m["params"].get("data") or {}).get("resource_id")
                self.seen.setdefault(rid, {}).setdefault(self.node.i, now)

    async def close(self):
        self.task.cancel()
        await self.ws.close()


async def registrations(a, nodes, sample, adj, idle, period, rng):
    seen = {}
    watchers = [Watcher(n, seen) for n in sample]
    await asyncio.gather(*(w.start() for w in watchers))
    regs = []
    t_r0 = time.monotonic()
    r0 = await snapshot(a, nodes)
    for r in range(a.regs):
        origin = rng.choice(nodes)
        rid = f"scale-{a.seed}-{r}"
        want = {n.i for n in sample if n.i != origin.i}
        async with websockets.connect(origin.api, open_timeout=10, close_timeout=1,
                                      ping_interval=None) as ws:
            t0 = time.monotonic()
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "register_resource",
                                      "params": {"resource_id": rid, "resource_type": "bench",
                                                 "capabilities": ["scale"]}}))
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if "error" in m:
                raise RuntimeError(f"register_resource on node {origin.i}: {m['error']}")
        deadline = t0 + a.reg_timeout
        while not want <= seen.get(rid, {}).keys() and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        got = seen.get(rid, {})
        missing = want - got.keys()
        dist = bfs(adj, origin.i)
        regs.append({"origin": origin.i, "missing": len(missing),
                     "hops": max(dist[i] for i in want) if want else 0,
                     "ms": (max((got[i] for i in want if i in got), default=t0) - t0) * 1e3})
    # Messages still travelling to nodes outside the sample are counted too;
    # the idle traffic subtracted is then that of whole alive periods.
    await until_periods(t_r0, period, time.monotonic() + a.settle_s)
    r1 = await snapshot(a, nodes)
    await asyncio.gather(*(w.close() for w in watchers))
    raw = sum(counter(r1, i, "messages_out") - counter(r0, i, "messages_out") for i in r0)
    idle_est = sum(idle["out"][i] * (r1[i][0] - r0[i][0]) for i in r0)
    return regs, raw, idle_est


def report(a, res):
    rows = (("nodes", "nodes", "{:d}"), ("links", "links (dialed)", "{:d}"),
            ("link_s", "linked and all known after", "{:.1f} s"),
            ("idle_cpu_pct_per_node", "idle CPU per node", "{:.3f} % of a core"),
            ("idle_cpu_pct_total", "idle CPU, all nodes", "{:.1f} % of a core"),
            ("idle_msgs_per_s_per_node", "idle messages sent/s per node", "{:.1f}"),
            ("idle_bytes_per_s_per_node", "idle bytes sent/s per node", "{:.0f}"),
            ("converge_ms_p50", "registration visible at sample, p50", "{:.1f} ms"),
            ("converge_ms_p99", "registration visible at sample, p99", "{:.1f} ms"),
            ("sample_hops_max_median", "  farthest sampled node, median", "{:.0f} hops"),
            ("converge_ms_per_hop_median", "  visible at the farthest, per hop", "{:.2f} ms"),
            ("messages_per_registration", "messages per registration", "{:.0f}"),
            ("rss_kib_median", "node RSS median", "{:.0f} KiB"))
    print(f"  ({res['sample']} nodes watched, {res['complete']}/{res['registrations']} registrations complete,"
          f" {res['idle_s']} s idle, lease {res['lease_ms']} ms)")
    for key, label, fmt in rows:
        v = res.get(key)
        print(f"  {label:38} {fmt.format(v) if v is not None else '-'}")
    print(f"  (messages per registration: {res['messages_per_registration_raw']:.0f} counted minus"
          f" {res['idle_messages_same_span_per_registration']:.0f} idle over the same span)")


async def run(a, tmp):
    rng = random.Random(a.seed)
    nodes, edges = [], []
    edges += await start_batch(a, tmp, nodes, 0, 1, rng)
    while len(nodes) < a.nodes:
        # A batch no larger than what has started, so that a node's 2
        # earlier ones are spread over the mesh so far, not all the first.
        count = min(a.batch, len(nodes), a.nodes - len(nodes))
        edges += await start_batch(a, tmp, nodes, len(nodes), count, rng)
    degree = [0] * a.nodes
    adj = {i: set() for i in range(a.nodes)}
    for x, y in edges:
        degree[x] += 1
        degree[y] += 1
        adj[x].add(y)
        adj[y].add(x)
    link_s, snap = await wait_linked(a, nodes, degree)
    lease = snap[0][1]["limits"]["lease_ms"]
    period = lease / 3000.0           # a node sends its `alive` every lease/3
    idle = await measure_idle(a, nodes, period)
    sample = rng.sample(nodes, min(a.sample, a.nodes))
    regs, raw, idle_est = await registrations(a, nodes, sample, adj, idle, period, rng)
    rss = [rss_kib(n.proc.pid) for n in nodes]
    conv = [r["ms"] for r in regs if r["missing"] == 0]
    n = a.nodes
    return {
        "nodes": n, "links": len(edges), "sample": len(sample), "lease_ms": lease,
        "idle_s": a.idle_s, "registrations": a.regs, "complete": len(conv),
        "link_s": round(link_s, 2),
        "nodes_known_min": min(st["nodes_known"] for _, st in snap.values()),
        "converge_ms_p50": round(pct(conv, 50), 2) if conv else None,
        "converge_ms_p99": round(pct(conv, 99), 2) if conv else None,
        "sample_hops_max_median": statistics.median(r["hops"] for r in regs),
        "converge_ms_per_hop_median": round(statistics.median(
            r["ms"] / r["hops"] for r in regs if r["missing"] == 0 and r["hops"]), 2) if conv else None,
        "messages_per_registration": round((raw - idle_est) / a.regs, 1),
        "messages_per_registration_raw": round(raw / a.regs, 1),
        "idle_messages_same_span_per_registration": round(idle_est / a.regs, 1),
        "idle_cpu_pct_per_node": round(statistics.mean(idle["cpu"]), 4),
        "idle_cpu_pct_per_node_max": round(max(idle["cpu"]), 3),
        "idle_cpu_pct_total": round(sum(idle["cpu"]), 2),
        "idle_msgs_per_s_per_node": round(sum(idle["out"].values()) / n, 2),
        "idle_msgs_in_per_s_per_node": round(sum(idle["in"].values()) / n, 2),
        "idle_bytes_per_s_per_node": round(sum(idle["bytes"].values()) / n, 1),
        "rss_kib_median": statistics.median(rss),
        "harness_snapshot_s_median": round(statistics.median(SNAPSHOT_S), 3),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("meshzero")
    ap.add_argument("--nodes", type=int, default=30)
    ap.add_argument("--idle-s", type=float, default=20.0, help="idle measurement (default 20 s)")
    ap.add_argument("--regs", type=int, default=20)
    ap.add_argument("--sample", type=int, default=24, help="nodes watched for resource.added")
    ap.add_argument("--batch", type=int, default=25, help="nodes started at once")
    ap.add_argument("--poll-batch", type=int, default=32, help="status connections at once")
    ap.add_argument("--start-timeout", type=float, default=30.0, help="per batch, seconds")
    ap.add_argument("--link-timeout", type=float, default=None,
                    help="seconds until all linked (default 30 + N/10)")
    ap.add_argument("--reg-timeout", type=float, default=10.0, help="per registration, seconds")
    ap.add_argument("--settle-s", type=float, default=1.0,
                    help="after the last registration, before counting its messages")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--node-arg", action="append", default=None,
                    help="extra node option, repeatable (default --max-links=64)")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.nodes < 2 or a.regs < 1 or a.idle_s <= 0:
        ap.error("--nodes must be at least 2, --regs at least 1, --idle-s above 0")
    if a.link_timeout is None:
        a.link_timeout = 30 + a.nodes / 10
    if a.node_arg is None:
        a.node_arg = ["--max-links=64"]
    raise_nofile(a.sample + a.poll_batch + a.batch * 3 + 256)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)   # even if inherited ignored
    tmp = tempfile.mkdtemp(prefix="mzscale")
    try:
        res = asyncio.run(run(a, tmp))
    except KeyboardInterrupt:
        print("bench_scale: interrupted; nodes stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
        print(f"bench_scale: {e}", file=sys.stderr)
        return 1
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    report(a, res)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0 if res["complete"] == a.regs else 1


if __name__ == "__main__":
    sys.exit(main())
