"""Agreements end to end (docs/AGREEMENTS.md, PROTOCOL.md §6.10-6.11): real nodes in the seed's square, a resource on D whose record
says "requires_agreement": true, calls from A (through B or C).

Every refusal is checked the same way (Gate.refused): `meshzero exec
--agreement` fails with `denied` and the documented reason first in the
message, D's counters.exec_denied goes up by exactly one, the handler never
ran (it appends a line to a marker file on every run), nothing was counted
against the refused agreement, and an honest call right after (through the
API's execute_remote with an agreement) still succeeds.

One square serves the whole module (starting nodes is the slow part under
the sanitizer build); each test leaves it serving. The restart test runs
last and leaves D restarted and serving again."""
import asyncio
import datetime
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

import mzproto
from execlib import ApiConn, Procs, arun, build_square, handler, wait_known
from meshlib import Mesh, rpc, run, sanitizer_reports, wait_for

RPC_TIMEOUT = 20.0


# ---- helpers ----------------------------------------------------------------------

def marker_handler(tmp, name):
    """A handler that appends a line to a marker file each time it runs and
    echoes its call ({"input": <call>}). Returns (command, marker path)."""
    mark = tmp / (name + ".runs")
    script = tmp / (name + ".sh")
    script.write_text("#!/bin/sh\ninput=$(cat)\necho run >> '%s'\n"
                      "printf '{\"input\":%%s}\\n' \"$input\"\n" % mark)
    os.chmod(str(script), stat.S_IRWXU)
    return str(script), mark


def runs(mark):
    try:
        return len(mark.read_text().splitlines())
    except FileNotFoundError:
        return 0


