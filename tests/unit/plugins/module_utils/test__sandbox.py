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
