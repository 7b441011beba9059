#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_lookup
short_description: Read everything a launch checks before it creates anything, in one run
version_added: 0.3.0
description:
  - Reads the key pair, the newest Flatcar image of the channel (or O(image_id)), the cluster's security group,
    the cluster's machines and whether the region offers O(instance_type), with one describe call each, and
    returns them with RV(problems), one message per reason not to launch.
  - Reads the user data of one machine of the cluster (to reuse its discovery URL) only when the cluster is
    incomplete, and returns the discovery URL that an interrupted launch recorded on the security group.
    Both are secrets, so use C(no_log) on the task. The module therefore never fails on a describe error either;
    it returns RV(error) for the next task to report.
  - For a complete cluster (O(size) machines, all running), which a launch does not add to, only the machines and
    the security group are read (two calls).
  - Changes nothing. Runs on the controller as an action plugin (no module process) with the same options.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.info_module,
  amazon.aws.common.modules, amazon.aws.region.modules, amazon.aws.boto3]
options:
  cluster_name:
    description: The cluster, identified by its tag C(coreos-ec2-cluster).
    type: str
    required: true
  size:
    description: The number of machines the cluster should have.
    type: int
    required: true
  key_name:
    description: The key pair the machines get; not checked when empty.
    type: str
    default: ""
  image_id:
    description: An image to use instead of the newest Flatcar image of O(channel).
    type: str
  ami_owner:
    description: The account that publishes the images.
    type: str
    default: "075585003325"
  ami_name_pattern:
    description: The name pattern of the channel's images, for example V(Flatcar-stable-*).
    type: str
    required: true
  architecture:
    description: The machines' architecture.
    type: str
    default: x86_64
    choices: [x86_64, arm64]
  channel:
    description: The Flatcar channel, for messages.
    type: str
    default: stable
  instance_type:
    description: The machine type; checked against the region's offerings.
    type: str
    required: true
  check_offering:
    description: Whether to check that the region offers O(instance_type).
    type: bool
    default: true
  security_group_name:
    description: The cluster's security group.
    type: str
    required: true
  security_group_rules:
    description:
      - The cluster's ingress rules (as M(amazon.aws.ec2_security_group) takes them); RV(security_group) says (its C(current))
        whether the group already has exactly these, only the all-traffic egress rule, and O(tags).
    type: list
    elements: dict
  tags:
    description: The cluster's tags, compared for the C(current) of RV(security_group).
    type: dict
    default: {}
  subnet_ids:
    description:
      - The subnets to spread the machines over. Each must exist, all in one VPC (the security group's, if it
        exists), each zone must offer O(instance_type), and no machine of the cluster may be in another subnet
        (launch does not move machines); otherwise RV(problems) says why. RV(placement) is then one entry per subnet.
      - Not read for a complete cluster (nothing is launched); machines in other subnets then get a note in RV(notes).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Read what the launch of cluster p-1 needs
  coreos_ec2.cluster.cluster_lookup:
    cluster_name: p-1
    size: 3
    key_name: ops
    ami_name_pattern: Flatcar-stable-*
    instance_type: c4.large
    security_group_name: coreos-ec2-p-1
  register: found
  no_log: true
"""

RETURN = r"""
problems:
  description: One message per reason not to launch (missing key pair or image, type not offered, size mismatch).
  returned: always
  type: list
  elements: str
error:
  description: A describe call that failed (credentials, endpoint, permissions); empty otherwise.
  returned: always
  type: str
image:
  description: The image to launch (image_id, name, creation_date, root_device_name, architecture); empty if none.
  returned: always
  type: dict
security_group:
  description:
    - The cluster's security group (group_id, vpc_id, tags without the recorded discovery URL, and current, whether
      its rules and tags are already the cluster's); empty if none.
  returned: always
  type: dict
instances:
  description: The cluster's machines in any state but terminated, as rows, oldest first.
  returned: always
  type: list
  elements: dict
user_data:
  description: The user data of one machine of an incomplete cluster, raw; empty otherwise. A secret.
  returned: always
  type: list
  elements: str
pending_discovery_url:
  description: The discovery URL an interrupted launch recorded on the security group; empty if none. A secret.
  returned: always
  type: str
subnets:
  description: The subnets of O(subnet_ids) that exist (subnet_id, availability_zone, vpc_id, state), in the given order.
  returned: always
  type: list
  elements: dict
placement:
  description:
    - How many machines each subnet should have (subnet_id, availability_zone, count, new) so that O(size) machines are
      spread round-robin, the existing ones staying where they are; one entry with an empty subnet_id without O(subnet_ids).
  returned: always
  type: list
  elements: dict
  sample: [{subnet_id: subnet-0a1b2c3d, availability_zone: us-east-1a, count: 2, new: 2},
           {subnet_id: subnet-4e5f6a7b, availability_zone: us-east-1b, count: 1, new: 1}]
notes:
  description: Things worth saying that do not stop a launch.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._lookup import lookup_argument_spec, lookup_cluster


def main() -> None:
    module = AnsibleAWSModule(argument_spec=lookup_argument_spec(), supports_check_mode=True)
    try:
        client = module.client("ec2")
    except Exception as e:  # pylint: disable=broad-exception-caught
        module.exit_json(changed=False, problems=[], error=f"Failed to connect to EC2: {e}", image={},
                         security_group={}, instances=[], user_data=[], pending_discovery_url="", subnets=[],
                         placement=[], notes=[])
    module.exit_json(**lookup_cluster(client, module.params, module.region))


if __name__ == "__main__":
    main()
