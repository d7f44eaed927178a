"""The package installs offline into a venv (pip, no build isolation, the
system's websockets) and works from there against a real node."""
import os
import subprocess
import textwrap

import meshlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def run(cmd, **kw):
    env = meshlib.client_env()
    env.pop("PYTHONPATH", None)         # only what the venv has
    env["PIP_NO_INDEX"] = "1"           # offline: never ask a package index
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=120, env=env, **kw)
    assert p.returncode == 0, "%s failed (%d):\n%s\n%s" % (cmd, p.returncode, p.stdout, p.stderr)
    return p


def test_pip_install_into_a_venv_and_use(tmp_path):
    venv = tmp_path / "venv"
    run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)])
    py = str(venv / "bin" / "python")
    # a copy of the source: the build must not write into the tree
    src = tmp_path / "src"
    run(["cp", "-r", os.path.join(ROOT, "python"), str(src)])
    # websockets comes from the system (PIP_NO_INDEX: nothing is downloaded)
    run([py, "-m", "pip", "install", "--no-build-isolation", "-q", str(src)])
    where = run([py, "-c", "import meshzero, os; print(os.path.dirname(meshzero.__file__))"],
                cwd=str(tmp_path)).stdout.strip()
    assert where.startswith(str(venv)), where
    assert os.path.exists(os.path.join(where, "py.typed"))
    meta = run([py, "-m", "pip", "show", "meshzero"]).stdout
    assert "Requires: websockets" in meta

    m = meshlib.Mesh(tmp_path)
    try:
        n = m.node("solo")
        script = textwrap.dedent("""
            import sys, meshzero
            with meshzero.connect(sys.argv[1]) as mesh:
                mesh.register_resource(resource_id="calc", resource_type="tool",
                                       capabilities=["math"],
                                       handler=lambda method, params, caller: sum(params["xs"]))
                print(mesh.execute_remote(resource_id="calc", method="sum",
                                          params={"xs": [1, 2, 3]}))
                print([r.resource_id for r in mesh.query_resources(capabilities=["math"])])
        """)
        out = run([py, "-c", script, n.api], cwd=str(tmp_path)).stdout.split()
        assert out == ["6", "['calc']"]
    finally:
        problems = m.close()
        assert not problems, problems
