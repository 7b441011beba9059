# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One launch or scale of a cluster at a time, from any machine: a lock record kept on the cluster's security group.

AWS offers no lock service, but two things it does offer are enough. Creating a security group is atomic on its
name (a second CreateSecurityGroup answers InvalidGroup.Duplicate), so the run that creates the group holds the
lock from birth (the lock tag goes in with the group's TagSpecifications). On a group that exists, a run writes
its lock tag, waits a moment and reads the tag back: tags are last-writer-wins, so of two runs that raced, both
read the same winner. A lock carries its run id, who holds it and since when; a lock older than its TTL is
taken over (its run died without releasing it). The same group carries the discovery URL a launch minted until
its machines carry it in their user data, so that an interrupted launch is resumed with its own token.
"""

from __future__ import annotations

import datetime
import re
import getpass
import os
import secrets
import socket
import time
from typing import Any, Callable, Mapping

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import CLUSTER_TAG_KEY
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, aws_error_code

LOCK_TAG_KEY = "coreos-ec2-cluster-lock"
PENDING_DISCOVERY_TAG_KEY = "coreos-ec2-cluster-discovery"
_LOCK_RE = re.compile(r"^(?P<run>[0-9a-f]{8,32}) (?P<holder>\S+) since (?P<since>\S+)$")


def lock_value(run_id: str, holder: str, now: datetime.datetime) -> str:
    """The lock tag's value: run id, holder (user@host:pid of the ansible-playbook process, what a human needs to
    find the other run, and what tells a dead run on the same host), UTC time."""
    holder = re.sub(r"\s+", "_", holder)[:160]
    return f"{run_id} {holder} since {now.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def parse_lock(value: str | None) -> dict[str, Any] | None:
    """The lock record in a tag value, or None when there is none; an unreadable value counts as held forever
    by an unknown run (it was not written by us, so it is not ours to take over)."""
    if not value:
        return None
    m = _LOCK_RE.match(value.strip())
    if not m:
        return {"run_id": "", "holder": value.strip()[:160], "since": None}
    try:
        since = datetime.datetime.strptime(m.group("since"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        since = None
    return {"run_id": m.group("run"), "holder": m.group("holder"), "since": since}


def group_tags(group: Mapping[str, Any] | None) -> dict[str, str]:
    """A security group's tags as a dict, from boto3's Tags list or an already converted dict."""
    if not group:
        return {}
    tags = group.get("Tags", group.get("tags"))
    if isinstance(tags, Mapping):
        return dict(tags)
    return {t["Key"]: t["Value"] for t in tags or []}


def holder_process(holder: str) -> tuple[str, int | None]:
    """(host, pid) of a holder written as user@host:pid; pid None when it has none."""
    host = holder.rpartition("@")[2]
    name, sep, pid = host.rpartition(":")
    return (name, int(pid)) if sep and pid.isdigit() else (host, None)


def lock_state(value: str | None, run_id: str, now: datetime.datetime, ttl: int, host: str = "",
               alive: Callable[[int], bool] | None = None) -> str:
    """free, ours, held (by another live run) or expired (another run's: older than ttl seconds, or held by a
    process of this host that is gone, such as a run interrupted with Ctrl-C before it could release it)."""
    lock = parse_lock(value)
    if lock is None:
        return "free"
    if lock["run_id"] and lock["run_id"] == run_id:
        return "ours"
    if lock["since"] is not None and (now - lock["since"]).total_seconds() > ttl:
        return "expired"
    lock_host, pid = holder_process(lock["holder"])
    if alive is not None and host and lock_host == host and pid is not None and not alive(pid):
        return "expired"
    return "held"


def held_message(cluster_name: str, group: str, value: str, now: datetime.datetime, waited: float) -> str:
    """Why this run does not go on: who holds the cluster's lock, for how long, and what the user can do."""
    lock = parse_lock(value) or {}
    since = lock.get("since")
    age = f", {int((now - since).total_seconds())} s ago" if since else ""
    run = f"run {lock['run_id']} by {lock['holder']}" if lock.get("run_id") else f"an unreadable lock {value!r}"
    return (
        f"cluster {cluster_name} is being launched or scaled by another run: {run}"
        f" (since {since.strftime('%Y-%m-%dT%H:%M:%SZ') if since else 'an unknown time'}{age}; lock tag {LOCK_TAG_KEY}"
        f" on security group {group}). Waited {int(waited)} s. Let that run finish, wait for it with"
        " -e lock_timeout=<seconds>, or, if it is dead, take its lock over with -e break_lock=true"
    )


