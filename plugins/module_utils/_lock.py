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
from typing import Any, Callable, Mapping

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