def rfc(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def make_agreement(path, provider_key, consumer_id, resource, methods=("run",), sign_data=None,
                   total=None, per_day=None, not_before=None, expires=None, agr_id=None):
    """`agreement create`, then `agreement sign --data SIGN_DATA` unless it
    is None; returns the document written to PATH."""
    args = ["agreement", "create", "--provider-key", str(provider_key), "--consumer",
            consumer_id, "--resource", resource, "--out", str(path)]
    for m in methods:
        args += ["--method", m]
    for opt, v in (("--total", total), ("--per-day", per_day), ("--not-before", not_before),
                   ("--expires", expires), ("--id", agr_id)):
        if v is not None:
            args += [opt, str(v)]
    p = run(args)
    assert p.returncode == 0, p.stderr
    if sign_data is not None:
        p = run(["agreement", "sign", "--data", str(sign_data), "--in", str(path),
                 "--out", str(path)])
        assert p.returncode == 0, p.stderr
    return json.loads(path.read_text())


DOMAIN = b"meshzero/1 agreement"


def py_agreement(provider, consumer, resource, not_before, expires_at, agr_id,
                 methods=("run",), limits=None, consumer_key=None):
    """An agreement made and signed here (PyNaCl, mzproto's canonical form),
    from docs/AGREEMENTS.md alone. provider and consumer are mzproto.Keys;
    consumer_key: the key that counter-signs (default consumer's)."""
    doc = {"agreement_id": agr_id, "provider": provider.id, "consumer": consumer.id,
           "resource_id": resource, "methods": list(methods), "limits": limits or {},
           "not_before": not_before, "expires_at": expires_at}
    doc["provider_signature"] = provider.sign(DOMAIN, doc,
                                              ("provider_signature", "consumer_signature"))
    doc["consumer_signature"] = (consumer_key or consumer).sign(DOMAIN, doc,
                                                                ("consumer_signature",))
    return doc


def with_offset(dt, hours, digits=3):
    """DT written in the zone UTC+HOURS, with DIGITS fraction digits."""
    local = dt.astimezone(datetime.timezone(datetime.timedelta(hours=hours)))
    frac = ("%06d" % local.microsecond + "000000")[:digits]
    sign = "+" if hours >= 0 else "-"
    return "%s.%s%s%02d:00" % (local.strftime("%Y-%m-%dT%H:%M:%S"), frac, sign, abs(hours))


def node_key(node):
    return mzproto.Key.from_file(os.path.join(str(node.data), "identity.key"))


class Outcome:
    """A finished `meshzero exec --json`."""

    def __init__(self, p):
        self.rc, self.stdout, self.stderr = p.returncode, p.stdout, p.stderr
        self.json = json.loads(p.stdout) if p.stdout.strip() else None

    @property
    def error(self):
        return (self.json or {}).get("error") or {}

    @property
    def result(self):
        return (self.json or {}).get("result")

    def __repr__(self):
        return "<exec rc=%s stdout=%r stderr=%r>" % (self.rc, self.stdout, self.stderr)


def call(node, rid, method="run", agreement=None, timeout=10):
    """`meshzero exec RID METHOD {"n":1} [--agreement FILE] --json` against NODE."""
    args = ["exec", rid, method, '{"n":1}', "--json", "--timeout", str(timeout),
            "--node", node.api]
    if agreement is not None:
        args += ["--agreement", str(agreement)]
    return Outcome(run(args, timeout=timeout + 15))


def api_call(node, rid, agreement_path, method="run", timeout=10):
    """execute_remote through NODE's API with the agreement document; the
    whole JSON-RPC response."""
    params = {"resource_id": rid, "method": method, "params": {"n": 2}, "timeout": timeout,
              "agreement": json.loads(agreement_path.read_text())}
    return rpc(node.api, "execute_remote", params, timeout=timeout + 5)


def api_result(resp):
    assert "result" in resp, resp
    return resp["result"]


def usage(node, agr_id):
    """agreement_usage through the API (the CLI's is checked in its own test)."""
    return api_result(rpc(node.api, "agreement_usage", {"agreement_id": agr_id},
                          timeout=RPC_TIMEOUT))


def usage_cli(node, agr_id):
    p = run(["agreement", "usage", agr_id, "--json", "--node", node.api])
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def denied_count(node):
    return api_result(rpc(node.api, "status", timeout=RPC_TIMEOUT))["counters"]["exec_denied"]


def assert_ok(out, caller_id, method="run"):
    assert out.rc == 0, out
    assert out.result["input"]["caller"] == caller_id, out
    assert out.result["input"]["method"] == method, out
    assert out.result["input"]["params"] == {"n": 1}, out
    return out.result


def assert_denied(out, reason):
    assert out.rc == 1, out
    assert out.error.get("code") == "denied", out
    assert out.error["message"].startswith(reason + ": "), out
    assert json.loads(out.stderr.strip().splitlines()[-1])["error"] == out.error, out


class Gate:
    """A gated resource on a host, called from a caller, with an honest
    (unlimited) agreement to prove the host still serves after a refusal."""

    def __init__(self, host, caller, rid, cmd, mark, honest):
        self.host, self.caller, self.rid = host, caller, rid
        self.cmd, self.mark, self.honest = cmd, mark, honest

    def ok(self, agreement, method="run"):
        """A call under AGREEMENT from the command line runs the handler once."""
        before = runs(self.mark)
        res = assert_ok(call(self.caller, self.rid, method, agreement), self.caller.id, method)
        assert runs(self.mark) == before + 1
        return res

    def honest_call(self):
        """An honest call through the API: runs once, counted once."""
        before, counted = runs(self.mark), usage(self.host, "honest")["total"]
        res = api_result(api_call(self.caller, self.rid, self.honest))
        assert res["input"]["caller"] == self.caller.id and res["input"]["params"] == {"n": 2}
        assert runs(self.mark) == before + 1
        assert usage(self.host, "honest")["total"] == counted + 1

    def refused(self, agreement, reason, method="run", rid=None, uncounted=None):
        """A refused call: denied with REASON, counted in exec_denied, the
        handler not run, nothing counted under UNCOUNTED (an agreement id);
        then an honest call succeeds. Returns the exec outcome."""
        d0, r0 = denied_count(self.host), runs(self.mark)
        u0 = usage(self.host, uncounted)["total"] if uncounted else None
        out = call(self.caller, rid or self.rid, method, agreement)
        assert_denied(out, reason)
        assert denied_count(self.host) == d0 + 1
        assert runs(self.mark) == r0, "the handler ran for a refused call"
        if uncounted:
            assert usage(self.host, uncounted)["total"] == u0
        self.honest_call()
        assert self.host.running()
        return out


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    """The square A-B, A-C, B-D, C-D; D serves "paid" (requires_agreement:
    true) with a marker handler; A holds an honest unlimited agreement."""
    tmp = tmp_path_factory.mktemp("agreement-e2e")
    mesh = Mesh(tmp)
    procs = Procs(tmp)
    problems = []
    try:
        a, b, c, d = build_square(mesh)
        cmd, mark = marker_handler(tmp, "paid")
        procs.serve(d, "paid", cmd, meta={"requires_agreement": "true"})
        rec = wait_known(a, "paid", timeout=10)
        assert rec["metadata"]["requires_agreement"] is True     # JSON true, not "true"
        assert rec["owner_key"] == d.id
        honest = tmp / "honest.json"
        make_agreement(honest, d.data, a.id, "paid", sign_data=a.data, agr_id="honest")
        yield {"nodes": (a, b, c, d), "gate": Gate(d, a, "paid", cmd, mark, honest),
               "procs": procs, "tmp": tmp}
    finally:
        problems += procs.close()
        problems += mesh.close()
        if problems:
            print(procs.dump())
            print(mesh.dump())
            pytest.fail("problems at teardown:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def sq(square, tmp_path):
    """The module's square, with this test's own directory for documents."""
    return dict(square, tmp=tmp_path)


# ---- tests -------------------------------------------------------------------------

def test_valid_agreement_runs_and_counts(sq):
    (a, b, c, d), g, tmp = sq["nodes"], sq["gate"], sq["tmp"]
    doc = tmp / "deal.json"
    agr = make_agreement(doc, d.data, a.id, "paid", methods=("run", "describe"),
                         sign_data=a.data, total=10, per_day=5, agr_id="deal-1")
    assert (agr["provider"], agr["consumer"]) == (d.id, a.id)
    assert usage_cli(d, "deal-1")["total"] == 0

    d0 = denied_count(d)
    g.ok(doc)
    u = usage_cli(d, "deal-1")
    assert (u["agreement_id"], u["total"], u["today"]) == ("deal-1", 1, 1)
    assert [(x["provider"], x["consumer"], x["total"]) for x in u["providers"]] == \
        [(d.id, a.id, 1)]
    assert u["last_used"] is not None
    # Another method it allows counts under the same agreement; so does a
    # call through the API.
    g.ok(doc, method="describe")
    res = api_result(api_call(a, "paid", doc))
    assert res["input"]["caller"] == a.id
    assert usage_cli(d, "deal-1")["total"] == 3
    assert denied_count(d) == d0
    # The caller and the relays count nothing: only the host does.
    for n in (a, b, c):
        assert usage(n, "deal-1")["total"] == 0


def test_missing(sq):
    g = sq["gate"]
    out = g.refused(None, "missing")
    assert "agreement" in out.error["message"]
    # The API path refuses the same way, with the code in error.data.
    d0 = denied_count(g.host)
    resp = rpc(g.caller.api, "execute_remote",
               {"resource_id": "paid", "method": "run", "params": {}, "agreement": None},
               timeout=RPC_TIMEOUT)
    assert resp["error"]["data"]["code"] == "denied", resp
    assert resp["error"]["data"]["message"].startswith("missing: "), resp
    assert resp["error"]["message"].startswith("denied: missing: "), resp
    assert denied_count(g.host) == d0 + 1
    g.honest_call()


def test_ungated_resources_ignore_agreements(sq):
    """Only JSON true gates: a resource without the flag, or with the string
    "true", runs calls with no agreement or with a useless one."""
    (a, _, _, d), procs, tmp = sq["nodes"], sq["procs"], sq["tmp"]
    cmd, mark = marker_handler(tmp, "free")
    procs.serve(d, "free", cmd)
    procs.serve(d, "stringy", cmd, meta={"requires_agreement": '"true"'})
    assert wait_known(a, "stringy")["metadata"]["requires_agreement"] == "true"
    wait_known(a, "free")
    junk = tmp / "expired.json"
    make_agreement(junk, d.data, a.id, "free", sign_data=a.data,
                   not_before="2020-01-01T00:00:00Z", expires="2020-01-02T00:00:00Z",
                   agr_id="junk")
    d0 = denied_count(d)
    for rid in ("free", "stringy"):
        assert_ok(call(a, rid), a.id)
        assert_ok(call(a, rid, agreement=junk), a.id)
    assert runs(mark) == 4
    assert denied_count(d) == d0
    assert usage(d, "junk")["total"] == 0


def test_time_window(sq):
    (a, _, _, d), g, tmp = sq["nodes"], sq["gate"], sq["tmp"]
    now = utc_now()
    expired = tmp / "expired.json"
    make_agreement(expired, d.data, a.id, "paid", sign_data=a.data, agr_id="old",
                   not_before=rfc(now - datetime.timedelta(days=3)),
                   expires=rfc(now - datetime.timedelta(seconds=5)))
    g.refused(expired, "expired", uncounted="old")
    future = tmp / "future.json"
    make_agreement(future, d.data, a.id, "paid", sign_data=a.data, agr_id="later",
                   not_before=rfc(now + datetime.timedelta(days=1)),
                   expires=rfc(now + datetime.timedelta(days=2)))
    g.refused(future, "not_yet_valid", uncounted="later")


def test_wrong_consumer_method_resource(sq):
    (a, b, _, d), g, tmp = sq["nodes"], sq["gate"], sq["tmp"]
    # An agreement for B (counter-signed by B), used by A.
    for_b = tmp / "for_b.json"
    make_agreement(for_b, d.data, b.id, "paid", sign_data=b.data, agr_id="for-b")
    g.refused(for_b, "wrong_consumer", uncounted="for-b")
    # B, its rightful consumer, may use the same document.
    out = call(b, "paid", agreement=for_b)
    assert_ok(out, b.id)
    assert usage(d, "for-b")["total"] == 1

    # A method the agreement does not list (the resource itself accepts any);
    # the match is exact and case-sensitive.
    only_run = tmp / "only_run.json"
    make_agreement(only_run, d.data, a.id, "paid", methods=("run",), sign_data=a.data,
                   agr_id="only-run")
    g.refused(only_run, "method_not_allowed", method="delete", uncounted="only-run")
    g.refused(only_run, "method_not_allowed", method="Run", uncounted="only-run")

    # An agreement for another resource, sent with a call of this one.
    other = tmp / "other.json"
    make_agreement(other, d.data, a.id, "other-thing", sign_data=a.data, agr_id="other")
    g.refused(other, "wrong_resource", uncounted="other")


def test_tampered_and_unsigned(sq):
    (a, _, _, d), g, tmp = sq["nodes"], sq["gate"], sq["tmp"]
    original = tmp / "t.json"
    doc = make_agreement(original, d.data, a.id, "paid", sign_data=a.data, total=1,
                         agr_id="tamper")
    # A limit raised after signing breaks both signatures.
    raised = json.loads(json.dumps(doc))
    raised["limits"]["requests_total"] = 1000
    (tmp / "raised.json").write_text(json.dumps(raised))
    g.refused(tmp / "raised.json", "bad_signature", uncounted="tamper")
    # ... and so does a widened method list.
    (tmp / "widened.json").write_text(json.dumps(dict(doc, methods=["run", "delete"])))
    g.refused(tmp / "widened.json", "bad_signature", method="delete", uncounted="tamper")
    # A draft (no consumer signature) is accepted by no host.
    draft = tmp / "draft.json"
    make_agreement(draft, d.data, a.id, "paid", sign_data=None, agr_id="draft")
    g.refused(draft, "bad_signature", uncounted="draft")
    # An extra member makes it malformed: reported as bad_signature.
    (tmp / "extra.json").write_text(json.dumps(dict(doc, note="hi")))
    g.refused(tmp / "extra.json", "bad_signature", uncounted="tamper")

    # The untampered original still works once: the refusals changed nothing.
    g.ok(original)
    assert usage(d, "tamper")["total"] == 1
    g.refused(original, "over_limit")


def test_provider_must_be_owner_key(sq):
    """The record's owner_key is D's node key: an agreement signed by any
    other key (a keygen'd owner key, another node's key) is bad_signature."""
    (a, b, _, d), g, tmp = sq["nodes"], sq["gate"], sq["tmp"]
    key = tmp / "owner.key"
    p = run(["keygen", "--out", str(key), "--json"])
    assert p.returncode == 0, p.stderr
    pub = json.loads(p.stdout)["public_key"]
    assert pub != d.id
    stranger = tmp / "stranger.json"
    assert make_agreement(stranger, key, a.id, "paid", sign_data=a.data,
                          agr_id="stranger")["provider"] == pub
    g.refused(stranger, "bad_signature", uncounted="stranger")
    # Signed by B's node key: a valid signature, but B does not own the resource.
    by_b = tmp / "by_b.json"
    make_agreement(by_b, b.data, a.id, "paid", sign_data=a.data, agr_id="by-b")
    g.refused(by_b, "bad_signature", uncounted="by-b")
    # The provider member rewritten to D's id over B's signature.
    (tmp / "forged.json").write_text(json.dumps(dict(json.loads(by_b.read_text()),
                                                     provider=d.id)))
    g.refused(tmp / "forged.json", "bad_signature", uncounted="by-b")


def test_owner_key_provider(sq):
    """A record on D signed by a keygen'd owner key (served by an API
    connection, since `serve` has no --owner-key): the agreement's provider
    must be that key, and D's own node key is now the wrong one."""
    (a, _, _, d), tmp = sq["nodes"], sq["tmp"]
    keyfile = tmp / "owner.key"
    p = run(["keygen", "--out", str(keyfile), "--json"])
    assert p.returncode == 0, p.stderr
    owner = mzproto.Key.from_file(str(keyfile))
    assert json.loads(p.stdout)["public_key"] == owner.id

    good = tmp / "good.json"
    make_agreement(good, keyfile, a.id, "owned", sign_data=a.data, total=2, agr_id="owned-1")
    by_node = tmp / "by_node.json"
    make_agreement(by_node, d.data, a.id, "owned", sign_data=a.data, agr_id="owned-node")
    twin_owned = tmp / "twin_owned.json"
    make_agreement(twin_owned, keyfile, a.id, "owned", sign_data=a.data, total=1, agr_id="twin")
    twin_paid = tmp / "twin_paid.json"
    make_agreement(twin_paid, d.data, a.id, "paid", sign_data=a.data, total=1, agr_id="twin")
    sq["gate"].ok(twin_paid)
    seen = []

    def handle(params):
        seen.append(params)
        return {"ok": True, "caller": params["caller"]}

    async def main():
        conn = await ApiConn.open(d.api)
        loop = asyncio.get_running_loop()

        async def bg(fn, *args):
            return await loop.run_in_executor(None, fn, *args)
        server = None
        try:
            info = await conn.result("get_resource", {"resource_id": "owned",
                                                      "owner_key": owner.id})
            rec = mzproto.record(owner, "owned", "tool", node=d.id,
                                 metadata={"requires_agreement": True},
                                 version=info["next_version"])
            stored = await conn.result("register_resource", {"record": rec, "handler": True})
            assert (stored["owner_key"], stored["node"]) == (owner.id, d.id)
            server = asyncio.ensure_future(conn.serve(handle))
            await bg(wait_known, a, "owned", 10)

            out = await bg(call, a, "owned", "run", good)
            assert out.rc == 0 and out.result == {"ok": True, "caller": a.id}, out
            assert len(seen) == 1
            d0 = await bg(denied_count, d)
            for doc, reason in ((by_node, "bad_signature"), (None, "missing")):
                assert_denied(await bg(call, a, "owned", "run", doc), reason)
            assert await bg(denied_count, d) == d0 + 2
            assert len(seen) == 1
            out = await bg(call, a, "owned", "run", good)
            assert out.rc == 0, out
            assert_denied(await bg(call, a, "owned", "run", good), "over_limit")
            assert len(seen) == 2
            # One id, two providers: counters are per (provider, id).
            out = await bg(call, a, "owned", "run", twin_owned)
            assert out.rc == 0, out
            assert len(seen) == 3
        finally:
            if server is not None:
                server.cancel()
            await conn.close()

    arun(main(), 90)
    u = usage(d, "owned-1")
    assert u["total"] == 2
    assert [(x["provider"], x["consumer"]) for x in u["providers"]] == [(owner.id, a.id)]
    assert usage(d, "owned-node")["total"] == 0
    u = usage(d, "twin")
    assert u["total"] == 2
    assert sorted((x["provider"], x["total"]) for x in u["providers"]) == \
        sorted([(owner.id, 1), (d.id, 1)])
    sq["gate"].refused(twin_paid, "over_limit", uncounted="twin")


def test_offsets_and_python_made_agreements(sq):
    """Times with offsets and long fractions are compared as instants: an
    agreement that ended a minute ago, written in UTC+05:00 (its local
    clock reading is hours ahead), is expired; one written in UTC-05:00
    that ends in an hour is valid. A wrong counter-signature, a members
    list over the documented size and a non-object are refused."""
    (a, b, _, d), g, tmp = sq["nodes"], sq["gate"], sq["tmp"]
    dk, ak, bk = node_key(d), node_key(a), node_key(b)
    now = utc_now()
    live = py_agreement(dk, ak, "paid", with_offset(now - datetime.timedelta(hours=1), -5, 9),
                        with_offset(now + datetime.timedelta(hours=1), -5, 1), "py-live",
                        limits={"requests_total": 5})
    (tmp / "live.json").write_text(json.dumps(live))
    g.ok(tmp / "live.json")
    assert usage(d, "py-live")["total"] == 1

    ended = py_agreement(dk, ak, "paid", with_offset(now - datetime.timedelta(days=1), 5),
                         with_offset(now - datetime.timedelta(minutes=1), 5, 6), "py-ended")
    (tmp / "ended.json").write_text(json.dumps(ended))
    g.refused(tmp / "ended.json", "expired", uncounted="py-ended")
    early = py_agreement(dk, ak, "paid", with_offset(now + datetime.timedelta(minutes=2), -5),
                         with_offset(now + datetime.timedelta(days=1), -5), "py-early")
    (tmp / "early.json").write_text(json.dumps(early))
    g.refused(tmp / "early.json", "not_yet_valid", uncounted="py-early")

    # Counter-signed by B's key although the consumer is A.
    forged = py_agreement(dk, ak, "paid", rfc(now - datetime.timedelta(hours=1)),
                          rfc(now + datetime.timedelta(hours=1)), "py-forged",
                          consumer_key=bk)
    (tmp / "forged.json").write_text(json.dumps(forged))
    g.refused(tmp / "forged.json", "bad_signature", uncounted="py-forged")
    # 65 methods: more than a document may list, even well signed.
    many = py_agreement(dk, ak, "paid", rfc(now - datetime.timedelta(hours=1)),
                        rfc(now + datetime.timedelta(hours=1)), "py-many",
                        methods=["run"] + ["m%d" % i for i in range(64)])
    (tmp / "many.json").write_text(json.dumps(many))
    g.refused(tmp / "many.json", "bad_signature", uncounted="py-many")

    # Through the API, an agreement that is not an object is malformed.
    for bad in ("deal", 7, [], True):
        d0 = denied_count(d)
        resp = rpc(a.api, "execute_remote", {"resource_id": "paid", "method": "run",
                                             "params": {}, "agreement": bad},
                   timeout=RPC_TIMEOUT)
        assert resp.get("error", {}).get("data", {}).get("code") == "denied", (bad, resp)
        assert resp["error"]["data"]["message"].startswith("bad_signature: "), (bad, resp)
        assert denied_count(d) == d0 + 1
    g.honest_call()


def test_window_opens_and_closes_live(sq):
    """By the host's clock: an agreement refused as not_yet_valid becomes
    usable when not_before passes; one in use becomes expired when
    expires_at passes (polled, no fixed sleep)."""
    (a, _, _, d), g, tmp = sq["nodes"], sq["gate"], sq["tmp"]
    now = utc_now()
    edge = (now + datetime.timedelta(seconds=5)).replace(microsecond=0)   # as rfc() writes it
    closing = tmp / "closing.json"
    make_agreement(closing, d.data, a.id, "paid", sign_data=a.data, agr_id="closing",
                   not_before=rfc(now - datetime.timedelta(minutes=1)), expires=rfc(edge))
    opening = tmp / "opening.json"
    make_agreement(opening, d.data, a.id, "paid", sign_data=a.data, agr_id="opening",
                   not_before=rfc(edge), expires=rfc(edge + datetime.timedelta(hours=1)))
    if utc_now() < edge - datetime.timedelta(seconds=2.5):      # time to get there first
        assert_denied(call(a, "paid", agreement=opening), "not_yet_valid")
    used = {"closing": 0}

    def closed():
        out = call(a, "paid", agreement=closing)
        if out.rc == 0:
            used["closing"] += 1
            return False
        assert_denied(out, "expired")
        return True
    wait_for(closed, 30, interval=0.2, what="the agreement to expire")
    assert utc_now() >= edge
    assert usage(d, "closing")["total"] == used["closing"]
    g.ok(opening)
    assert usage(d, "opening")["total"] == 1


def test_concurrent_calls_never_exceed_total(sq):
    """Eight calls at once under requests_total 3: exactly three run."""
    (a, _, _, d), g, tmp = sq["nodes"], sq["gate"], sq["tmp"]
    doc = tmp / "race.json"
    make_agreement(doc, d.data, a.id, "paid", sign_data=a.data, total=3, agr_id="race")
    r0, d0 = runs(g.mark), denied_count(d)
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda _: call(a, "paid", agreement=doc, timeout=20), range(8)))
    ok = [o for o in outs if o.rc == 0]
    refused = [o for o in outs if o.rc != 0]
    assert len(ok) == 3, outs
    for o in refused:
        assert_denied(o, "over_limit")
    assert runs(g.mark) == r0 + 3
    assert denied_count(d) == d0 + 5
    assert usage(d, "race")["total"] == 3


