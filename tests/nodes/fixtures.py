# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pytest fixtures for test nodes.

tests/nodes/conftest.py offers them to the tests here. Tests elsewhere import them into their own
conftest.py, with the `tests` directory on sys.path:

    from nodes.fixtures import nodes_factory, nodes_rootfs  # noqa: F401  (pytest finds them by name)

    def test_something(nodes_factory):
        cluster = nodes_factory(3, extra_files={"/opt/bin/fleetctl": (script, 0o755)})
        cluster[0].ssh("fleetctl list-machines")

Tests that use nodes are skipped, saying why, where nodes cannot run: not root, a package missing, or
systemd-nspawn failing to boot a node. With COREOS_EC2_NODES_REQUIRED=1 those skips fail instead, for a
CI that must not lose these tests silently. A host that can run nodes but cannot build the root file
system (mirror unreachable) is an error, not a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import harness

REQUIRED_ENV = "COREOS_EC2_NODES_REQUIRED"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRED_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRED_ENV}=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def nodes_rootfs() -> Path:
    """The cached root file system, after checking once per session that a node boots here."""
    reason = harness.host_problem()
    if reason:
        _unavailable(reason)
    rootfs = harness.ensure_rootfs(log=print)
    reason = harness.probe_boot(rootfs, harness.BUILD_DIR)
    if reason:
        _unavailable(reason)
    return rootfs


@pytest.fixture
def nodes_factory(nodes_rootfs):
    """make(n=3, wait=True, **Cluster options) -> a started Cluster, cleaned up after the test.

    With wait (the default) every node takes ssh logins and etcd is healthy before make() returns.
    One cluster per bridge: a second make() in the same test needs its own bridge=, subnet= and
    name_prefix= (node names are host-wide: the host end of a node's veth is vb-<name>). Another test
    run on the same host waits for the bridge (Cluster's lock_timeout) instead of disturbing this one.
    """
    clusters: list[harness.Cluster] = []

    def make(n: int = 3, *, wait: bool = True, **options) -> harness.Cluster:
        if "packages" not in options:  # another package list is another root file system, built on demand
            options.setdefault("rootfs", nodes_rootfs)
        options.setdefault("log", print)
        cluster = harness.Cluster(n, **options)
        clusters.append(cluster)
        cluster.start()
        if wait:
            cluster.wait_ready()
        return cluster

    yield make
    errors = []
    for cluster in reversed(clusters):
        try:
            cluster.cleanup()
        except harness.NodesError as exc:
            errors.append(str(exc))
    assert not errors, errors
