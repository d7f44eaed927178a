"""meshzero agreement create|sign|show: the CLI round trip, checked against an
independent implementation of docs/AGREEMENTS.md (PyNaCl + mzproto's
canonical form), exec --agreement's local checks, and `agreement usage` against
a host that counted real calls."""
import json
import os
import re

import nacl.signing
import pytest

import mzproto
from execlib import build_pair, handler, wait_known
from execlib import procs  # noqa: F401 -- a fixture
from meshlib import free_port_unlistened, run

DOMAIN = b"meshzero/1 agreement"
PROVIDER_UNSIGNED = ("provider_signature", "consumer_signature")
CONSUMER_UNSIGNED = ("consumer_signature",)
FIELDS = ["agreement_id", "provider", "consumer", "resource_id", "methods", "limits",
          "not_before", "expires_at", "provider_signature"]


def write_key(path, seed=None):
    """A key file as `meshzero keygen` writes it: the seed in hex, mode 0600."""
    sk = nacl.signing.SigningKey(seed) if seed else nacl.signing.SigningKey.generate()
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(bytes(sk).hex() + "\n")
    return sk


def node_key(data_dir):
    """Makes a data directory's identity (meshzero id) and returns its key."""
    p = run(["id", "--data", str(data_dir), "--create"])
    assert p.returncode == 0, p.stderr
    with open(os.path.join(str(data_dir), "identity.key")) as f:
        sk = nacl.signing.SigningKey(bytes.fromhex(f.read().strip()))
    assert sk.verify_key.encode().hex() == p.stdout.strip()
    return sk


def verifies(doc, who, field, unsigned):
    try:
        vk = nacl.signing.VerifyKey(bytes.fromhex(doc[who]))
        vk.verify(mzproto.signed_bytes(DOMAIN, doc, unsigned), bytes.fromhex(doc[field]))
        return True
    except Exception:   # noqa: BLE001 - any failure means "does not verify"
        return False


def show_json(path):
    p = run(["agreement", "show", str(path), "--json"])
    return p, (json.loads(p.stdout) if p.stdout.strip() else None)


@pytest.fixture
def parties(tmp_path):
    """A provider key file and a consumer data directory."""
    prov = write_key(tmp_path / "owner.key")
    cons = node_key(tmp_path / "consumer")
    return {"key": str(tmp_path / "owner.key"), "prov": prov,
            "data": str(tmp_path / "consumer"), "cons": cons,
            "cons_id": cons.verify_key.encode().hex(), "dir": tmp_path}


def create(parties, out, *extra):
    return run(["agreement", "create", "--provider-key", parties["key"],
                "--consumer", parties["cons_id"], "--resource", "agent123",
                "--method", "process_image", "--method", "describe",
                "--out", str(out)] + list(extra))


def test_round_trip(parties):
    d = parties["dir"]
    p = create(parties, d / "a.json", "--per-day", "100", "--total", "1000",
               "--not-before", "2026-03-01T00:00:00Z", "--expires", "2099-01-01T00:00:00Z",
               "--id", "deal-1")
    assert p.returncode == 0, p.stderr
    assert "deal-1" in p.stdout
    doc = json.loads((d / "a.json").read_text())
    assert list(doc) == FIELDS                      # documented order, no consumer signature
    assert doc["agreement_id"] == "deal-1"
    assert doc["provider"] == parties["prov"].verify_key.encode().hex()
    assert doc["consumer"] == parties["cons_id"]
    assert doc["resource_id"] == "agent123"
    assert doc["methods"] == ["process_image", "describe"]
    assert doc["limits"] == {"requests_per_day": 100, "requests_total": 1000}
    assert doc["not_before"] == "2026-03-01T00:00:00.000Z"
    assert doc["expires_at"] == "2099-01-01T00:00:00.000Z"
    assert verifies(doc, "provider", "provider_signature", PROVIDER_UNSIGNED)

    p, shown = show_json(d / "a.json")
    assert p.returncode == 0, p.stderr
    assert shown["provider_signature"] == "valid"
    assert shown["consumer_signature"] == "missing"
    assert shown["window"] == "active"
    assert shown["agreement"] == doc

    # The consumer counter-signs in place.
    p = run(["agreement", "sign", "--data", parties["data"], "--in", str(d / "a.json"),
             "--out", str(d / "a.json"), "--json"])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"agreement_id": "deal-1", "out": str(d / "a.json")}
    signed = json.loads((d / "a.json").read_text())
    assert list(signed) == FIELDS + ["consumer_signature"]
    assert {k: v for k, v in signed.items() if k != "consumer_signature"} == doc
    assert verifies(signed, "provider", "provider_signature", PROVIDER_UNSIGNED)
    assert verifies(signed, "consumer", "consumer_signature", CONSUMER_UNSIGNED)
    # The consumer's signature covers the provider's.
    other = dict(signed, provider_signature="0" * 128)
    assert not verifies(other, "consumer", "consumer_signature", CONSUMER_UNSIGNED)

    p, shown = show_json(d / "a.json")
    assert p.returncode == 0, p.stderr
    assert (shown["provider_signature"], shown["consumer_signature"]) == ("valid", "valid")

    p = run(["agreement", "show", str(d / "a.json")])
    assert p.returncode == 0, p.stderr
    for line in ("deal-1", "agent123", "process_image, describe", "requests_per_day=100",
                 "requests_total=1000", "window              active",
                 "provider_signature  valid", "consumer_signature  valid"):
        assert line in p.stdout, (line, p.stdout)