POLL = 5.0


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _controller_pid() -> int:
    """The ansible-playbook (or ansible) process this module runs under: its lifetime is the run's. Found by
    walking up /proc to the topmost ancestor running ansible (its task workers are forks with the same command
    line); where there is no /proc, the parent process."""
    pid, found = os.getppid(), None
    for dummy in range(12):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
            with open(f"/proc/{pid}/stat", "rb") as handle:
                parent = int(handle.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if any(os.path.basename(arg).startswith(b"ansible") for arg in argv[:2]):
            found = pid
        elif found is not None:
            break
        if parent <= 1:
            break
        pid = parent
    return found or os.getppid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def lock_argument_spec() -> dict[str, Any]:
    """The cluster_lock module's options (the module and the controller-side action plugin)."""
    return dict(
        cluster_name=dict(type="str", required=True),
        security_group_name=dict(type="str", required=True),
        description=dict(type="str", default="CoreOS cluster (coreos_ec2.cluster)"),
        vpc_id=dict(type="str"),
        tags=dict(type="dict", default={}),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        run_id=dict(type="str"),
        holder=dict(type="str"),
        ttl=dict(type="int", default=3600),
        wait_timeout=dict(type="int", default=0),
        settle=dict(type="float", default=1.0),
        break_lock=dict(type="bool", default=False),
        forget_discovery=dict(type="bool", default=False),
        create=dict(type="bool", default=True),
    )


def run_lock(client: Any, p: Mapping[str, Any], check_mode: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Take (state=present) or release (absent) the cluster's lock with an EC2 client; returns the result and
    warnings, raises ClusterError."""
    warnings: list[str] = []
    name = p["security_group_name"]

    def describe() -> dict[str, Any] | None:
        filters = [{"Name": "group-name", "Values": [name]}]
        if p["vpc_id"]:
            filters.append({"Name": "vpc-id", "Values": [p["vpc_id"]]})
        try:
            groups = client.describe_security_groups(Filters=filters)["SecurityGroups"]
        except Exception as e:  # pylint: disable=broad-exception-caught
            raise ClusterError(f"Failed to read security group {name}: {e}") from None
        if not groups:
            return None
        group = groups[0]
        if group_tags(group).get(CLUSTER_TAG_KEY) != p["cluster_name"]:
            raise ClusterError(
                f"security group {name} ({group['GroupId']}) exists but does not belong to cluster {p['cluster_name']}"
                f" (no {CLUSTER_TAG_KEY}={p['cluster_name']} tag): refusing to use it")
        return group

    if p["state"] == "absent":
        if not p["run_id"]:
            raise ClusterError("run_id is required with state=absent")
        return release(client, describe(), p, check_mode), warnings

    run_id = secrets.token_hex(8)
    host = socket.gethostname()
    holder = p["holder"] or f"{getpass.getuser()}@{host}:{_controller_pid()}"
    group = describe()
    if group is None and not p["create"]:
        warnings.append(f"cluster {p['cluster_name']} has no security group {name}: it cannot be locked against other runs")
        return dict(changed=False, run_id="", group_id="", created=False, broken=""), warnings
    if group is None:
        if check_mode:
            return dict(changed=True, run_id=run_id, group_id="", created=True, broken="",
                        diff={"before": {}, "after": {"security_group": name}}), warnings
        tags = dict(p["tags"], **{LOCK_TAG_KEY: lock_value(run_id, holder, _now())})
        kwargs: dict[str, Any] = dict(
            GroupName=name, Description=p["description"],
            TagSpecifications=[{"ResourceType": "security-group",
                                "Tags": [{"Key": k, "Value": str(v)} for k, v in tags.items()]}],
        )
        if p["vpc_id"]:
            kwargs["VpcId"] = p["vpc_id"]
        try:
            group_id = client.create_security_group(**kwargs)["GroupId"]
            return dict(changed=True, run_id=run_id, group_id=group_id, created=True, broken="",
                        diff={"before": {}, "after": {"security_group": name, "group_id": group_id}}), warnings
        except Exception as e:  # pylint: disable=broad-exception-caught
            if aws_error_code(e) != "InvalidGroup.Duplicate":
                raise ClusterError(f"Failed to create security group {name}: {e}") from None
        # Another run created it first: it holds the lock, which is waited for below, once the group shows.
        deadline = time.monotonic() + 60
        while group is None and time.monotonic() < deadline:
            time.sleep(1)
            group = describe()
        if group is None:
            raise ClusterError(f"security group {name} was created by another run but cannot be read back")

    started = time.monotonic()
    broken = ""
    did_wait = False
    while True:
        current = group_tags(group).get(LOCK_TAG_KEY)
        state = lock_state(current, run_id, _now(), p["ttl"], host=host, alive=_alive)
        if state == "held" and p["break_lock"]:
            state = "expired"
        if state != "held":
            if state == "expired":
                broken = current or ""
            if check_mode:
                break
            mine = lock_value(run_id, holder, _now())
            try:
                client.create_tags(Resources=[group["GroupId"]], Tags=[{"Key": LOCK_TAG_KEY, "Value": mine}])
            except Exception as e:  # pylint: disable=broad-exception-caught
                raise ClusterError(f"Failed to write the lock on security group {name}: {e}") from None
            time.sleep(max(p["settle"], 0))
            group = describe()
            if group_tags(group).get(LOCK_TAG_KEY) == mine:
                break
            continue  # another run wrote after us and won: its lock is now held
        waited = time.monotonic() - started
        if waited + POLL > p["wait_timeout"]:
            raise ClusterError(held_message(p["cluster_name"], f"{name} ({group['GroupId']})", current, _now(), waited))
        time.sleep(POLL)
        did_wait = True
        group = describe()
    if broken:
        other = parse_lock(broken) or {}
        warnings.append(f"took over the lock of cluster {p['cluster_name']} held by run {other.get('run_id') or '?'}"
                        f" ({other.get('holder')}, since {other.get('since')})")
    return dict(changed=False, run_id=run_id, group_id=group["GroupId"], created=False, broken=broken,
                waited=did_wait), warnings


def release(client: Any, group: Mapping[str, Any] | None, p: Mapping[str, Any], check_mode: bool) -> dict[str, Any]:
    """Remove this run's lock (or one a dead run left) and, with forget_discovery, the recorded discovery URL."""
    if group is None:
        return dict(changed=False, run_id=p["run_id"], group_id="", created=False, broken="")
    tags = group_tags(group)
    remove: list[dict[str, str]] = []
    current = tags.get(LOCK_TAG_KEY)
    # Ours, or one left by a run that died (on this host, or older than ttl): deleted with its value, so only if
    # nobody replaced it meanwhile.
    if current and lock_state(current, p["run_id"], _now(), p["ttl"], host=socket.gethostname(), alive=_alive) in (
            "ours", "expired"):
        remove.append({"Key": LOCK_TAG_KEY, "Value": current})
    if p["forget_discovery"] and PENDING_DISCOVERY_TAG_KEY in tags:
        remove.append({"Key": PENDING_DISCOVERY_TAG_KEY})
    if remove and not check_mode:
        try:
            client.delete_tags(Resources=[group["GroupId"]], Tags=remove)
        except Exception as e:  # pylint: disable=broad-exception-caught
            raise ClusterError(f"Failed to release the lock on security group {p['security_group_name']}: {e}") from None
    return dict(changed=False, run_id=p["run_id"], group_id=group["GroupId"], created=False, broken="")
