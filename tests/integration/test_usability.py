"""Usability: no silent successes, refusals that say why, the command-line
conventions (version, help, global options, exit codes, one error style,
--json errors, completion). Real nodes on loopback, the real CLI."""
import json
import os
import shutil
import subprocess
import time

import pytest

from execlib import Procs, exec_cli
from meshlib import BIN, client_env, free_port_unlistened, rpc, run, wait_for
from mcplib import CRASHY, ensure_npm_packages


def stays(cond, seconds, what):
    """Polls cond() for SECONDS and fails the moment it is false: for the
    absence of something (a retry) there is nothing else to wait for."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert cond(), what
        time.sleep(0.1)


@pytest.fixture
def procs(tmp_path):
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        for x in p.procs:
            x.terminate()


def counters(node):
    return node.status()["counters"]


# ---- refused links: the reason, exit 1, no retries -------------------------------------

def test_connect_refused_by_network_key_says_why_and_is_not_retried(mesh, tmp_path):
    key = tmp_path / "net.key"
    key.write_text("a shared secret of the private mesh\n")
    k = mesh.node("K", extra=["--network-key", str(key)])
    a = mesh.node("A")
    p = a.cli("connect", k.listen)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == ""
    assert p.stderr.startswith("meshzero connect: %s: refused: the peer requires a network key"
                               % k.listen), p.stderr
    assert k.id not in a.peer_ids()
    n = wait_for(lambda: counters(k)["refused_network"], 5.0, what="K counting the refusal")
    # the explicit connect is forgotten: no re-dial (backoff would be 1-2 s)
    stays(lambda: counters(k)["refused_network"] == n and k.id not in a.peer_ids(), 4.0,
          "A re-dialed a peer that refused it")
    p = a.cli("disconnect", k.id)
    assert p.returncode == 1


def test_connect_refused_by_trust_file_and_pin(mesh, tmp_path):
    trust = tmp_path / "trust.txt"
    trust.write_text("# nobody yet\n")
    t = mesh.node("T", extra=["--trust", str(trust)])
    a = mesh.node("A")
    p = a.cli("connect", t.listen)
    assert p.returncode == 1, p.stderr
    assert "refused by the peer" in p.stderr and "trust file" in p.stderr, p.stderr
    p = a.cli("connect", "--json", t.listen + "/#" + "0" * 64)
    assert p.returncode == 1 and p.stdout == ""
    err = json.loads(p.stderr)["error"]
    assert err["code"] == "refused" and "URL pins node 0000000000000000" in err["message"], err
    n = counters(t)["refused_trust"]
    stays(lambda: counters(t)["refused_trust"] == n, 3.0, "A re-dialed T")
    # trust files take ids in either case, as pins do
    trust.write_text(a.id.upper() + "\n")
    t.proc.send_signal(__import__("signal").SIGHUP)
    wait_for(lambda: "reloaded" in t.stderr(), 10.0, what="T reloading its trust file")
    p = a.cli("connect", t.listen + "/#" + t.id.upper())
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "linked to " + t.id


def test_connection_errors_name_url_and_cause(mesh, tmp_path):
    a = mesh.node("A")
    tok = mesh.node("Tok", extra=["--api-require-token"])
    sock, port = free_port_unlistened()
    try:
        nobody = "ws://127.0.0.1:%d" % port
        cases = [
            (nobody, "no node listening", {}),
            (a.listen, "peer port, not its API port", {}),
            (tok.api, "set MESHZERO_API_TOKEN", {}),
            (tok.api, "refused the token", {"MESHZERO_API_TOKEN": "not-the-token-123"}),
            (a.api.replace("ws://", "wss://"), "use ws://", {}),
            ("unix:" + str(tmp_path / "no.sock"), "no socket at", {}),
        ]
        for url, cause, env in cases:
            e = dict(client_env(), **env)
            p = subprocess.run([BIN, "status", "--node", url], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=30, env=e)
            assert p.returncode == 1, (url, p.stderr)
            assert p.stderr.startswith("meshzero status: "), p.stderr
            assert url.split("?")[0] in p.stderr and cause in p.stderr, (url, p.stderr)
            assert "not-the-token-123" not in p.stderr
        # the right token works, and is never echoed
        token = (tok.data / "api.token").read_text().strip()
        p = subprocess.run([BIN, "status", "--node", tok.api], capture_output=True, text=True,
                           timeout=30, env=dict(client_env(), MESHZERO_API_TOKEN=token))
        assert p.returncode == 0 and token not in p.stdout + p.stderr, p.stderr
        # a node dialing nobody: the URL and the cause
        p = a.cli("connect", nobody, timeout=30)
        assert p.returncode == 1 and nobody in p.stderr and "no node listening" in p.stderr
    finally:
        sock.close()


def test_wss_listener_dialed_with_ws(mesh):
    s = mesh.node("S", extra=["--listen", "wss://127.0.0.1:0"])
    a = mesh.node("A")
    plain = s.listen.replace("wss://", "ws://")
    p = a.cli("connect", plain, timeout=30)
    assert p.returncode == 1 and plain in p.stderr and "wss://" in p.stderr, p.stderr


# ---- serve -----------------------------------------------------------------------------

def test_serve_refuses_a_served_id_unless_replace(mesh, procs):
    a = mesh.node("A")
    first = procs.spawn("first", ["serve", "s1", "--type", "tool", "--method", "m",
                                  "--node", a.api, "--", "cat"])
    first.wait_output("serving s1\n", 15)
    p = run(["serve", "s1", "--type", "tool", "--node", a.api, "--", "cat"])
    assert p.returncode == 1 and "already served" in p.stderr and "--replace" in p.stderr, \
        p.stderr
    assert a.ids()["s1"]["resource_id"] == "s1"
    second = procs.spawn("second", ["serve", "s1", "--type", "tool", "--replace",
                                    "--node", a.api, "--", "cat"])
    second.wait_output("serving s1\n", 15)
    assert first.terminate() == 0
    # the first one's exit does not take the id away from the second
    stays(lambda: "s1" in a.ids(), 1.0, "s1 gone when the replaced serve exited")
    assert second.terminate() == 0
    wait_for(lambda: "s1" not in a.ids(), 5.0, what="s1 unregistered with the second serve")


def test_serve_checks_the_program_at_start(mesh):
    a = mesh.node("A")
    for prog, why in (("/nonexistent/prog", "No such file"),
                      ("no-such-program-xyz", "not found on $PATH")):
        p = run(["serve", "s2", "--type", "tool", "--node", a.api, "--", prog])
        assert p.returncode == 1 and "cannot run " + prog in p.stderr and why in p.stderr, \
            p.stderr
        assert "serving" not in p.stdout
    assert a.ids() == {}


# ---- bridge add / remove ---------------------------------------------------------------

def test_bridge_failed_add_not_retried_remove_and_readd(mesh):
    ensure_npm_packages()
    a = mesh.node("A")
    d = mesh.node("D", peers=[a])
    p = run(["bridge", "add", "bad", "--wait", "10", "--node", d.api, "--",
             "/nonexistent/mcp-server"])
    assert p.returncode == 1 and "cannot start" in p.stderr and "not retried" in p.stderr, \
        p.stderr
    entry = json.loads(d.cli("bridge", "list", "--json").stdout)[0]
    assert entry["state"] == "failed", entry
    stays(lambda: json.loads(d.cli("bridge", "list", "--json").stdout)[0]["restarts"] == 0,
          3.0, "the failed server was restarted")
    # the same name again (now a working server) replaces the failed entry
    p = run(["bridge", "add", "bad", "--node", d.api, "--json", "--", "node", CRASHY])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["state"] == "ready"
    wait_for(lambda: "bad/ok" in a.ids(), 10.0, what="bad/ok on A")
    pid = json.loads(d.cli("bridge", "list", "--json").stdout)[0]["pid"]
    p = d.cli("bridge", "remove", "bad")
    assert p.returncode == 0 and p.stdout.strip() == "removed bad", p.stderr
    wait_for(lambda: not [r for r in a.ids() if r.startswith("bad/")], 10.0,
             what="bad's tools withdrawn from A")
    assert json.loads(d.cli("bridge", "list", "--json").stdout) == []

    def gone():
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True
    wait_for(gone, 10.0, what="the removed server's process to end")
    p = d.cli("bridge", "remove", "bad")
    assert p.returncode == 1 and "no server named bad" in p.stderr
    r = rpc(d.api, "bridge_remove", {"name": "nope"})
    assert r["error"]["code"] == -32000 and "nope" in r["error"]["message"], r


# ---- the local API: unknown parameters, metadata -----------------------------------------

def test_api_unknown_parameters_are_refused_with_a_suggestion(mesh):
    a = mesh.node("A")
    r = rpc(a.api, "register_resource", {"resource_id": "r1", "resource_type": "t",
                                          "capabilites": ["c"]})
    assert r["error"]["code"] == -32602, r
    assert "'capabilites'" in r["error"]["message"]
    assert "did you mean 'capabilities'" in r["error"]["message"], r
    assert a.ids() == {}
    a.register("r1", "t")
    r = rpc(a.api, "query_resources", {"resource_typ": "nothing"})
    assert r["error"]["code"] == -32602 and "'resource_type'" in r["error"]["message"], r
    r = rpc(a.api, "status", {"verbose": True})
    assert r["error"]["code"] == -32602 and "no parameters" in r["error"]["message"], r
    assert "result" in rpc(a.api, "query_resources", {"resource_type": "t"})


def test_metadata_kept_as_given(mesh):
    a = mesh.node("A")
    rec = a.register("r1", "t")
    assert "version" not in rec["metadata"], rec     # nothing invented
    assert rec["metadata"]["last_updated"].endswith("Z")
    rec = a.register("r2", "t", meta={"version": "2.1",
                                      "last_updated": "2026-01-02T03:04:05.000Z"})
    assert rec["metadata"]["version"] == "2.1"
    assert rec["metadata"]["last_updated"] == "2026-01-02T03:04:05.000Z"


# ---- files the CLI writes ----------------------------------------------------------------

def test_agreement_create_does_not_overwrite_without_force(mesh, tmp_path):
    a = mesh.node("A")
    key = tmp_path / "owner.key"
    assert run(["keygen", "--out", str(key)]).returncode == 0
    out = tmp_path / "a.agr"
    args = ["agreement", "create", "--provider-key", str(key), "--consumer", a.id,
            "--resource", "r1", "--method", "m", "--out", str(out)]
    assert run(args).returncode == 0
    before = out.read_text()
    p = run(args)
    assert p.returncode == 1 and "--force" in p.stderr, p.stderr
    assert out.read_text() == before
    p = run(args + ["--force"])
    assert p.returncode == 0 and out.read_text() != before, p.stderr


# ---- execute over the message limit ------------------------------------------------------

def test_exec_params_over_the_limit_refused_at_the_caller(mesh):
    a = mesh.node("A", max_message=65536)
    b = mesh.node("B", peers=[a], max_message=65536)
    b.register("far", "t")
    wait_for(lambda: "far" in a.ids(), 10.0, what="far on A")
    out = exec_cli(a, "far", "m", {"blob": "x" * 60000}, json_out=True)
    assert out.rc == 1 and out.code == "too_large", out
    assert "--max-message 65536" in out.message, out
    assert a.status()["peers"] == 1      # the link was not dropped by an oversize frame


# ---- command-line conventions --------------------------------------------------------------

def test_version():
    for args in (["--version"], ["version"]):
        p = run(args)
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("meshzero ") and "commit " in p.stdout
        assert "protocol meshzero/1" in p.stdout
    v = json.loads(run(["version", "--json"]).stdout)
    assert set(v) == {"version", "commit", "protocol"} and v["protocol"] == "meshzero/1"
    assert v["version"].count(".") == 2


ALL_HELP = ["node", "id", "keygen", "register", "unregister", "query", "peers", "connect",
            "disconnect", "status", "exec", "subscribe", "publish", "serve", "mcp",
            "version", "completion", "agreement create", "agreement sign", "agreement show",
            "agreement usage", "bridge add", "bridge list", "bridge remove"]


@pytest.mark.parametrize("cmd", ALL_HELP)
def test_help_has_defaults_and_examples(cmd):
    words = cmd.split()
    p = run(words + ["--help"])
    assert p.returncode == 0 and p.stdout.startswith("usage: meshzero " + cmd), p.stdout
    assert "examples:\n  meshzero " + words[0] in p.stdout, p.stdout
    if cmd not in ("version", "completion", "keygen", "peers", "status", "agreement show",
                   "bridge list", "bridge remove", "disconnect", "connect"):
        assert "default" in p.stdout, p.stdout
    h = run(["help"] + words)
    assert h.returncode == 0 and h.stdout == p.stdout


def test_query_help_describes_filters():
    out = run(["query", "--help"]).stdout
    for f in ("--type", "--cap", "--owner", "--location", "--limit"):
        assert f in out
    assert "ALL of them" in out and "every filter" in out


def test_global_options_before_the_command(mesh):
    a = mesh.node("A")
    p = run(["--node", a.api, "status"])
    assert p.returncode == 0 and a.id in p.stdout, p.stderr
    p = run(["--json", "--node", a.api, "status"])
    assert p.returncode == 0 and json.loads(p.stdout)["id"] == a.id
    p = run(["--node=" + a.api, "--json", "peers"])
    assert p.returncode == 0 and json.loads(p.stdout) == []
    p = run(["--bogus", "status"])
    assert p.returncode == 2 and "--bogus" in p.stderr


def test_usage_errors_exit_2_with_one_line_usage(mesh):
    a = mesh.node("A")
    cases = [
        (["query", "--bogus"], "meshzero query: unknown option '--bogus'"),
        (["register", "r1", "--typ3", "x"], "did you mean --type"),
        (["status", "--node", "http://127.0.0.1:1"], "not a node API URL"),
        (["connect", "http://127.0.0.1:1", "--node", a.api], "not a peer URL"),
        (["exec", "r", "m", "[1, 2]", "--node", a.api], "must be a JSON object"),
        (["exec", "r", "m", "{bad", "--node", a.api], "is not JSON"),
        (["subscribe", "bad topic!", "--node", a.api], "is not a topic"),
        (["publish", "", "--node", a.api], "is not a topic"),
        (["bridge", "ad", "x"], "did you mean add"),
        (["agreement"], "need a subcommand"),
        (["frobnicate"], "unknown command"),
    ]
    for args, text in cases:
        p = run(args)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert text in p.stderr, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) <= 3, (args, p.stderr)       # not the whole help
        assert "--help" in lines[-1], (args, p.stderr)
        assert p.stdout == "", (args, p.stdout)


def test_one_error_prefix_and_json_errors(mesh):
    sock, port = free_port_unlistened()
    try:
        url = "ws://127.0.0.1:%d" % port
        for cmd in (["status"], ["peers"], ["query"], ["register", "r", "--type", "t"],
                    ["unregister", "r"], ["connect", "ws://127.0.0.1:1"],
                    ["disconnect", "0" * 64], ["publish", "t.x"], ["subscribe", "t.x"],
                    ["bridge", "list"], ["bridge", "remove", "x"], ["agreement", "usage", "x"]):
            p = run(cmd + ["--node", url])
            assert p.returncode == 1, (cmd, p.stderr)
            assert p.stderr.startswith("meshzero %s: " % " ".join(
                cmd[:2] if cmd[0] in ("bridge", "agreement") else cmd[:1])), (cmd, p.stderr)
            p = run(cmd + ["--node", url, "--json"])
            assert p.returncode == 1 and p.stdout == "", (cmd, p.stdout)
            err = json.loads(p.stderr)["error"]
            assert err["code"] == "unreachable" and url in err["message"], (cmd, err)
        # usage errors too, with --json
        p = run(["query", "--bogus", "--json"])
        assert p.returncode == 2 and json.loads(p.stderr)["error"]["code"] == "usage"
    finally:
        sock.close()


def test_status_text_shows_limits(mesh):
    a = mesh.node("A", max_message=65536)
    out = a.cli("status").stdout
    limits = [ln for ln in out.splitlines() if ln.startswith("limits")]
    assert limits, out
    text = out[out.index("limits"):]
    for k in ("max_message=65536", "max_hops=16", "lease_ms=", "max_peers=", "max_running="):
        assert k in text, out


def test_completion_scripts(tmp_path):
    p = run(["completion", "bash"])
    assert p.returncode == 0 and "complete -F _meshzero meshzero" in p.stdout
    for c in ("register", "bridge", "completion"):
        assert c in p.stdout
    script = tmp_path / "c.bash"
    script.write_text(p.stdout)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # it completes a command's options from its --help
    probe = ("source %s; COMP_WORDS=(meshzero query --ty); COMP_CWORD=2; _meshzero; "
             "echo ${COMPREPLY[@]}" % script)
    env = dict(client_env(), PATH=os.path.dirname(BIN) + os.pathsep + os.environ["PATH"])
    r = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, env=env,
                       timeout=30)
    assert r.stdout.split() == ["--type"], (r.stdout, r.stderr)
    z = run(["completion", "zsh"])
    assert z.returncode == 0 and z.stdout.startswith("#compdef meshzero")
    if shutil.which("zsh"):
        zs = tmp_path / "_meshzero"
        zs.write_text(z.stdout)
        assert subprocess.run(["zsh", "-n", str(zs)]).returncode == 0
    assert run(["completion", "fish"]).returncode == 2