def test_sign_with_key_file_and_dir(parties):
    d = parties["dir"]
    assert create(parties, d / "a.json").returncode == 0
    for i, key in enumerate((parties["data"], os.path.join(parties["data"], "identity.key"))):
        out = d / ("s%d.json" % i)
        p = run(["agreement", "sign", "--key", key, "--in", str(d / "a.json"),
                 "--out", str(out)])
        assert p.returncode == 0, p.stderr
        assert verifies(json.loads(out.read_text()), "consumer", "consumer_signature",
                        CONSUMER_UNSIGNED)
    # Standard input and output.
    p = run(["agreement", "sign", "--data", parties["data"], "--in", "-", "--out", "-"])
    assert p.returncode == 1        # stdin is /dev/null: no document
    assert p.stderr.strip()


def test_python_made_agreement(parties):
    """An agreement made only from the document description verifies."""
    d = parties["dir"]
    doc = {"agreement_id": "py:1", "provider": parties["prov"].verify_key.encode().hex(),
           "consumer": parties["cons_id"], "resource_id": "agent123",
           "methods": ["process_image"], "limits": {"requests_total": 5},
           "not_before": "2026-01-01T00:00:00Z", "expires_at": "2099-01-01T00:00:00+02:00"}
    doc["provider_signature"] = parties["prov"].sign(
        mzproto.signed_bytes(DOMAIN, doc, PROVIDER_UNSIGNED)).signature.hex()
    doc["consumer_signature"] = parties["cons"].sign(
        mzproto.signed_bytes(DOMAIN, doc, CONSUMER_UNSIGNED)).signature.hex()
    (d / "py.json").write_text(json.dumps(doc))
    p, shown = show_json(d / "py.json")
    assert p.returncode == 0, p.stderr
    assert (shown["provider_signature"], shown["consumer_signature"]) == ("valid", "valid")


def test_tampered(parties):
    d = parties["dir"]
    assert create(parties, d / "a.json").returncode == 0
    assert run(["agreement", "sign", "--data", parties["data"], "--in", str(d / "a.json"),
                "--out", str(d / "a.json")]).returncode == 0
    doc = json.loads((d / "a.json").read_text())

    raised = dict(doc, limits={"requests_total": 10 ** 9})
    (d / "t.json").write_text(json.dumps(raised))
    p, shown = show_json(d / "t.json")
    assert p.returncode == 1
    assert "does not verify" in p.stderr
    assert (shown["provider_signature"], shown["consumer_signature"]) == ("invalid", "invalid")

    # Re-signed by the consumer alone: only the provider's breaks.
    cs = dict(raised)
    del cs["consumer_signature"]
    cs["consumer_signature"] = parties["cons"].sign(
        mzproto.signed_bytes(DOMAIN, cs, CONSUMER_UNSIGNED)).signature.hex()
    (d / "t2.json").write_text(json.dumps(cs))
    p, shown = show_json(d / "t2.json")
    assert p.returncode == 1
    assert (shown["provider_signature"], shown["consumer_signature"]) == ("invalid", "valid")

    # Malformed: an unknown field, a duplicate key, not JSON.
    (d / "m.json").write_text(json.dumps(dict(doc, note="hi")))
    p, shown = show_json(d / "m.json")
    assert p.returncode == 1
    assert "note" in shown["error"] and "note" in p.stderr
    text = (d / "a.json").read_text()
    (d / "dup.json").write_text(text.replace('"resource_id"', '"resource_id": "x", "resource_id"'))
    assert run(["agreement", "show", str(d / "dup.json")]).returncode == 1
    (d / "junk.json").write_text("{not json")
    p = run(["agreement", "show", str(d / "junk.json")])
    assert p.returncode == 1 and p.stderr.strip()
    p = run(["agreement", "show", str(d / "absent.json")])
    assert p.returncode == 1 and p.stderr.strip()