def test_reissued_id_and_failing_handler(sq):
    """A new document with an id the provider used before continues its
    counters (AGREEMENTS.md §4); with both limits, the first reached
    refuses; a call counts once let through, even when its handler fails."""
    (a, _, _, d), g, tmp, procs = sq["nodes"], sq["gate"], sq["tmp"], sq["procs"]
    v1 = tmp / "v1.json"
    make_agreement(v1, d.data, a.id, "paid", sign_data=a.data, total=1, agr_id="reissue")
    g.ok(v1)
    g.refused(v1, "over_limit", uncounted="reissue")
    v2 = tmp / "v2.json"
    make_agreement(v2, d.data, a.id, "paid", sign_data=a.data, total=3, per_day=2,
                   agr_id="reissue")
    g.ok(v2)                                 # total 2, today 2: the daily limit is reached
    out = g.refused(v2, "over_limit", uncounted="reissue")
    assert "(UTC)" in out.error["message"], out
    u = usage(d, "reissue")
    assert (u["total"], len(u["providers"])) == (2, 1)

    procs.serve(d, "flaky", handler("fail.sh"), meta={"requires_agreement": "true"})
    wait_known(a, "flaky")
    doc = tmp / "flaky.json"
    make_agreement(doc, d.data, a.id, "flaky", sign_data=a.data, total=1, agr_id="flaky")
    out = call(a, "flaky", agreement=doc)
    assert (out.rc, out.error.get("code")) == (1, "handler_error"), out
    assert usage(d, "flaky")["total"] == 1
    assert_denied(call(a, "flaky", agreement=doc), "over_limit")


