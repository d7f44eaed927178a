#!/usr/bin/python3
"""execute_remote from the Python client (python/meshzero), the workload of
bench_exec drive: a node linked to HOST_URL (bench_exec host, C echo
handler), the 200-byte params, one call in flight for p50/p99, then K in
flight (asyncio) for calls/s. The path is Python -> the node's local API ->
1 hop -> the host.

usage: bench_python.py MESHZERO_BIN HOST_URL [--json] [--calls N] [--inflight K] [--seconds S]
"""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import meshzero  # noqa: E402

# bench/benchlib.h BENCH_PAYLOAD, the same 200 bytes
PAYLOAD = json.loads('{"text":"the quick brown fox jumps over the lazy dog; the quick brown fox '
                     'jumps over the lazy dog; the quick brown fox jumps over the lazy dog; '
                     'the quick brown fox jumps over","n":42}')
START_TIMEOUT = 10.0


def pct(sorted_us, p):
    return sorted_us[min(len(sorted_us) - 1, (len(sorted_us) * p) // 100)]


async def measure_async(api, calls, inflight, seconds):
    async with meshzero.AsyncMesh(api) as mesh:
        deadline = time.monotonic() + START_TIMEOUT
        while not await mesh.query_resources(capabilities=["echo"]):
            if time.monotonic() > deadline:
                raise SystemExit("bench_python: 'echo' never reached the node")
            await asyncio.sleep(0.02)
        for _ in range(50):                                   # warm-up
            await mesh.execute_remote("echo", "echo", PAYLOAD)
        lat = []
        for _ in range(calls):
            t = time.perf_counter()
            r = await mesh.execute_remote("echo", "echo", PAYLOAD)
            lat.append((time.perf_counter() - t) * 1e6)
        assert r == PAYLOAD
        lat.sort()
        done = 0
        end = time.monotonic() + seconds

        async def worker():
            nonlocal done
            while time.monotonic() < end:
                await mesh.execute_remote("echo", "echo", PAYLOAD)
                done += 1
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        tput = done / (time.perf_counter() - t0)
    return {"p50_us": pct(lat, 50), "p99_us": pct(lat, 99), "calls_per_s": tput}


def measure_blocking(api, calls):
    with meshzero.connect(api) as mesh:
        lat = []
        for _ in range(calls):
            t = time.perf_counter()
            mesh.execute_remote(resource_id="echo", method="echo", params=PAYLOAD)
            lat.append((time.perf_counter() - t) * 1e6)
    lat.sort()
    return {"p50_us": pct(lat, 50), "p99_us": pct(lat, 99)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("host_url")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "node.out")
        with open(out, "w") as fo, open(os.path.join(tmp, "node.err"), "w") as fe:
            node = subprocess.Popen([a.bin, "node", "--listen", "ws://127.0.0.1:0", "--api",
                                     "ws://127.0.0.1:0", "--data", os.path.join(tmp, "d"),
                                     "--peer", a.host_url], stdin=subprocess.DEVNULL,
                                    stdout=fo, stderr=fe)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                text = open(out).read()
                if "\n" in text:
                    break
                if node.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("bench_python: the node did not start")
                time.sleep(0.02)
            api = text.split()[5]
            res = {"async": asyncio.run(measure_async(api, a.calls, a.inflight, a.seconds)),
                   "blocking": measure_blocking(api, a.calls // 2), "inflight": a.inflight}
        finally:
            node.terminate()
            node.wait(10)
    if a.json:
        print(json.dumps(res))
    else:
        r = res["async"]
        print("asyncio p50 %.1f us  p99 %.1f us  %d in flight: %.0f calls/s; blocking p50 %.1f us"
              % (r["p50_us"], r["p99_us"], a.inflight, r["calls_per_s"],
                 res["blocking"]["p50_us"]))


if __name__ == "__main__":
    main()
