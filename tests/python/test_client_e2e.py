"""The client against real node processes on the seed's square (A-B, A-C,
B-D, C-D; no A-D link): Python handlers on D, used from A two hops away,
with the blocking and the asyncio API; every error class from a real
situation; reconnect after D restarts. One square for the module: the last
test kills and restarts D."""
import asyncio
import concurrent.futures
import json
import os
import subprocess
import threading
import time

import pytest

import meshlib
import meshzero
from meshlib import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
LEASE_MS = 3000          # short, so a killed host is given up on in ~2 s
MAX_RUNNING = 4          # calls D runs at once (more: busy)


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("square")
    m = meshlib.Mesh(tmp)
    try:
        a = m.node("A", lease_ms=LEASE_MS)
        b = m.node("B", peers=[a], lease_ms=LEASE_MS)
        c = m.node("C", peers=[a], lease_ms=LEASE_MS)
        # D's API on a unix socket: the same address after a restart.
        d = m.node("D", peers=[b, c], lease_ms=LEASE_MS,
                   extra=["--api", "unix:%s" % (tmp / "d.sock"), "--max-running", str(MAX_RUNNING)])
        meshlib.wait_linked([(a, b), (a, c), (b, d), (c, d)])
        assert d.id not in a.peer_ids()
        yield m, a, b, c, d
    finally:
        problems = m.close()
        print(m.dump())
        if problems:
            pytest.fail("node problems at teardown:\n  " + "\n  ".join(problems), pytrace=False)


def at(mesh, rid, timeout=10.0):
    """Waits until mesh's node has rid in its directory; returns the record."""
    return wait_for(lambda: {r.resource_id: r for r in mesh.query_resources()}.get(rid),
                    timeout, what="%s in the directory" % rid)


def test_seed_snippets_run_as_written(square):
    _, a, _, c, d = square
    env = meshlib.client_env()
    env["PYTHONPATH"] = os.path.join(ROOT, "python")
    p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "python", "examples", "seed.py"),
                        "--a", a.api, "--d", d.api, "--peer", c.listen],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                       env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "D sees: ['agent123']" in p.stdout
    line = [x for x in p.stdout.splitlines() if x.startswith("A executed")][0]
    assert json.loads(line.split(": ", 1)[1]) == {
        "processed": "https://example.com/image.jpg", "by": "python on D", "caller": a.id[:12]}
    assert "A got resource.added: agent456" in p.stdout


def test_blocking_handler_on_d_used_from_a(square):
    _, a, _, _, d = square
    running, peak, lock = [0], [0], threading.Lock()
    gate = threading.Barrier(2, timeout=10)

    def handler(method, params, caller):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            if method == "pair":
                gate.wait()        # returns only when two calls run at once
            return {"method": method, "params": params, "caller": caller}
        finally:
            with lock:
                running[0] -= 1

    with meshzero.connect(d.api) as md, meshzero.connect(a.api, timeout=10) as ma:
        assert ma.node_id == a.id and md.node_id == d.id
        added = []
        got = threading.Event()

        def on_added(ev):
            if ev.data.get("resource_id") == "py.echo":
                added.append(ev)
                got.set()
        sub = ma.subscribe("resource.added", on_added)
        rec = md.register_resource(resource_id="py.echo", resource_type="tool",
                                   capabilities=["echo", "test"], owner="tests",
                                   metadata={"lang": "python"}, handler=handler)
        assert (rec.node, rec.location, rec.version) == (d.id, "local", 1)
        assert got.wait(10)
        assert added[0].source == d.id and added[0].resource().resource_id == "py.echo"
        remote = at(ma, "py.echo")
        assert (remote.node, remote.location, remote.owner, remote.capabilities) == \
            (d.id, "remote", "tests", ("echo", "test"))
        assert remote.metadata["lang"] == "python"
        assert ma.query_resources(resource_type="tool", capabilities=["echo", "test"],
                                  owner="tests", location="remote", limit=5) == [remote]
        assert ma.query_resources(resource_type="tool", location="local") == []
        out = ma.execute_remote(resource_id="py.echo", method="hello", params={"n": 1})
        assert out == {"method": "hello", "params": {"n": 1}, "caller": a.id}
        # two calls at once: each handler waits for the other
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            fs = [ex.submit(ma.execute_remote, resource_id="py.echo", method="pair",
                            params={"i": i}, timeout=10) for i in range(2)]
            assert sorted(f.result()["params"]["i"] for f in fs) == [0, 1]
        assert peak[0] >= 2
        peers = {p.id for p in ma.peers()}
        assert d.id not in peers and len(peers) == 2
        st = ma.status()
        assert st.id == a.id and st.peers == 2 and st.resources_remote >= 1
        sub.unsubscribe()
    # the handler's connection closed: the node unregistered what it served
    with meshzero.connect(a.api) as ma:
        wait_for(lambda: "py.echo" not in {r.resource_id for r in ma.query_resources()}, 10,
                 what="py.echo gone from A")


