#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_lock
short_description: Hold a cluster's launch lock on its security group, so one launch or scale runs at a time
version_added: 0.3.0
description:
  - With O(state=present), takes the cluster's lock, a tag C(coreos-ec2-cluster-lock) on its security group, and
    returns its run id. A missing group is created with the lock in its tags in one C(CreateSecurityGroup), which
    EC2 refuses for a second creator, so two runs never both create the cluster. On an existing group the lock
    tag is written, then read back after O(settle) seconds; of two runs that raced, only the one whose tag
    stayed goes on.
  - A lock held by another run makes the module wait up to O(wait_timeout) seconds, then fail with the other
    run's id, who holds it and since when. A lock older than O(ttl) seconds, or any lock with O(break_lock=true),
    is taken over with a warning.
  - With O(state=absent), removes the lock if this run (O(run_id)) holds it or its run is dead, and with O(forget_discovery=true)
    the discovery URL that an interrupted launch recorded on the group (tag C(coreos-ec2-cluster-discovery)).
  - The group's rules are not set here; M(amazon.aws.ec2_security_group) does that afterwards.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.diff,
  amazon.aws.common.modules, amazon.aws.region.modules, amazon.aws.boto3]
attributes:
  check_mode:
    description: Reads the group and the lock; creates, writes and removes nothing.
  diff_mode:
    description: Shows the group being created.
