"""Test nodes: systemd-nspawn machines on a private bridge (see harness.py, fixtures.py)."""

from . import fixtures

# pytest finds fixtures by name in a conftest; bound here, defined (and documented) in fixtures.py.
nodes_rootfs = fixtures.nodes_rootfs
nodes_factory = fixtures.nodes_factory


def pytest_configure(config):
    config.addinivalue_line("markers", "nodes: boots systemd-nspawn test nodes (root); slower")
