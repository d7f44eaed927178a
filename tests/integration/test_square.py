"""The seed's square: A-B, A-C, B-D, C-D, and no A-D link.

     A
    / \\
   B   C
    \\ /
     D
"""
import time

import pytest

from meshlib import rpc, wait_all, wait_for, wait_linked

LEASE_MS = 3000
LEASE_S = LEASE_MS / 1000.0
AGENT = dict(rid="agent123", rtype="agent", caps=["image_processing", "text_analysis"],
             owner="user456", meta={"version": "1.0"})


@pytest.fixture
def square(mesh):
    a = mesh.node("A", lease_ms=LEASE_MS)
    b = mesh.node("B", peers=[a], lease_ms=LEASE_MS)
    c = mesh.node("C", peers=[a], lease_ms=LEASE_MS)
    d = mesh.node("D", peers=[b, c], lease_ms=LEASE_MS)
    wait_linked([(a, b), (a, c), (b, d), (c, d)])
    assert d.id not in a.peer_ids() and a.id not in d.peer_ids()
    return a, b, c, d


def has(rid):
    return lambda n: rid in n.ids()


def lacks(rid):
    return lambda n: rid not in n.ids()


def register_agent(n):
    return n.register(AGENT["rid"], AGENT["rtype"], caps=AGENT["caps"], meta=AGENT["meta"],
                      owner=AGENT["owner"])


def test_remote_resource_visible_two_hops_away(square):
    a, b, c, d = square
    rec = register_agent(d)
    assert rec["resource_id"] == "agent123" and rec["node"] == d.id

    def on_a():
        rs = a.query(rtype="agent", caps=["image_processing", "text_analysis"])
        return [r for r in rs if r["resource_id"] == "agent123"]
    got = wait_for(on_a, 2.0, what="agent123 on A")
    assert len(got) == 1
    r = got[0]
    assert r["location"] == "remote"
    assert r["node"] == d.id
    assert r["resource_type"] == "agent"
    assert r["owner"] == "user456"
    assert sorted(r["capabilities"]) == ["image_processing", "text_analysis"]
    assert r["metadata"]["version"] == "1.0"
    assert r["signature"] == rec["signature"] and r["version"] == rec["version"]

    # a capability the record lacks: no match
    assert a.query(rtype="agent", caps=["image_processing", "speech"]) == []

    local = [r for r in d.query(rtype="agent", caps=["image_processing"])
             if r["resource_id"] == "agent123"]
    assert len(local) == 1 and local[0]["location"] == "local" and local[0]["node"] == d.id
    assert a.query(location="local") == []
    assert [r["resource_id"] for r in a.query(location="remote")] == ["agent123"]


def test_unregister_removes_everywhere(square):
    a, b, c, d = square
    register_agent(d)
    wait_all([a, b, c], has("agent123"), 2.0, "agent123 present")
    d.unregister("agent123")
    assert "agent123" not in d.ids()
    wait_all([a, b, c], lacks("agent123"), 2.0, "agent123 gone")


def test_route_survives_loss_of_one_path(square):
    a, b, c, d = square
    register_agent(d)
    b.register("b-res", "tool", caps=["x"])
    wait_all([a], lambda n: {"agent123", "b-res"} <= set(n.ids()), 2.0, "both resources")

    b.kill()
    killed_at = time.monotonic()

    # B's record stays until its lease runs out; D's must stay all along,
    # refreshed through C.
    def b_expired_d_kept():
        ids = a.ids()
        assert "agent123" in ids, "D's record vanished from A after B died"
        return "b-res" not in ids
    wait_for(b_expired_d_kept, LEASE_S + 3.0, what="B's record to expire on A")
    assert time.monotonic() - killed_at >= LEASE_S - 1.0, \
        "B's record vanished before its lease could have run out"

    assert "agent123" in a.ids()
    # D is still reachable from A: its records by node, and D still counted
    res = rpc(a.api, "query_resources", {"node": d.id})
    assert "result" in res, res
    assert [r["resource_id"] for r in res["result"]] == ["agent123"]
    st = a.status()
    assert st["peers"] == 1
    assert st["nodes_known"] >= 2  # C and D
    assert b.id not in a.peer_ids()


def test_late_joiner_learns_everything(square, mesh):
    a, b, c, d = square
    for n in square:
        n.register("res-" + n.name.lower(), "tool", caps=["cap-" + n.name.lower()])
    want = {"res-a", "res-b", "res-c", "res-d"}
    wait_all([a, b, c, d], lambda n: want <= set(n.ids()), 2.0, "all four resources")

    e = mesh.node("E", peers=[d], lease_ms=LEASE_MS)
    got = wait_for(lambda: (lambda ids: ids if want <= set(ids) else None)(e.ids()), 2.0,
                   what="E to learn all resources")
    owners = {"res-a": a.id, "res-b": b.id, "res-c": c.id, "res-d": d.id}
    for rid, host in owners.items():
        assert got[rid]["node"] == host
        assert got[rid]["location"] == "remote"
    assert e.peer_ids() == {d.id}


def test_sigkill_resources_expire_after_lease(square):
    a, b, c, d = square
    register_agent(d)
    wait_all([a, b, c], has("agent123"), 2.0, "agent123 present")
    d.kill()
    wait_all([a, b, c], lacks("agent123"), LEASE_S + 2.0, "agent123 expired")
    for n in (a, b, c):
        assert n.status()["counters"]["leases_expired"] >= 1


def test_sigterm_resources_removed_at_once(square):
    a, b, c, d = square
    register_agent(d)
    wait_all([a, b, c], has("agent123"), 2.0, "agent123 present")
    assert d.terminate() == 0
    wait_all([a, b, c], lacks("agent123"), 2.0, "agent123 removed after bye")
