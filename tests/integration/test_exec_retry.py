"""A call survives a lossy or broken path (docs/PROTOCOL.md "execute",
retries): the caller sends it again as a new envelope with the same `call`
id, and the host runs it once, answering repeats from what it kept.

The lossy path is a relay of our own (seclib.Relay) between A and D that
drops chosen messages; it cannot read them (sealed), only see their type.
"""
import asyncio

from execlib import ApiConn, in_directory
from meshlib import wait_for
from seclib import arun, counters, relayed_handler, wait_linked, wait_until


async def serve_later(conn, calls, delay):
    """Answers each pushed `execute` with {"echo": its params} after DELAY
    seconds, recording every push in CALLS."""
    async def answer(m):
        await asyncio.sleep(delay)
        await conn.send({"jsonrpc": "2.0", "id": m["id"],
                         "result": {"echo": m["params"]["params"]}})
    tasks = []
    try:
        while True:
            m = await conn.pushes.get()
            if m.get("method") == "execute":
                calls.append(m["params"])
                tasks.append(asyncio.ensure_future(answer(m)))
    finally:
        for t in tasks:
            t.cancel()


def drop_first(mtype):
    """A relay mangle that drops the first message of type MTYPE."""
    state = {"dropped": 0}

    def mangle(frm, env):
        if env["type"] == mtype and state["dropped"] == 0:
            state["dropped"] += 1
            return None
        return env
    mangle.state = state
    return mangle


def run_through_relay(mesh, mangle, delay=0.0, timeout_ms=8000):
    """A - R - D with MANGLE on R; one call from A to D's handler. Returns
    (response, handler pushes, A's counters, D's counters)."""
    a, d = mesh.node("A"), mesh.node("D")
    calls = []

    async def go():
        async with relayed_handler(a, d, "echo",
                                   lambda dc: serve_later(dc, calls, delay)) as (relay, ac, _):
            relay.mangle = mangle
            return await ac.call("execute_remote", {"resource_id": "echo", "method": "m",
                                                    "params": {"n": 1},
                                                    "timeout_ms": timeout_ms}, timeout=15)
    res = arun(go())
    return res, calls, counters(a), counters(d)


def test_lost_answer_is_sent_again_without_running_twice(mesh):
    """The relay drops D's first execute_result: A hears nothing, sends the
    call again after its retransmit interval; D answers from what it kept."""
    mangle = drop_first("execute_result")
    res, calls, ca, cd = run_through_relay(mesh, mangle)
    assert res.get("result") == {"echo": {"n": 1}}, res
    assert mangle.state["dropped"] == 1
    assert len(calls) == 1, calls
    assert ca["exec_retransmits"] >= 1, ca
    assert cd["exec_repeats"] >= 1, cd


def test_lost_request_is_sent_again(mesh):
    """The relay drops A's first execute: the repeat runs the call, once."""
    mangle = drop_first("execute")
    res, calls, ca, cd = run_through_relay(mesh, mangle)
    assert res.get("result") == {"echo": {"n": 1}}, res
    assert len(calls) == 1, calls
    assert ca["exec_retransmits"] >= 1, ca
    assert cd["exec_repeats"] == 0, cd


def test_slow_handler_is_not_run_again_by_retransmits(mesh):
    """A handler answering after 2.5 s: A's retransmits (after 1 s, then 2 s
    more) reach D while the call runs; D runs it once and answers the latest."""
    res, calls, ca, cd = run_through_relay(mesh, None, delay=2.5)
    assert res.get("result") == {"echo": {"n": 1}}, res
    assert len(calls) == 1, calls
    assert ca["exec_retransmits"] >= 1, ca
    assert cd["exec_repeats"] >= 1, cd
    assert cd["kept_answers"] >= 1, cd


