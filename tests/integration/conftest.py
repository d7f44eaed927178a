import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import meshlib  # noqa: E402


def pytest_configure(config):
    if not os.access(meshlib.BIN, os.X_OK):
        raise pytest.UsageError("meshzero binary not found at %s (set MESHZERO_BIN)" % meshlib.BIN)


@pytest.fixture
def mesh(tmp_path):
    """A factory of real node processes; every node is stopped at teardown,
    and the test fails if a node did not exit 0 after SIGTERM or printed a
    sanitizer report."""
    m = meshlib.Mesh(tmp_path)
    try:
        yield m
    finally:
        problems = m.close()
        # shown by pytest only when the test fails
        print(m.dump())
        if problems:
            pytest.fail("node problems at teardown:\n  " + "\n  ".join(problems)
                        + "\n" + m.dump(), pytrace=False)
