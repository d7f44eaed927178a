"""meshzero node --config FILE: options from a JSON file, the command line
overriding it, and every kind of bad file refused with exit 2 and a message
naming the file and the key."""
import json

import pytest

from meshlib import Node, free_port_unlistened, linked, run, wait_for


class ConfigNode(Node):
    """A node started with exactly the given arguments (no --listen/--api
    defaults: those come from the config file under test)."""

    def command(self):
        from meshlib import BIN
        return [BIN, "node"] + self.args


def config_node(mesh, name, cfg, extra=()):
    path = mesh.tmp / (name + ".json")
    path.write_text(json.dumps(cfg) if not isinstance(cfg, str) else cfg)
    n = ConfigNode(mesh, name, ["--config", str(path)] + list(extra))
    mesh.nodes.append(n)
    return n.start()


def free_port():
    sock, port = free_port_unlistened()
    sock.close()
    return port


def test_node_from_config_file(mesh):
    a = mesh.node("a")
    port = free_port()
    b = config_node(mesh, "b", {
        "listen": "ws://127.0.0.1:%d" % port,
        "api": "ws://127.0.0.1:0",
        "data": str(mesh.tmp / "data-b"),
        "peer": [a.listen],
        "min-links": 1,
        "max-message": 1048576,
        "log": "info",
        "no-seal": False,
    })
    # It listens where the file says and links to the peer the file names.
    assert b.listen == "ws://127.0.0.1:%d" % port
    wait_for(lambda: linked(a, b), 10.0, what="link a-b from the config file")
    assert b.status()["limits"]["max_message"] == 1048576


def test_command_line_overrides_file(mesh):
    a = mesh.node("a")
    c = mesh.node("c")
    port = free_port()
    d = config_node(mesh, "d", {
        "listen": "ws://127.0.0.1:%d" % port,
        "api": "ws://127.0.0.1:0",
        "data": str(mesh.tmp / "data-d"),
        "peer": [a.listen],
        "max-message": 1048576,
    }, extra=["--listen", "ws://127.0.0.1:0", "--peer", c.listen, "--max-message", "65536"])
    # --listen replaced the file's port; --peer replaced the file's peer list.
    assert d.listen != "ws://127.0.0.1:%d" % port
    wait_for(lambda: linked(c, d), 10.0, what="link c-d from the command line")
    assert a.id not in d.peer_ids()
    assert d.status()["limits"]["max_message"] == 65536


BAD = [
    # (name, file text, fragments the message must contain)
    ("unknown-key", '{"listen": "ws://127.0.0.1:0", "lisen": "x"}', ['"lisen"', "unknown"]),
    ("wrong-type", '{"min-links": "two"}', ['"min-links"', "integer"]),
    ("wrong-element", '{"peer": ["ws://127.0.0.1:1", 7]}', ['"peer[1]"', "string"]),
    ("out-of-range", '{"max-hops": -3}', ['"max-hops"', "out of range"]),
    ("bad-flag", '{"no-seal": "yes"}', ['"no-seal"', "true or false"]),
    ("bad-value", '{"log": "loud"}', ['"log"', "debug, info, warn or error"]),
    ("bad-json", '{"listen": "ws://127.0.0.1:0",\n  "peer": [}', ["not valid JSON", "line 2"]),
    ("not-object", '["--listen", "x"]', ["JSON object"]),
]


@pytest.mark.parametrize("name,text,frags", BAD, ids=[b[0] for b in BAD])
def test_bad_config(tmp_path, name, text, frags):
    path = tmp_path / (name + ".json")
    path.write_text(text)
    p = run(["node", "--config", str(path), "--data", str(tmp_path / "d")])
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stdout == ""
    assert str(path) in p.stderr, p.stderr
    for f in frags:
        assert f in p.stderr, (f, p.stderr)


def test_missing_and_unreadable(tmp_path):
    for path, why in ((tmp_path / "nope.json", "No such file"), (tmp_path, "Is a directory")):
        p = run(["node", "--config", str(path)])
        assert p.returncode == 2, (p.returncode, p.stderr)
        assert str(path) in p.stderr and why in p.stderr, p.stderr


def test_too_large(tmp_path):
    path = tmp_path / "big.json"
    path.write_text('{"listen": "ws://127.0.0.1:0"}' + " " * (1024 * 1024))
    p = run(["node", "--config", str(path)])
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert str(path) in p.stderr and "limit" in p.stderr, p.stderr


def test_config_twice_and_help(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{}")
    p = run(["node", "--config", str(path), "--config", str(path)])
    assert p.returncode == 2 and "more than once" in p.stderr, p.stderr
    p = run(["node", "--help"])
    assert p.returncode == 0 and "--config FILE" in p.stdout
