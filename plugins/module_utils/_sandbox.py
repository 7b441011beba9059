# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start, health-check and stop the sandbox's local daemons (the EC2 emulator and the discovery etcd).

Each daemon keeps `<name>.pid` and `<name>.log` in one state directory. A daemon counts as ours only when
the pid file names a live process whose command line still matches, so a recycled pid is never killed.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import time
import urllib.parse
from typing import Callable, Mapping, Sequence

from ansible.module_utils.urls import open_url

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError


def healthy(url: str, timeout: float = 2.0) -> bool:
    """True when `url` answers HTTP 2xx."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http":
            with open_url(url, timeout=timeout, use_proxy=False) as resp:
                return 200 <= resp.status < 300
        # The sandbox's own daemons answer plain HTTP on this host: one request, without open_url's TLS context
        # (loading the system's CA certificates costs 40 ms a call, and every playbook run checks four daemons).
        if not parts.hostname:
            return False
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        try:
            conn.request("GET", urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, "")))
            return 200 <= conn.getresponse().status < 300
        finally:
            conn.close()
    except (OSError, ValueError, http.client.HTTPException):
        # Refused, HTTP error, timeout, garbled answer: not healthy (yet).
        return False


def paths(state_dir: str, name: str) -> tuple[str, str]:
    return os.path.join(state_dir, f"{name}.pid"), os.path.join(state_dir, f"{name}.log")


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _same_command(args: Sequence[str], command: Sequence[str]) -> bool:
    # Compare the arguments rather than argv[0] alone: a venv python may be shown by another path.
    return bool(args) and (list(args) == list(command) or list(args[1:]) == list(command[1:]))


def _has_identity(args: Sequence[str], identity: Sequence[str]) -> bool:
    """Whether a command line starts like `identity` (argv[0] compared only when it is all there is)."""
    if not identity or len(args) < len(identity):
        return False
    if len(identity) == 1:
        return list(args[:1]) == list(identity)
    return list(args[1:len(identity)]) == list(identity[1:])


def managed_pid(state_dir: str, name: str, command: Sequence[str], identity: Sequence[str] = ()) -> int | None:
    """The pid from the pid file when that process is alive and runs `command`, or a command starting with
    `identity` (the same daemon with other settings), else None."""
    pid_file = paths(state_dir, name)[0]
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    args = _cmdline(pid)
    if _same_command(args, command) or _has_identity(args, identity):
        return pid
    return None


def start(
    name: str,
    command: Sequence[str],
    state_dir: str,
    health_url: str,
    env: Mapping[str, str] | None = None,
    wait_timeout: float = 30.0,
    check_mode: bool = False,
    is_healthy: Callable[[str], bool] = healthy,
    identity: Sequence[str] = (),
    files: Mapping[str, str] | None = None,
    check: Sequence[str] = (),
) -> dict:
    """Make sure the daemon runs with `command` and answers on health_url; start it when it does not.

    Our daemon (by pid file and `identity`) running with other settings is restarted with these. Only when it is
    about to start: `files` (destination: source) are copied where it reads them at start, and `check` (a command
    line) must succeed first; its error output is the failure message. A daemon that runs needs neither again.
    """
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    pid = managed_pid(state_dir, name, command, identity)
    outdated = pid is not None and not _same_command(_cmdline(pid), command)
    if not outdated and is_healthy(health_url):
        return {"changed": False, "pid": pid, "managed": pid is not None}
    if pid is not None:
        # Running but not answering, or running with other settings: stop it so the start below is clean.
        if check_mode:
            return {"changed": True, "pid": pid, "managed": True}
        _terminate(pid)
    if check_mode:
        return {"changed": True, "pid": None, "managed": True}
    if check:
        checked = subprocess.run(list(check), capture_output=True, text=True, env={**os.environ, **(env or {})},
                                 check=False)
        if checked.returncode != 0:
            raise ClusterError((checked.stderr or checked.stdout).strip() or f"{name}: its check failed")
    for dest, src in (files or {}).items():
        _copy_if_changed(src, dest)
    pid_file, log_file = paths(state_dir, name)
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log_file, "ab") as log, open(os.devnull, "rb") as devnull:
        # A new session detaches the daemon from the module process, which exits right after.
        proc = subprocess.Popen(  # noqa: S603 - command comes from the role, not from remote input
            list(command), stdin=devnull, stdout=log, stderr=subprocess.STDOUT, env=full_env,
            start_new_session=True, close_fds=True, cwd=state_dir,
        )
    with open(pid_file, "w") as f:
        f.write(f"{proc.pid}\n")
    deadline = time.monotonic() + wait_timeout
    while time.monotonic() < deadline:
        if is_healthy(health_url):
            return {"changed": True, "pid": proc.pid, "managed": True}
        if proc.poll() is not None:
            raise ClusterError(
                f"Sandbox {name} exited with code {proc.returncode} right after start; see {log_file}: {_tail(log_file)}"
            )
        time.sleep(0.1)
    _terminate(proc.pid)
    raise ClusterError(f"Sandbox {name} did not answer on {health_url} within {wait_timeout:g}s; see {log_file}")


def _copy_if_changed(src: str, dest: str) -> None:
    with open(src, "rb") as handle:
        data = handle.read()
    try:
        with open(dest, "rb") as handle:
            if handle.read() == data:
                return
    except OSError:
        pass
    tmp = f"{dest}.tmp{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        handle.write(data)
    os.replace(tmp, dest)


def service_argument_spec() -> dict:
    """The sandbox_service module's options (the module and the controller-side action plugin)."""
    return dict(
        name=dict(type="str", required=True),
        command=dict(type="list", elements="str", required=True),
        state=dict(type="str", choices=["started", "stopped"], default="started"),
        state_dir=dict(type="path", required=True),
        health_url=dict(type="str", required=True),
        env=dict(type="dict", default={}),
        wait_timeout=dict(type="int", default=30),
        identity=dict(type="list", elements="str", default=[]),
        files=dict(type="dict", default={}),
        check=dict(type="list", elements="str", default=[]),
    )


def run_service(params: Mapping, check_mode: bool = False) -> tuple[dict, list]:
    """The sandbox_service module's result; raises ClusterError."""
    if params["state"] == "started":
        result = start(
            params["name"], params["command"], params["state_dir"], params["health_url"], env=params["env"],
            wait_timeout=params["wait_timeout"], check_mode=check_mode, identity=params["identity"],
            files=params["files"], check=params["check"],
        )
    else:
        result = stop(params["name"], params["command"], params["state_dir"], check_mode=check_mode,
                      identity=params["identity"])
    running_after = params["state"] == "started"
    result["log_file"] = paths(params["state_dir"], params["name"])[1]
    result["diff"] = {"before": {"running": running_after != result["changed"]}, "after": {"running": running_after}}
    return result, []


def stop(name: str, command: Sequence[str], state_dir: str, check_mode: bool = False,
         identity: Sequence[str] = ()) -> dict:
    pid = managed_pid(state_dir, name, command, identity)
    pid_file = paths(state_dir, name)[0]
    if pid is None:
        if os.path.exists(pid_file) and not check_mode:
            os.unlink(pid_file)  # stale: its process is gone or is someone else's now
        return {"changed": False, "pid": None, "managed": False}
    if not check_mode:
        _terminate(pid)
        os.unlink(pid_file)
    return {"changed": True, "pid": pid, "managed": True}


def _terminate(pid: int, timeout: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our child (tests start and stop in one process), then ask the kernel.
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _tail(path: str, limit: int = 600) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""