def test_call_moves_to_another_path_when_its_relay_dies(mesh):
    """A - R - D is the only path when the call starts; while D runs it, a
    second path A - C - D comes up and R goes away. A sends the call again
    over C; D, still running it, answers there; the handler ran once."""
    a = mesh.node("A", lease_ms=3000)
    d = mesh.node("D", lease_ms=3000)
    calls = []

    async def go():
        async with relayed_handler(a, d, "echo",
                                   lambda dc: serve_later(dc, calls, 3.0)) as (relay, ac, _):
            fut = await ac.send_request("execute_remote", {"resource_id": "echo", "method": "m",
                                                           "params": {"n": 2},
                                                           "timeout_ms": 10000})
            await wait_until(lambda: len(calls) == 1, 5.0, "the call to reach D's handler")
            loop = asyncio.get_running_loop()
            c = await loop.run_in_executor(None, lambda: mesh.node("C", peers=[a, d],
                                                                   lease_ms=3000))
            await loop.run_in_executor(None, lambda: wait_linked([(a, c), (c, d)]))
            await relay.close()
            return await asyncio.wait_for(fut, 15)
    res = arun(go())
    assert res.get("result") == {"echo": {"n": 2}}, res
    assert len(calls) == 1, calls
    ca, cd = counters(a), counters(d)
    assert ca["exec_retries"] + ca["exec_retransmits"] >= 1, ca
    assert cd["exec_repeats"] >= 1, cd


def test_kept_answers_are_bounded(mesh):
    """--max-kept-answers 2: a third answered call pushes the oldest out
    (counted kept_evicted); status shows the limits."""
    a = mesh.node("A")
    d = mesh.node("D", peers=[a], extra=["--max-kept-answers", "2", "--max-kept-bytes", "65536"])
    wait_linked([(a, d)])
    st = d.status()
    assert st["limits"]["max_kept_answers"] == 2, st["limits"]
    assert st["limits"]["max_kept_bytes"] == 65536, st["limits"]
    calls = []

    async def go():
        dc = await ApiConn.open(d.api)
        ac = await ApiConn.open(a.api)
        serving = None
        try:
            await dc.result("register_resource", {"resource_id": "echo", "resource_type": "tool",
                                                  "handler": True})
            serving = asyncio.ensure_future(serve_later(dc, calls, 0.0))
            await in_directory(ac, "echo", 5.0)
            for i in range(3):
                res = await ac.call("execute_remote", {"resource_id": "echo", "method": "m",
                                                       "params": {"n": i}}, timeout=10)
                assert res.get("result") == {"echo": {"n": i}}, res
        finally:
            if serving is not None:
                serving.cancel()
            await ac.close()
            await dc.close()
    arun(go())
    cd = counters(d)
    assert cd["kept_answers"] == 2, cd
    assert cd["kept_evicted"] == 1, cd
    wait_for(lambda: len(calls) == 3, 1.0, what="three calls run")


def test_answer_over_max_kept_bytes_is_not_kept_nor_run_twice(mesh):
    """D (--max-kept-bytes 65536) answers 100 KB: too big to keep. The relay
    drops that answer; A's retransmit reaches D, which does not run the call
    again: it answers too_large saying the answer was sent once and not kept
    (counted kept_too_large); earlier kept answers are not pushed out."""
    a = mesh.node("A")
    d = mesh.node("D", extra=["--max-kept-bytes", "65536"])
    calls = []
    mangle = drop_first("execute_result")

    async def serve_big(dc):
        while True:
            m = await dc.pushes.get()
            if m.get("method") == "execute":
                calls.append(m["params"])
                n = m["params"]["params"]["n"]
                await dc.send({"jsonrpc": "2.0", "id": m["id"],
                               "result": {"text": "y" * n}})

    async def go():
        async with relayed_handler(a, d, "big", serve_big) as (relay, ac, _):
            small = await ac.call("execute_remote", {"resource_id": "big", "method": "m",
                                                     "params": {"n": 10}}, timeout=15)
            relay.mangle = mangle
            big = await ac.call("execute_remote", {"resource_id": "big", "method": "m",
                                                   "params": {"n": 100 * 1024},
                                                   "timeout_ms": 8000}, timeout=15)
            return small, big
    small, big = arun(go())
    assert small.get("result") == {"text": "y" * 10}, small
    assert mangle.state["dropped"] == 1
    err = big.get("error") or {}
    assert err.get("data", {}).get("code") == "too_large", big
    assert "not kept" in err["message"] and "--max-kept-bytes 65536" in err["message"], big
    assert len(calls) == 2, calls          # the small call and the big one, each once
    cd, ca = counters(d), counters(a)
    assert ca["exec_retransmits"] >= 1, ca
    assert cd["exec_repeats"] >= 1, cd
    assert cd["kept_too_large"] == 1, cd
    assert cd["kept_evicted"] == 0, cd
    assert cd["kept_answers"] == 2, cd
