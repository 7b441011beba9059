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
  - The group's rules are not set here; M(coreos_ec2.cluster.cluster_group_rules) does that afterwards.
  - Runs on the controller as an action plugin (no module process) with the same options.
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

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._aws_module import run_aws_module
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._lock import lock_argument_spec, run_lock


def main() -> None:
    run_aws_module(lock_argument_spec(), run_lock, required_if=[("state", "absent", ["run_id"])])


if __name__ == "__main__":
    main()
