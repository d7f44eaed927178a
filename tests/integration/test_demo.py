"""scripts/demo.sh (make demo) runs to completion against the binary under
test and leaves no process behind."""
import json
import os
import signal
import subprocess
import time

from meshlib import BIN, client_env, sanitizer_reports, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.normpath(os.path.join(HERE, "..", "..", "scripts", "demo.sh"))
DEMO_TIMEOUT = 60.0


def procs_mentioning(marker):
    """Pids of live (non-zombie) processes whose command line contains MARKER."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/stat" % d, "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != b"Z" and marker.encode() in cmd:
            found.append(int(d))
    return found


def kill_leftovers(marker):
    for pid in procs_mentioning(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_demo_script(tmp_path):
    build_dir = os.path.dirname(os.path.abspath(BIN))
    # demo.sh makes its data directories with mktemp -d: under TMPDIR, so
    # every node it starts has this directory on its command line.
    tmpdir = tmp_path / "demo-tmp"
    tmpdir.mkdir()
    marker = str(tmpdir) + "/"
    env = client_env()
    env["TMPDIR"] = str(tmpdir)
    assert procs_mentioning(marker) == []

    p = subprocess.Popen(["sh", DEMO, build_dir], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, start_new_session=True)
    try:
        out, err = p.communicate(timeout=DEMO_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
        kill_leftovers(marker)
        raise AssertionError("demo.sh still running after %.0fs;\nstdout:\n%s\nstderr:\n%s"
                             % (DEMO_TIMEOUT, out, err))
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    try:
        report = "demo.sh exited %s;\nstdout:\n%s\nstderr:\n%s" % (p.returncode, out, err)
        assert p.returncode == 0, report
        assert not sanitizer_reports(out + err), report
        lines = out.splitlines()

        # The resource.added event A received for agent123 (D's, so remote).
        events = [json.loads(ln.strip()) for ln in lines
                  if ln.strip().startswith("{") and '"resource.added"' in ln]
        assert len(events) == 1, report
        ev = events[0]
        assert ev["topic"] == "resource.added", ev
        assert ev["data"]["resource_id"] == "agent123", ev
        assert ev["data"]["location"] == "remote", ev
        assert ev["data"]["owner"] == "user456", ev
        assert set(ev["data"]["capabilities"]) == {"image_processing", "text_analysis"}, ev

        # A's query lists agent123 as remote.
        query = [ln.split() for ln in lines if ln.split()[:1] == ["agent123"]]
        assert query, report
        assert "remote" in query[0] and "type=agent" in query[0], query
        assert "owner=user456" in query[0], query

        # The result of agent123.process_image, computed on D.
        results = [json.loads(ln.strip()) for ln in lines
                   if ln.strip().startswith("{") and '"processed_by"' in ln]
        assert len(results) == 1, report
        res = results[0]
        assert res["processed_by"] == "agent123", res
        assert res["image_url"] == "https://example.com/image.jpg", res
        assert ev["data"]["node"] != "", ev
        assert "== done; stopping every process" in out, report

        # Nothing it started is left, and it removed its temporary directory.
        wait_for(lambda: procs_mentioning(marker) == [], 10.0,
                 what="the demo's processes to be gone")
        assert list(tmpdir.iterdir()) == [], list(tmpdir.iterdir())
    finally:
        kill_leftovers(marker)


def test_demo_script_stops_promptly_when_interrupted(tmp_path):
    """SIGTERM while the mesh starts: the trap stops every node the demo
    started and the demo exits at once, not after running on."""
    build_dir = os.path.dirname(os.path.abspath(BIN))
    tmpdir = tmp_path / "demo-tmp"
    tmpdir.mkdir()
    marker = str(tmpdir) + "/"
    env = client_env()
    env["TMPDIR"] = str(tmpdir)
    p = subprocess.Popen(["sh", DEMO, build_dir], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=env, start_new_session=True)
    try:
        # Wait until a node runs (or the demo already finished).
        wait_for(lambda: procs_mentioning(marker) or p.poll() is not None, 15.0,
                 interval=0.02, what="a demo node to start")
        if p.poll() is not None:
            return      # finished before it could be interrupted: nothing to test
        os.kill(p.pid, signal.SIGTERM)
        t0 = time.monotonic()
        try:
            out, _ = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError("demo.sh did not exit within 20 s of SIGTERM")
        took = time.monotonic() - t0
        wait_for(lambda: procs_mentioning(marker) == [], 10.0,
                 what="the demo's processes to be gone")
        assert list(tmpdir.iterdir()) == [], list(tmpdir.iterdir())
        assert p.returncode != 0, out
        # The trap must end the script: a TERM trap that only cleans up lets
        # the script run on against its deleted temporary directory.
        assert took < 5.0 and "did not start" not in out, \
            ("demo.sh ran on for %.1fs after SIGTERM (exit %s), output:\n%s"
             % (took, p.returncode, out))
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        kill_leftovers(marker)