def test_sign_refusals(parties):
    d = parties["dir"]
    assert create(parties, d / "a.json").returncode == 0
    # Not the consumer's key.
    other = d / "other"
    node_key(other)
    p = run(["agreement", "sign", "--data", str(other), "--in", str(d / "a.json"),
             "--out", str(d / "b.json")])
    assert p.returncode == 1
    assert "consumer" in p.stderr
    assert not (d / "b.json").exists()
    # A provider signature that does not verify.
    doc = json.loads((d / "a.json").read_text())
    (d / "bad.json").write_text(json.dumps(dict(doc, methods=["everything"])))
    p = run(["agreement", "sign", "--data", parties["data"], "--in", str(d / "bad.json"),
             "--out", str(d / "b.json")])
    assert p.returncode == 1
    assert "provider signature" in p.stderr
    assert not (d / "b.json").exists()
    # A data directory without a key: nothing is created.
    p = run(["agreement", "sign", "--data", str(d / "empty"), "--in", str(d / "a.json"),
             "--out", str(d / "b.json")])
    assert p.returncode == 1
    assert not (d / "empty").exists()
    # A key file others can read.
    loose = d / "loose.key"
    write_key(loose)
    os.chmod(str(loose), 0o644)
    p = run(["agreement", "create", "--provider-key", str(loose), "--consumer",
             parties["cons_id"], "--resource", "r", "--method", "m", "--out", str(d / "c.json")])
    assert p.returncode == 1
    assert "mode" in p.stderr
    assert not (d / "c.json").exists()


def test_create_defaults_and_stdout(parties):
    p = run(["agreement", "create", "--provider-key", parties["key"], "--consumer",
             parties["cons_id"], "--resource", "r", "--method", "m", "--out", "-"])
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert re.match(r"^agr-[0-9a-f]{16}$", doc["agreement_id"])
    assert doc["limits"] == {}
    nb = ms_of(doc["not_before"])
    assert ms_of(doc["expires_at"]) - nb == 30 * 86400 * 1000

    p = run(["agreement", "create", "--provider-key", parties["key"], "--consumer",
             parties["cons_id"], "--resource", "r", "--method", "m", "--days", "2",
             "--not-before", "2020-01-01T00:00:00Z", "--out", "-"])
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["expires_at"] == "2020-01-03T00:00:00.000Z"
    (parties["dir"] / "old.json").write_text(p.stdout)
    p, shown = show_json(parties["dir"] / "old.json")
    assert p.returncode == 0 and shown["window"] == "expired"

    p = run(["agreement", "create", "--provider-key", parties["key"], "--consumer",
             parties["cons_id"], "--resource", "r", "--method", "m", "--not-before",
             "2099-01-01T00:00:00Z", "--out", str(parties["dir"] / "future.json")])
    assert p.returncode == 0, p.stderr
    p, shown = show_json(parties["dir"] / "future.json")
    assert p.returncode == 0 and shown["window"] == "not_yet_valid"


def ms_of(text):
    import datetime
    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(round(t.timestamp() * 1000))


def test_usage_errors(parties):
    out = str(parties["dir"] / "x.json")
    base = ["agreement", "create", "--provider-key", parties["key"], "--out", out]
    full = base + ["--consumer", parties["cons_id"], "--resource", "r", "--method", "m"]
    for args in (["agreement"],
                 ["agreement", "frobnicate"],
                 base + ["--resource", "r", "--method", "m"],            # no --consumer
                 base + ["--consumer", parties["cons_id"], "--method", "m"],
                 base + ["--consumer", parties["cons_id"], "--resource", "r"],
                 full + ["--consumer", "ABC"],
                 full + ["--per-day", "0"],
                 full + ["--total", "lots"],
                 full + ["--days", "0"],
                 full + ["--days", "2", "--expires", "2099-01-01T00:00:00Z"],
                 full + ["--expires", "tomorrow"],
                 full + ["--not-before", "2099-01-01T00:00:00Z", "--expires",
                         "2098-01-01T00:00:00Z"],
                 full + ["--id", "has space"],
                 full + ["extra"],
                 ["agreement", "sign", "--in", "a.json"],
                 ["agreement", "sign", "--out", "a.json", "--in", "a.json", "--key", "k",
                  "--data", "d"],
                 ["agreement", "show"],
                 ["agreement", "show", "a", "b"],
                 ["agreement", "usage"],
                 ["agreement", "usage", "--bogus", "x"]):
        p = run(args)
        assert p.returncode == 2, "meshzero %s: rc %d, %r" % (args, p.returncode, p.stderr)
        assert p.stderr.strip(), args
        assert not os.path.exists(out)