async def test_asyncio_api_end_to_end(square):
    _, a, _, _, d = square

    async def handler(method, params, caller):
        await asyncio.sleep(0)
        return {"sum": sum(params["xs"]), "caller": caller}

    async with meshzero.AsyncMesh(d.api) as md, meshzero.AsyncMesh(a.api) as ma:
        async with ma.events("resource.*") as stream:
            await md.register_resource(resource_id="py.sum", resource_type="tool",
                                       capabilities=["math"], handler=handler,
                                       methods=["sum"])
            ev = await asyncio.wait_for(stream.__anext__(), 10)
            while ev.data.get("resource_id") != "py.sum":
                ev = await asyncio.wait_for(stream.__anext__(), 10)
            assert ev.topic == "resource.added" and ev.source == d.id
        r = await ma.execute_remote("py.sum", "sum", {"xs": [1, 2, 3]}, timeout=10)
        assert r == {"sum": 6, "caller": a.id}
        room = asyncio.Semaphore(MAX_RUNNING)

        async def one(i):
            async with room:
                return await ma.execute_remote("py.sum", "sum", {"xs": [i, i]})
        results = await asyncio.gather(*(one(i) for i in range(64)))
        assert [x["sum"] for x in results] == [2 * i for i in range(64)]
        # a user event published on D reaches A's async callback
        got = asyncio.get_running_loop().create_future()

        async def on_demo(ev):
            if not got.done():
                got.set_result(ev)
        await ma.subscribe("demo.*", on_demo)
        await md.publish("demo.hello", {"from": "D"})
        ev = await asyncio.wait_for(got, 10)
        assert (ev.topic, ev.data, ev.source) == ("demo.hello", {"from": "D"}, d.id)
        assert (await ma.status()).id == a.id
        await md.unregister_resource("py.sum")
        with pytest.raises(meshzero.NotFound):
            await md.unregister_resource("py.sum")


def test_every_error_class_from_a_real_situation(square):
    _, a, _, _, d = square
    release = threading.Event()
    inside = threading.Semaphore(0)
    stall = threading.Event()

    def handler(method, params, caller):
        if method == "boom":
            raise ValueError("the image is upside down")
        if method == "hold":
            inside.release()
            release.wait(20)
        if method == "stall":
            stall.wait(20)
        return "ok"

    with meshzero.connect(d.api) as md, meshzero.connect(a.api) as ma:
        md.register_resource(resource_id="py.err", resource_type="tool", handler=handler,
                             methods=["boom", "hold", "stall", "ok"])
        md.register_resource(resource_id="py.gated", resource_type="tool", handler=handler,
                             metadata={"requires_agreement": True})
        at(ma, "py.err")
        at(ma, "py.gated")

        with pytest.raises(meshzero.NotFound):
            ma.execute_remote(resource_id="no.such.resource", method="x")
        with pytest.raises(meshzero.BadRequest) as ei:
            ma.execute_remote(resource_id="py.err", method="undeclared")
        assert "undeclared" in ei.value.message
        with pytest.raises(meshzero.HandlerError) as ei:
            ma.execute_remote(resource_id="py.err", method="boom")
        assert ei.value.message == "ValueError: the image is upside down"
        with pytest.raises(meshzero.Denied) as ei:
            ma.execute_remote(resource_id="py.gated", method="x")
        assert ei.value.message.startswith("missing")
        # Busy: D runs at most MAX_RUNNING calls at once
        with concurrent.futures.ThreadPoolExecutor(MAX_RUNNING) as ex:
            fs = [ex.submit(ma.execute_remote, resource_id="py.err", method="hold", timeout=20)
                  for _ in range(MAX_RUNNING)]
            for _ in range(MAX_RUNNING):
                assert inside.acquire(timeout=10)
            with pytest.raises(meshzero.Busy):
                ma.execute_remote(resource_id="py.err", method="ok")
            release.set()
            assert [f.result() for f in fs] == ["ok"] * MAX_RUNNING
        # Timeout: the handler holds longer than the call may take
        t0 = time.monotonic()
        with pytest.raises(meshzero.Timeout) as ei:
            ma.execute_remote(resource_id="py.err", method="stall", timeout=0.5)
        assert isinstance(ei.value, TimeoutError) and time.monotonic() - t0 < 5
        # TooLarge: over A's max_message (1 MiB), refused before it is sent...
        big = {"blob": "x" * (1 << 20)}
        with pytest.raises(meshzero.TooLarge) as ei:
            ma.execute_remote(resource_id="py.err", method="ok", params=big)
        assert ei.value.data["limit"] == ma.status().limits["max_message"]
        assert ma.execute_remote(resource_id="py.err", method="ok") == "ok"
        # ...and by the node itself (too_large naming --max-message) when the client
        # does not know the limit
        with meshzero.connect(a.api) as blind:
            blind.aio.max_message = 1 << 30
            with pytest.raises(meshzero.TooLarge) as ei:
                blind.execute_remote(resource_id="py.err", method="ok", params=big)
            assert "--max-message" in ei.value.message, ei.value.message
        # BadRequest from the API itself
        with pytest.raises(meshzero.BadRequest):
            ma.query_resources(location="nowhere")
        stall.set()


