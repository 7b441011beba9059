"""Integration tests: the `integration` marker, and imports of the collection and of the helpers here.

`tools/setup.sh` links this checkout into .build/collections/ansible_collections/coreos_ec2/cluster;
the helpers shared with the benchmarks are the package tests/support (`from support.sandbox import ...`).
"""

import os
import sys

import pytest

_HERE = os.path.abspath(os.path.dirname(__file__))
_TESTS = os.path.dirname(_HERE)  # for the test nodes: `from nodes import harness`
_COLLECTIONS = os.path.abspath(os.path.join(_HERE, "..", "..", ".build", "collections"))
for _path in (_COLLECTIONS, _TESTS, _HERE):
    if os.path.isdir(_path) and _path not in sys.path:
        sys.path.insert(0, _path)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "integration: starts real processes (etcd, moto, ansible-playbook) on loopback; slower"
    )


# One private sandbox for the whole session, shared by every test module that asks for it.
@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    from support.sandbox import Sandbox, free_port, run_playbook  # importable once sys.path is set above

    sb = Sandbox(str(tmp_path_factory.mktemp("sandbox")), free_port(), free_port(), free_port())
    run = run_playbook("sandbox.yml", sb.vars())
    assert run.rc == 0, run.out[-4000:]
    try:
        yield sb
    finally:
        stop = run_playbook("sandbox.yml", sb.vars(sandbox_state="stopped"))
        assert stop.rc == 0, stop.out[-4000:]


# Test nodes (tests/nodes): the cached root file system, checked once per session; skipped with the reason
# where nodes cannot run (see nodes/fixtures.py).
def _nodes_fixtures():
    from nodes import fixtures  # importable once sys.path is set above

    return fixtures


nodes_rootfs = _nodes_fixtures().nodes_rootfs
