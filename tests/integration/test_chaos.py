"""Chaos test: 12 node processes on loopback in a random
connected graph; for 60 s random kill -9 and restart of nodes, cut links,
while a driver registers, updates, unregisters and executes. At the end,
within the documented bound, every live node's directory must equal the
ground truth (live nodes' resources at their latest acknowledged versions, no
ghosts, no acknowledged registration lost) and executes against live
resources in the last 20 s must succeed at least 99% of the time.

The driver is tests/chaos/chaos.py (also `make soak`); it runs as a child
process in a session of its own, so that whatever happens the whole process
group is gone when this test ends. The whole test stays under 3 minutes.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import meshlib

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.normpath(os.path.join(HERE, "..", "chaos", "chaos.py"))
NODES = 12
SECONDS = 60
# Setup (~5 s), chaos (60 s), a missed bound's extra polling (10.5 + 20 s),
# teardown (at most ~15 s): the driver ends well within this.
DEADLINE = 170.0


def test_chaos():
    started = time.monotonic()
    # Not tmp_path: pytest keeps only its last few base directories, and a
    # failed run's node logs must survive the other tests. Removed on success.
    workdir = tempfile.mkdtemp(prefix="meshzero-chaos-")
    cmd = [sys.executable, DRIVER, "--nodes", str(NODES), "--seconds", str(SECONDS),
           "--bin", meshlib.BIN, "--json", "--workdir", workdir]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=meshlib.client_env(),
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail("the chaos driver did not finish within %.0fs (killed); its output:\n%s"
                    % (DEADLINE, err[-20000:]), pytrace=False)
    finally:
        # Whatever the driver left behind (it stops its nodes itself; this is
        # for a driver that died abnormally).
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
    elapsed = time.monotonic() - started
    print(err)
    try:
        r = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        pytest.fail("the chaos driver exited with status %s without its JSON result; stderr:\n%s"
                    % (p.returncode, err[-20000:]), pytrace=False)
    if not r["ok"] or p.returncode != 0:
        # err holds the table and the readable report: which node lists which
        # resource, expected vs found; failed executes; the chaos log.
        pytest.fail("chaos test failed (driver status %s, %.0fs; node logs kept in %s):\n%s"
                    % (p.returncode, elapsed, workdir, err[-30000:]), pytrace=False)
    assert r["kills"] >= 5 and r["restarts"] >= 3 and r["cuts"] >= 5, r
    assert r["registered"] > 0 and r["updated"] > 0 and r["unregistered"] > 0, r
    assert elapsed < 180, "the chaos test took %.0fs (bound 180 s)" % elapsed
    shutil.rmtree(workdir, ignore_errors=True)