def test_limits_hold_across_restart(sq):
    """requests_total and requests_per_day: the call past the limit is
    over_limit, and still is after D stops cleanly and starts again on the
    same data directory. Runs last: it restarts the module's D."""
    (a, _, _, d), g, tmp, procs = sq["nodes"], sq["gate"], sq["tmp"], sq["procs"]
    total = tmp / "total.json"
    make_agreement(total, d.data, a.id, "paid", sign_data=a.data, total=2, agr_id="tot-2")
    daily = tmp / "daily.json"
    make_agreement(daily, d.data, a.id, "paid", sign_data=a.data, per_day=2, agr_id="day-2")
    day0 = usage(d, "day-2")["day"]

    for doc, agr_id in ((total, "tot-2"), (daily, "day-2")):
        g.ok(doc)
        g.ok(doc)
        assert usage(d, agr_id)["total"] == 2
    out = g.refused(total, "over_limit", uncounted="tot-2")
    assert "all 2 requests used" in out.error["message"], out
    out = g.refused(daily, "over_limit", uncounted="day-2")
    assert "(UTC)" in out.error["message"], out
    if usage(d, "day-2")["day"] != day0:
        pytest.skip("the UTC day changed during the test")

    # D stops cleanly and comes back with the same data directory (it
    # re-dials B and C, its --peer links; its own ports may change).
    assert d.terminate() == 0, d.stderr()
    assert not sanitizer_reports(d.stderr()), d.stderr()
    d.start()
    d.rc = None                  # running again: the teardown must stop and check it
    u = usage_cli(d, "tot-2")
    assert (u["total"], u["providers"][0]["consumer"]) == (2, a.id)
    u = usage_cli(d, "day-2")
    assert (u["total"], u["today"]) == (2, 2)
    procs.serve(d, "paid", g.cmd, meta={"requires_agreement": "true"})

    def through():
        resp = api_call(a, "paid", g.honest, timeout=5)
        return resp if "result" in resp else None
    before = runs(g.mark)
    wait_for(through, 30, interval=0.2, what="an honest call through the restarted D")
    assert runs(g.mark) == before + 1

    out = g.refused(total, "over_limit", uncounted="tot-2")
    assert "all 2 requests used" in out.error["message"], out
    g.refused(daily, "over_limit", uncounted="day-2")
    assert (usage(d, "tot-2")["total"], usage(d, "day-2")["total"]) == (2, 2)
