"""Local API access control and the outbound link limit:
a unix-socket API listener guarded by its file mode, the API token
(required on non-loopback listeners; forced here with --api-require-token,
since tests stay on loopback), and --max-peers-out."""
import asyncio
import json
import os
import stat

import websockets

from meshlib import client_env, run, wait_for, BIN  # noqa: F401


def counters(node):
    p = run(["status", "--json", "--node", node.api])
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["counters"]


def test_unix_socket_api(mesh, tmp_path):
    sock = str(tmp_path / "api.sock")
    a = mesh.node("A", extra=["--api", "unix:" + sock])
    assert a.api == "unix:" + sock
    mode = os.stat(sock).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)
    p = run(["register", "viaunix", "--type", "tool", "--node", a.api])
    assert p.returncode == 0, p.stderr
    p = run(["query", "--json", "--node", a.api])
    assert p.returncode == 0, p.stderr
    assert [r["resource_id"] for r in json.loads(p.stdout)] == ["viaunix"]

    async def raw():
        async with websockets.unix_connect(sock, "ws://localhost/") as ws:
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "status"}))
            return json.loads(await asyncio.wait_for(ws.recv(), 5))
    res = asyncio.run(raw())
    assert res["result"]["id"] == a.id


def test_unix_socket_in_use_is_refused(mesh, tmp_path):
    sock = str(tmp_path / "api.sock")
    mesh.node("A", extra=["--api", "unix:" + sock])
    p = run(["node", "--listen", "ws://127.0.0.1:0", "--api", "unix:" + sock,
             "--data", str(tmp_path / "other")], timeout=20)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert sock in p.stderr and "another node" in p.stderr, p.stderr


def test_api_token_required(mesh):
    a = mesh.node("A", extra=["--api-require-token"])
    token_file = a.data / "api.token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) == 64
    p = run(["status", "--node", a.api])
    assert p.returncode == 1 and "cannot reach the node API" in p.stderr, (p.returncode,
                                                                          p.stderr)
    p = run(["status", "--json", "--node", a.api + "/?token=" + token])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["counters"]["api_refused"] >= 1
    env = client_env()
    env["MESHZERO_API_TOKEN"] = token
    import subprocess
    p = subprocess.run([BIN, "status", "--node", a.api], env=env, capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 0, p.stderr

    async def wrong():
        try:
            async with websockets.connect(a.api + "/?token=" + "0" * 64) as ws:
                await ws.recv()
        except (websockets.InvalidStatusCode, websockets.InvalidHandshake,
                websockets.ConnectionClosed, OSError):
            return True
        return False
    assert asyncio.run(wrong())


def test_outbound_link_limit(mesh):
    b = mesh.node("B")
    c = mesh.node("C")
    a = mesh.node("A", peers=[b, c], extra=["--max-peers-out", "1"])
    wait_for(lambda: b.id in a.peer_ids() or c.id in a.peer_ids(), 10.0, what="A's one link")
    wait_for(lambda: "outbound links (the limit)" in a.stderr(), 10.0,
             what="A logging the outbound limit")
    assert len(a.peer_ids()) == 1