def test_help():
    p = run(["agreement", "--help"])
    assert p.returncode == 0
    assert p.stdout.startswith("usage: meshzero agreement")
    for sub in ("create", "sign", "show", "usage"):
        assert sub in p.stdout
        p2 = run(["agreement", sub, "--help"])
        assert p2.returncode == 0, p2.stderr
        assert p2.stdout.startswith("usage: meshzero agreement " + sub)
    p = run(["--help"])
    assert "agreement" in p.stdout
    p = run(["exec", "--help"])
    assert "--agreement FILE" in p.stdout


def test_usage_and_exec_without_node(parties):
    sock, port = free_port_unlistened()
    try:
        url = "ws://127.0.0.1:%d" % port
        p = run(["agreement", "usage", "deal-1", "--node", url])
        assert p.returncode == 1 and p.stderr.strip() and p.stdout == ""
        # exec reads and checks the file before it reaches for the node.
        p = run(["exec", "agent123", "m", "--agreement", str(parties["dir"] / "none.json"),
                 "--node", url])
        assert p.returncode == 1 and "--agreement" in p.stderr
        (parties["dir"] / "arr.json").write_text("[1, 2]")
        p = run(["exec", "agent123", "m", "--agreement", str(parties["dir"] / "arr.json"),
                 "--node", url])
        assert p.returncode == 1 and "not a JSON object" in p.stderr
        assert create(parties, parties["dir"] / "a.json").returncode == 0
        p = run(["exec", "agent123", "m", "--agreement", str(parties["dir"] / "a.json"),
                 "--node", url])
        assert p.returncode == 1 and "--agreement" not in p.stderr   # got as far as the node
    finally:
        sock.close()


# ---- usage, from a host that counted real calls ---------------------------------

def test_usage_counts_calls_and_survives_restart(mesh, procs, tmp_path):
    """D hosts a resource that requires an agreement; A calls it under one.
    `agreement usage` on D reports the calls, also after D restarts."""
    a, d = build_pair(mesh)
    procs.serve(d, "paid", handler("echo.sh"), meta={"requires_agreement": "true"})
    wait_known(a, "paid")
    doc = tmp_path / "deal.json"
    p = run(["agreement", "create", "--provider-key", str(d.data), "--consumer", a.id,
             "--resource", "paid", "--method", "run", "--total", "2", "--id", "deal-e2e",
             "--out", str(doc)])
    assert p.returncode == 0, p.stderr
    p = run(["agreement", "sign", "--data", str(a.data), "--in", str(doc), "--out", str(doc)])
    assert p.returncode == 0, p.stderr

    for _ in range(2):
        p = run(["exec", "paid", "run", "{}", "--agreement", str(doc), "--node", a.api])
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["input"]["caller"] == a.id
    p = run(["exec", "paid", "run", "--agreement", str(doc), "--json", "--node", a.api])
    assert p.returncode == 1
    assert json.loads(p.stdout)["error"]["code"] == "denied"
    assert "over_limit" in p.stderr

    p = run(["agreement", "usage", "deal-e2e", "--json", "--node", d.api])
    assert p.returncode == 0, p.stderr
    u = json.loads(p.stdout)
    assert (u["agreement_id"], u["total"], u["today"]) == ("deal-e2e", 2, 2)
    assert re.match(r"^\d{4}-\d{2}-\d{2}$", u["day"])
    assert u["last_used"] is not None
    assert [(x["provider"], x["consumer"], x["total"]) for x in u["providers"]] == \
        [(d.id, a.id, 2)]
    p = run(["agreement", "usage", "deal-e2e", "--node", d.api])
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("agreement deal-e2e: 2 in all, 2 today"), p.stdout

    # The caller's node counts nothing: only hosts do.
    p = run(["agreement", "usage", "deal-e2e", "--json", "--node", a.api])
    assert p.returncode == 0 and json.loads(p.stdout)["total"] == 0
    # A malformed id is the caller's mistake.
    p = run(["agreement", "usage", "bad id", "--node", d.api])
    assert p.returncode == 1 and "agreement_id" in p.stderr

    d.terminate()
    d.start()
    p = run(["agreement", "usage", "deal-e2e", "--json", "--node", d.api])
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["total"] == 2