def test_examples_handler_agent_and_event_watcher(square, tmp_path):
    _, a, _, _, d = square
    env = meshlib.client_env()
    env["PYTHONPATH"] = os.path.join(ROOT, "python")
    ex = os.path.join(ROOT, "python", "examples")
    procs = []

    def start(name, *args):
        out = tmp_path / (name + ".out")
        with open(out, "w") as fo:
            procs.append(subprocess.Popen(["/usr/bin/python3", os.path.join(ex, name)] +
                                          list(args), stdin=subprocess.DEVNULL, stdout=fo,
                                          stderr=subprocess.STDOUT, env=env))
        return procs[-1], out
    try:
        agent, agent_out = start("handler_agent.py", "--node", d.api)
        wait_for(lambda: "serving text.tools" in agent_out.read_text(), 15,
                 what="the handler agent serving")
        watcher, watch_out = start("watch_events.py", "--node", a.api, "--count", "1", "demo.*")
        wait_for(lambda: "watching demo.*" in watch_out.read_text(), 15, what="the watcher")
        with meshzero.connect(a.api) as ma:
            at(ma, "text.tools")
            assert ma.execute_remote(resource_id="text.tools", method="upper",
                                     params={"text": "hi"}) == {"text": "HI"}
            with pytest.raises(meshzero.BadRequest):
                ma.execute_remote(resource_id="text.tools", method="upper", params={})
            ma.publish("demo.example", {"n": 1})
        assert watcher.wait(15) == 0
        line = watch_out.read_text().splitlines()[-1]
        assert json.loads(line) == {"topic": "demo.example", "source": a.id, "data": {"n": 1}}
        agent.terminate()
        assert agent.wait(15) == 0, agent_out.read_text()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_reconnect_after_node_restart_unreachable_and_lost(square):
    _, a, _, _, d = square
    events = []
    with meshzero.connect(d.api, reconnect=True) as md, meshzero.connect(a.api) as ma:
        md.register_resource(resource_id="py.phoenix", resource_type="tool",
                             handler=lambda method, params, caller: {"up": True})
        md.subscribe("demo.*", lambda ev: events.append(ev))
        at(ma, "py.phoenix")
        assert ma.execute_remote(resource_id="py.phoenix", method="m") == {"up": True}
        # a call from D's client in flight when D dies: ConnectionLost at once
        hold = threading.Event()
        ma.register_resource(resource_id="py.slow.on.a", resource_type="tool",
                             handler=lambda *x: hold.wait(20) and "late")
        at(md, "py.slow.on.a")
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            f = ex.submit(md.execute_remote, resource_id="py.slow.on.a", method="m",
                          timeout=20)
            wait_for(lambda: ma.status().counters.get("exec_running", 0) >= 1 or f.done(), 10,
                     what="the call running on A")
            d.kill()
            t0 = time.monotonic()
            with pytest.raises(meshzero.ConnectionLost):
                f.result(10)
            assert time.monotonic() - t0 < 3
        hold.set()
        # A still holds D's record, but no path gets a call through
        with pytest.raises(meshzero.Unreachable):
            ma.execute_remote(resource_id="py.phoenix", method="m", timeout=20)
        assert not md.connected
        with pytest.raises(meshzero.ConnectionLost):
            md.status()
        # D comes back (same identity, same socket): the client reconnects and
        # serves py.phoenix again; its subscription works again
        d.start()
        md.wait_connected(15)
        assert md.node_id == d.id
        wait_for(lambda: md.query_resources(resource_type="tool", location="local"), 10,
                 what="py.phoenix registered again on D")

        def works():
            try:
                return ma.execute_remote(resource_id="py.phoenix", method="m", timeout=5)
            except (meshzero.NotFound, meshzero.Unreachable):
                return None
        assert wait_for(works, 20, what="py.phoenix callable from A again") == {"up": True}
        wait_for(lambda: md.peers(), 10, what="D linked again")
        ma.publish("demo.back", 1)
        wait_for(lambda: any(e.topic == "demo.back" for e in events), 10,
                 what="demo.back delivered to D's restored subscription")
