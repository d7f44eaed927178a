"""The meshzero command line: help, usage errors, failures, --json output."""
import json
import os
import stat
import subprocess

import pytest

from meshlib import BIN, HEX64_RE, client_env, free_port_unlistened, run, wait_for

COMMANDS = ["node", "id", "register", "unregister", "query", "peers", "connect", "status"]
CLIENT_COMMANDS = {
    "register": ["register", "r1", "--type", "t"],
    "unregister": ["unregister", "r1"],
    "query": ["query"],
    "peers": ["peers"],
    "connect": ["connect", "ws://127.0.0.1:9"],
    "status": ["status"],
}


def test_main_help():
    for args in (["--help"], ["-h"]):
        p = run(args)
        assert p.returncode == 0, p.stderr
        assert "usage: meshzero" in p.stdout
        for c in COMMANDS:
            assert c in p.stdout


@pytest.mark.parametrize("cmd", COMMANDS)
def test_command_help(cmd):
    p = run([cmd, "--help"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: meshzero " + cmd), p.stdout


def test_unknown_command():
    p = run(["frobnicate"])
    assert p.returncode == 2
    assert p.stderr.strip(), "no message on stderr"
    assert p.stdout == ""


def test_no_command():
    p = run([])
    assert p.returncode == 2
    assert p.stderr.strip()


def test_usage_errors():
    sock, port = free_port_unlistened()
    try:
        url = "ws://127.0.0.1:%d" % port
        for args in (["register", "r1", "--node", url],               # no --type
                     ["register", "--type", "t", "--node", url],      # no ID
                     ["query", "--bogus", "--node", url],
                     ["query", "--location", "mars", "--node", url],
                     ["query", "--limit", "many", "--node", url],
                     ["unregister", "--node", url],
                     ["status", "--node"],
                     ["node", "--lease-ms", "soon"]):
            p = run(args)
            assert p.returncode == 2, "meshzero %s: rc %d, stderr %r" % (args, p.returncode, p.stderr)
            assert p.stderr.strip(), args
    finally:
        sock.close()


@pytest.mark.parametrize("cmd", sorted(CLIENT_COMMANDS))
def test_client_no_node(cmd):
    sock, port = free_port_unlistened()
    try:
        url = "ws://127.0.0.1:%d" % port
        p = run(CLIENT_COMMANDS[cmd] + ["--node", url])
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert p.stderr.strip(), "no message on stderr"
        assert p.stdout == ""
    finally:
        sock.close()


def test_id_stable_and_key_private(tmp_path):
    d = tmp_path / "data"
    # a directory without a key is refused unless --create (a typo is not a new node)
    p0 = run(["id", "--data", str(d)])
    assert p0.returncode == 1 and "--create" in p0.stderr and not d.exists(), p0.stderr
    p1 = run(["id", "--data", str(d), "--create"])
    assert p1.returncode == 0, p1.stderr
    node_id = p1.stdout.strip()
    assert HEX64_RE.match(node_id), p1.stdout
    key = d / "identity.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    p2 = run(["id", "--data", str(d)])
    assert p2.returncode == 0 and p2.stdout.strip() == node_id
    p3 = run(["id", "--data", str(d), "--json"])
    assert p3.returncode == 0 and json.loads(p3.stdout) == {"id": node_id}
    # a different directory, a different id
    p4 = run(["id", "--data", str(tmp_path / "other"), "--create"])
    assert p4.returncode == 0 and HEX64_RE.match(p4.stdout.strip())
    assert p4.stdout.strip() != node_id


def test_node_uses_data_dir_identity(mesh):
    a = mesh.node("A")
    p = run(["id", "--data", str(a.data)])
    assert p.returncode == 0 and p.stdout.strip() == a.id


def start_second(args):
    p = subprocess.run([BIN, "node"] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=15, env=client_env())
    return p


def test_listen_address_in_use(mesh, tmp_path):
    a = mesh.node("A")
    p = start_second(["--listen", a.listen, "--api", "ws://127.0.0.1:0",
                      "--data", str(tmp_path / "second")])
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert a.listen in p.stderr, p.stderr
    assert p.stdout == ""
    assert a.status()["id"] == a.id


def test_api_address_in_use(mesh, tmp_path):
    a = mesh.node("A")
    p = start_second(["--listen", "ws://127.0.0.1:0", "--api", a.api,
                      "--data", str(tmp_path / "second")])
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert a.api in p.stderr, p.stderr
    assert a.status()["id"] == a.id


def test_node_json_banner(mesh, tmp_path):
    out = tmp_path / "b.out"
    with open(out, "wb") as f, open(tmp_path / "b.err", "wb") as e:
        proc = subprocess.Popen([BIN, "node", "--listen", "ws://127.0.0.1:0", "--api",
                                 "ws://127.0.0.1:0", "--data", str(tmp_path / "b"), "--json"],
                                stdin=subprocess.DEVNULL, stdout=f, stderr=e, env=client_env())
    try:
        line = wait_for(lambda: (lambda t: t.split("\n")[0] if "\n" in t else None)(
            out.read_text()), 15, what="JSON banner")
        info = json.loads(line)
        assert set(info) == {"id", "listen", "api"}
        assert HEX64_RE.match(info["id"])
        p = run(["status", "--json", "--node", info["api"]])
        assert p.returncode == 0 and json.loads(p.stdout)["id"] == info["id"]
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_json_outputs(mesh):
    a = mesh.node("A")
    b = mesh.node("B")

    p = a.cli("connect", b.listen, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"peer": b.id}

    rec = json.loads(a.cli("register", "r1", "--type", "tool", "--cap", "c1", "--cap", "c2",
                           "--meta", "version=1.0", "--meta", 'n={"k":[1,2]}',
                           "--meta", "flag=true", "--owner", "me", "--json").stdout)
    assert rec["resource_id"] == "r1" and rec["resource_type"] == "tool"
    assert rec["node"] == a.id and rec["owner"] == "me" and rec["version"] == 1
    assert sorted(rec["capabilities"]) == ["c1", "c2"]
    assert rec["metadata"]["version"] == "1.0"
    assert rec["metadata"]["n"] == {"k": [1, 2]}
    assert rec["metadata"]["flag"] is True
    assert "last_updated" in rec["metadata"]
    assert len(rec["signature"]) == 128

    again = json.loads(a.cli("register", "r1", "--type", "tool", "--json").stdout)
    assert again["version"] == 2

    q = json.loads(a.cli("query", "--json").stdout)
    assert isinstance(q, list) and [r["resource_id"] for r in q] == ["r1"]
    assert q[0]["location"] == "local"
    for k in ("resource_id", "resource_type", "location", "owner", "capabilities", "metadata",
              "node", "version", "signature"):
        assert k in q[0], k
    assert json.loads(a.cli("query", "--type", "nope", "--json").stdout) == []

    peers = json.loads(a.cli("peers", "--json").stdout)
    assert isinstance(peers, list) and len(peers) == 1
    pe = peers[0]
    for k in ("id", "listen", "addr", "direction", "url", "since"):
        assert k in pe, k
    assert pe["id"] == b.id and pe["direction"] == "out" and pe["listen"] == b.listen

    st = json.loads(a.cli("status", "--json").stdout)
    assert st["id"] == a.id and st["listen"] == a.listen and st["api"] == a.api
    assert st["peers"] == 1 and st["resources"]["local"] == 1
    for k in ("messages_handled", "malformed", "forged", "oversize_closes", "api_calls"):
        assert isinstance(st["counters"][k], int), k

    un = a.cli("unregister", "r1", "--json")
    assert un.returncode == 0, un.stderr
    json.loads(un.stdout)
    assert json.loads(a.cli("query", "--json").stdout) == []

    # removing what is not there is a failure
    p = a.cli("unregister", "r1")
    assert p.returncode == 1 and p.stderr.strip()


def test_plain_outputs(mesh):
    a = mesh.node("A")
    b = mesh.node("B")
    p = a.cli("connect", b.listen)
    assert p.returncode == 0 and p.stdout.strip() == "linked to " + b.id
    p = a.cli("register", "agent123", "--type", "agent", "--cap", "image_processing")
    assert p.returncode == 0, p.stderr
    p = a.cli("query", "--type", "agent")
    assert p.returncode == 0 and "agent123" in p.stdout
    p = a.cli("peers")
    assert p.returncode == 0 and b.id[:12] in p.stdout
    p = a.cli("status")
    assert p.returncode == 0 and a.id in p.stdout


def test_connect_to_nobody_fails(mesh):
    a = mesh.node("A")
    sock, port = free_port_unlistened()
    try:
        p = a.cli("connect", "ws://127.0.0.1:%d" % port, timeout=30)
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        assert p.stderr.strip()
    finally:
        sock.close()
    assert a.status()["id"] == a.id
