"""The sandbox daemon manager, run for real with a small HTTP server as the daemon."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _sandbox
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def daemon(tmp_path):
    port = _free_port()
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    url = f"http://127.0.0.1:{port}/"
    yield command, str(tmp_path), url
    _sandbox.stop("web", command, str(tmp_path))


def test_start_is_idempotent_and_stop_kills_only_ours(daemon):
    command, state_dir, url = daemon
    assert not _sandbox.healthy(url)
    first = _sandbox.start("web", command, state_dir, url, wait_timeout=15)
    assert first["changed"] and first["managed"] and _sandbox.healthy(url)
    again = _sandbox.start("web", command, state_dir, url)
    assert again == {"changed": False, "pid": first["pid"], "managed": True}
    assert os.path.exists(os.path.join(state_dir, "web.log"))
    stopped = _sandbox.stop("web", command, state_dir)
    assert stopped["changed"] and not _sandbox.healthy(url)
    assert not os.path.exists(os.path.join(state_dir, "web.pid"))
    assert _sandbox.stop("web", command, state_dir)["changed"] is False


def test_check_mode_reports_without_acting(daemon):
    command, state_dir, url = daemon
    assert _sandbox.start("web", command, state_dir, url, check_mode=True)["changed"] is True
    assert not _sandbox.healthy(url)
    _sandbox.start("web", command, state_dir, url, wait_timeout=15)
    assert _sandbox.stop("web", command, state_dir, check_mode=True)["changed"] is True
    assert _sandbox.healthy(url)


def test_a_pid_file_naming_another_process_is_never_killed(daemon):
    command, state_dir, url = daemon
    # A stale pid file whose pid now belongs to another program (here: this test process).
    with open(os.path.join(state_dir, "web.pid"), "w") as f:
        f.write(f"{os.getpid()}\n")
    assert _sandbox.managed_pid(state_dir, "web", command) is None
    assert _sandbox.stop("web", command, state_dir)["changed"] is False
    assert not os.path.exists(os.path.join(state_dir, "web.pid"))


def test_a_daemon_that_exits_fails_with_its_log(tmp_path):
    command = [sys.executable, "-c", "import sys; print('port already taken'); sys.exit(3)"]
    with pytest.raises(ClusterError, match=r"Sandbox bad exited with code 3 .*port already taken"):
        _sandbox.start("bad", command, str(tmp_path), f"http://127.0.0.1:{_free_port()}/", wait_timeout=10)


def test_a_daemon_that_never_answers_times_out_and_is_stopped(tmp_path):
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(ClusterError, match=r"did not answer on .* within 1s"):
        _sandbox.start("mute", command, str(tmp_path), f"http://127.0.0.1:{_free_port()}/", wait_timeout=1)
    pid = int(open(os.path.join(tmp_path, "mute.pid")).read())
    assert not _sandbox._alive(pid)


def test_our_daemon_with_other_settings_is_restarted_and_stopped_by_identity(daemon):
    command, state_dir, url = daemon
    identity = command[:3]  # python -m http.server, whatever its options
    first = _sandbox.start("web", command, state_dir, url, wait_timeout=15, identity=identity)
    # The same daemon asked for with another setting (here: a directory to serve): restarted with it.
    changed = command + ["--directory", state_dir]
    assert _sandbox.managed_pid(state_dir, "web", changed) is None  # without identity it would not be ours
    assert _sandbox.managed_pid(state_dir, "web", changed, identity) == first["pid"]
    assert _sandbox.start("web", changed, state_dir, url, check_mode=True, identity=identity)["changed"] is True
    assert _sandbox._alive(first["pid"])
    second = _sandbox.start("web", changed, state_dir, url, wait_timeout=15, identity=identity)
    assert second["changed"] and second["pid"] != first["pid"] and not _sandbox._alive(first["pid"])
    assert _sandbox.start("web", changed, state_dir, url, identity=identity)["changed"] is False
    # Stopping with yet other settings still finds and stops it.
    stopped = _sandbox.stop("web", command + ["--protocol", "HTTP/1.1"], state_dir, identity=identity)
    assert stopped["changed"] and not _sandbox.healthy(url)


@pytest.mark.parametrize("args, identity, expected", [
    (["/venv/bin/python3.11", "-m", "sandbox_host", "--bridge", "b"], ["/venv/bin/python", "-m", "sandbox_host"], True),
    (["/venv/bin/python3.11", "-m", "sandbox_host.ec2_emulator"], ["/venv/bin/python", "-m", "sandbox_host"], False),
    (["/usr/bin/discovery.etcd.io", "--addr=x"], ["/usr/bin/discovery.etcd.io"], True),
    (["/usr/bin/other", "--addr=x"], ["/usr/bin/discovery.etcd.io"], False),
    (["/usr/bin/etcd"], ["/usr/bin/etcd", "--name=sandbox-discovery"], False),
    (["/usr/bin/etcd", "--name=sandbox-discovery", "--x"], [], False),
])
def test_identity_table(args, identity, expected):
    assert _sandbox._has_identity(args, identity) is expected