options:
  cluster_name:
    description: The cluster. The group must carry the tag C(coreos-ec2-cluster=<cluster_name>).
    type: str
    required: true
  security_group_name:
    description: The cluster's security group.
    type: str
    required: true
  description:
    description: The description of a group this module creates.
    type: str
    default: CoreOS cluster (coreos_ec2.cluster)
  vpc_id:
    description: The VPC of the group; the region's default VPC when omitted.
    type: str
  tags:
    description: The tags of a group this module creates (the cluster's tags).
    type: dict
    default: {}
  state:
    description: V(present) takes the lock, V(absent) releases it.
    type: str
    default: present
    choices: [present, absent]
  run_id:
    description: The run whose lock to release (required with O(state=absent)).
    type: str
  holder:
    description:
      - Who takes the lock, shown to a run that finds it held; V(user@host:pid) of the controller's
        C(ansible-playbook) process by default. A lock whose holder is a process of this host that no longer
        exists (a run interrupted before it released the lock) is taken over at once.
    type: str
  ttl:
    description: Seconds after which another run's lock counts as dead and is taken over.
    type: int
    default: 3600
  wait_timeout:
    description: Seconds to wait for a lock held by another run before failing; V(0) fails at once.
    type: int
    default: 0
  settle:
    description: Seconds between writing the lock tag on an existing group and reading it back.
    type: float
    default: 1.0
  break_lock:
    description: Take the lock over even if another run holds it (for a run that died; the warning names it).
    type: bool
    default: false
  forget_discovery:
    description: With O(state=absent), also remove the discovery URL recorded on the group.
    type: bool
    default: false
  create:
    description:
      - Whether to create a missing group. With V(false) a missing group means no lock can be taken, and the module
        warns and returns an empty RV(run_id).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Take the lock of cluster p-1
  coreos_ec2.cluster.cluster_lock:
    cluster_name: p-1
    security_group_name: coreos-ec2-p-1
    tags: {coreos-ec2-cluster: p-1}
  register: lock

- name: Release it
  coreos_ec2.cluster.cluster_lock:
    cluster_name: p-1
    security_group_name: coreos-ec2-p-1
    state: absent
    run_id: "{{ lock.run_id }}"
"""

RETURN = r"""
run_id:
  description: The run holding the lock (this run's with O(state=present)).
  returned: always
  type: str
  sample: 3f2a9c0d1e4b5a6f
group_id:
  description: The security group's id; empty when it does not exist (or, in check mode, would be created).
  returned: always
  type: str
  sample: sg-0123456789abcdef0
created:
  description: Whether this run created the security group.
  returned: always
  type: bool
broken:
  description: The lock this run took over (another run's, expired or broken on request), empty when none.
  returned: always
  type: str
waited:
  description: Whether this run waited for another run's lock (the cluster may have changed meanwhile).
  returned: when the lock was taken on an existing group
  type: bool
"""

import datetime
import getpass
import os
import secrets
import socket
import time

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports a missing botocore

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import CLUSTER_TAG_KEY
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._lock import (
    LOCK_TAG_KEY,
    PENDING_DISCOVERY_TAG_KEY,
    group_tags,
    held_message,
    lock_state,
    lock_value,
    parse_lock,
)

RETRY = AWSRetry.jittered_backoff(retries=10, catch_extra_error_codes=["InvalidGroup.NotFound"])
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


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec=dict(
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
        ),
        required_if=[("state", "absent", ["run_id"])],
        supports_check_mode=True,
    )
    p = module.params
    client = module.client("ec2", retry_decorator=RETRY)
    name = p["security_group_name"]

    def describe():
        filters = [{"Name": "group-name", "Values": [name]}]
        if p["vpc_id"]:
            filters.append({"Name": "vpc-id", "Values": [p["vpc_id"]]})
        try:
            groups = client.describe_security_groups(aws_retry=True, Filters=filters)["SecurityGroups"]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            module.fail_json_aws(e, msg=f"Failed to read security group {name}")
        if not groups:
            return None
        group = groups[0]
        owner = group_tags(group).get(CLUSTER_TAG_KEY)
        if owner != p["cluster_name"]:
            module.fail_json(
                msg=f"security group {name} ({group['GroupId']}) exists but does not belong to cluster {p['cluster_name']}"
                f" (no {CLUSTER_TAG_KEY}={p['cluster_name']} tag): refusing to use it"
            )
        return group

    if p["state"] == "absent":
        release(module, client, describe(), p)

    run_id = secrets.token_hex(8)
    host = socket.gethostname()
    holder = p["holder"] or f"{getpass.getuser()}@{host}:{_controller_pid()}"
    group = describe()
    if group is None and not p["create"]:
        module.warn(f"cluster {p['cluster_name']} has no security group {name}: it cannot be locked against other runs")
        module.exit_json(changed=False, run_id="", group_id="", created=False, broken="")
    if group is None:
        if module.check_mode:
            module.exit_json(changed=True, run_id=run_id, group_id="", created=True, broken="",
                             diff={"before": {}, "after": {"security_group": name}})
        tags = dict(p["tags"], **{LOCK_TAG_KEY: lock_value(run_id, holder, _now())})
        kwargs = dict(
            GroupName=name, Description=p["description"],
            TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": k, "Value": str(v)} for k, v in tags.items()]}],
        )
        if p["vpc_id"]:
            kwargs["VpcId"] = p["vpc_id"]
        try:
            # No retry decorator here: a retried create after a lost answer would meet our own group as a Duplicate.
            group_id = client.create_security_group(**kwargs)["GroupId"]
            module.exit_json(changed=True, run_id=run_id, group_id=group_id, created=True, broken="",
                             diff={"before": {}, "after": {"security_group": name, "group_id": group_id}})
        except is_boto3_error_code("InvalidGroup.Duplicate"):
            group = None  # another run created it first: it holds the lock, which is waited for below
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:  # pylint: disable=duplicate-except
            module.fail_json_aws(e, msg=f"Failed to create security group {name}")
        deadline = time.monotonic() + 60
        while group is None and time.monotonic() < deadline:  # the other run's group becomes visible eventually
            time.sleep(1)
            group = describe()
        if group is None:
            module.fail_json(msg=f"security group {name} was created by another run but cannot be read back")

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
            if module.check_mode:
                break
            mine = lock_value(run_id, holder, _now())
            try:
                client.create_tags(aws_retry=True, Resources=[group["GroupId"]], Tags=[{"Key": LOCK_TAG_KEY, "Value": mine}])
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
                module.fail_json_aws(e, msg=f"Failed to write the lock on security group {name}")
            time.sleep(max(p["settle"], 0))
            group = describe()
            if group_tags(group).get(LOCK_TAG_KEY) == mine:
                break
            continue  # another run wrote after us and won: its lock is now held
        waited = time.monotonic() - started
        if waited + POLL > p["wait_timeout"]:
            module.fail_json(msg=held_message(p["cluster_name"], f"{name} ({group['GroupId']})", current, _now(), waited),
                             run_id="", group_id=group["GroupId"], created=False, broken="")
        time.sleep(POLL)
        did_wait = True
        group = describe()
    if broken:
        other = parse_lock(broken) or {}
        module.warn(f"took over the lock of cluster {p['cluster_name']} held by run {other.get('run_id') or '?'}"
                    f" ({other.get('holder')}, since {other.get('since')})")
    module.exit_json(changed=False, run_id=run_id, group_id=group["GroupId"], created=False, broken=broken,
                     waited=did_wait)


def release(module, client, group, p) -> None:
    if group is None:
        module.exit_json(changed=False, run_id=p["run_id"], group_id="", created=False, broken="")
    tags = group_tags(group)
    remove = []
    current = tags.get(LOCK_TAG_KEY)
    # Ours, or one left by a run that died (on this host, or older than ttl): deleted with its value, so only if
    # nobody replaced it meanwhile.
    if current and lock_state(current, p["run_id"], _now(), p["ttl"], host=socket.gethostname(), alive=_alive) in (
            "ours", "expired"):
        remove.append({"Key": LOCK_TAG_KEY, "Value": current})
    if p["forget_discovery"] and PENDING_DISCOVERY_TAG_KEY in tags:
        remove.append({"Key": PENDING_DISCOVERY_TAG_KEY})
    if remove and not module.check_mode:
        try:
            client.delete_tags(aws_retry=True, Resources=[group["GroupId"]], Tags=remove)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            module.fail_json_aws(e, msg=f"Failed to release the lock on security group {p['security_group_name']}")
    module.exit_json(changed=False, run_id=p["run_id"], group_id=group["GroupId"], created=False, broken="")


if __name__ == "__main__":
    main()
