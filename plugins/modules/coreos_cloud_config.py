#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: coreos_cloud_config
short_description: Build the cloud-config user data of a CoreOS-family cluster
version_added: 0.1.0
description:
  - Renders the C(#cloud-config) user data every machine of a cluster boots with, for Flatcar Container Linux
    (O(flavor=flatcar)) or legacy CoreOS Container Linux (O(flavor=coreos)).
  - It configures etcd with the cluster's discovery setting, writes flannel's network config to
    C(/coreos.com/network/config) in etcd before flanneld starts, runs fleet, and formats and mounts the EBS
    data volume.
  - On Flatcar, etcd runs as C(etcd-member.service), configured by the drop-in C(20-clct-etcd-member.conf)
    (image tag, C(ETCD_ENABLE_V2=true) for etcd before 3.6, name, discovery, and URLs on C($private_ipv4),
    which coreos-cloudinit substitutes). The discovery setting is written exactly as
    C(Environment="ETCD_DISCOVERY=<url>"), or C(Environment="ETCD_DISCOVERY_TOKEN=<token>") with
    C(Environment="ETCD_DISCOVERY_ENDPOINTS=<url>,<url>").
  - Flatcar has no fleet. C(fleet-install.service) copies C(fleetd) and C(fleetctl) once out of O(fleet_image)
    (with C(docker create) and C(docker cp)) into C(/opt/bin), and C(fleet.service) runs C(/opt/bin/fleetd) on
    the host after etcd-member, with its API on C(fleet.socket) at C(/run/fleet.sock) (C(/var/run/fleet.sock),
    fleetctl's default), so C(fleetctl) works on every machine as it did on CoreOS.
  - On legacy CoreOS it fills the C(coreos.etcd2) and C(coreos.fleet) sections and starts C(etcd2.service) and
    C(fleet.service).
  - "The EBS volume: C(format-ebs.service) runs C(/opt/bin/coreos-ebs-prepare), which finds the device (the given
    name, its Xen twin C(/dev/xvdb), or on Nitro instances the NVMe namespace EBS recorded under that name, or
    else the only unpartitioned EBS NVMe disk that is not the root disk) and formats it with the label only when
    C(blkid -p) finds no filesystem, so a reboot never loses data. A mount unit named after the mount point
    (systemd-escaped, for example C(media-ebs.mount)) mounts C(/dev/disk/by-label/<label>)."
  - "Merge rule: the base file (O(src) or O(content)) is read first, the O(units) and O(write_files) options are
    laid over it, and the generated settings over both. Where they collide the later layer wins and a warning
    names each overridden unit field, drop-in, file or key; base units and files that do not collide are kept as
    they are. Units merge by name field by field, drop-ins by name, files by path, C(coreos.*) sections key by key,
    and O(ssh_authorized_keys) add to the base file's keys."
  - Flatcar reads a unit's drop-ins as C(drop_ins), old CoreOS documented C(drop-ins); both spellings are accepted
    in a base file and the flavour's own is emitted.
  - "An existing CoreOS cloud-config as the base file: with O(flavor=flatcar), which has neither etcd2 nor fleet,
    C(coreos.etcd2) becomes C(ETCD_*) lines in the drop-in C(10-clct-coreos-etcd2.conf) of C(etcd-member.service)
    and C(coreos.fleet) C(FLEET_*) lines in the drop-in C(10-clct-coreos-fleet.conf) of C(fleet.service) (each key,
    with C(-) or C(_), upper-cased as coreos-cloudinit does; C(ca-file) and C(peer-ca-file) as their etcd 3
    replacements), its C(metadata) pairs join O(fleet_metadata), and base units named C(etcd2.service) and
    C(fleet.service) are dropped. Generated values win: C(discovery), C(name), the client and peer URLs,
    C(etcd-servers) and C(public-ip) are the collection's; C(initial-cluster) and C(discovery-srv) (etcd takes
    one way to bootstrap) and C(data-dir) and C(wal-dir) (etcd-member keeps its data in C(/var/lib/etcd)) are
    dropped. One warning names each translated, replaced or dropped key, never its value. O(flavor=coreos) keeps
    these sections and units, merged as above."
  - "With either flavour, every etcd discovery URL of the base file or the O(units) and O(write_files) options
    (C(ETCD_DISCOVERY=), C(--discovery), a C(discovery) key, a C(https://discovery.etcd.io/...) URL such as the
    placeholder C(https://discovery.etcd.io/<token>)) becomes O(discovery_url), with a warning that names the place;
    with O(discovery_token) such a URL is refused."
  - "With either flavour and O(ebs.enabled=true), a unit of the base file or of O(units) whose C(Exec*) lines (content
    or drop-ins) would wipe or format the data volume is refused, naming the unit and the line: C(wipefs),
    C(mkfs*), C(mke2fs), C(mkswap), C(blkdiscard) or C(shred) on O(ebs.device), its Xen twin (C(/dev/sdb) and
    C(/dev/xvdb)), an NVMe namespace (C(/dev/nvme1n1)) or C(/dev/disk/by-label/<label>), or C(dd) writing to one
    (C(of=)). The collection formats the volume once itself; such a unit would erase it at every boot."
  - It only computes (C(changed) is always false) and fails, before anything is created, when the result is not
    valid cloud-config, names an invalid systemd unit, would wipe the data volume, or is over EC2's 16 KB
    user-data limit.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.info_module]
requirements:
  - PyYAML
options:
  src:
    description:
      - Path of a base cloud-config file, the user's own (see C(config/cloud-config.example) in the collection).
      - Its first line must be C(#cloud-config) and its top level a mapping.
    type: path
  content:
    description: The base cloud-config as text, instead of O(src).
    type: str
  flavor:
    description: V(flatcar) for Flatcar Container Linux, V(coreos) for legacy CoreOS Container Linux.
    type: str
    choices: [flatcar, coreos]
    default: flatcar
  discovery_url:
    description:
      - etcd v2 discovery URL (public discovery service or a self-hosted etcd's C(/v2/keys/_etcd/registry/...)).
      - One of O(discovery_url) or O(discovery_token) is required.
      - It is a secret in practice; run the task with C(no_log).
    type: str
  discovery_token:
    description:
      - etcd v3 discovery token (C(--discovery-token)); needs O(discovery_endpoints) and etcd 3.6 or later, so
        only with O(flavor=flatcar).
      - etcd 3.6 has no v2 API, so it cannot be used with O(fleet=true).
      - Ansible masks this value wherever it appears in the results, so RV(user_data) and RV(cloud_config) show
        it as C(********); use RV(user_data_b64), which carries the exact bytes.
    type: str
  discovery_endpoints:
    description: Client URLs of the etcd that serves v3 discovery (C(--discovery-endpoints)); with O(discovery_token).
    type: list
    elements: str
  etcd_version:
    description:
      - Tag of the etcd image Flatcar's C(etcd-member.service) runs.
      - Defaults to V(v3.5.17), the last line with the v2 API that fleet and flannel's C(etcdctl set) use, or to
        V(v3.6.11) with O(discovery_token).
      - From 3.6 on, etcd has no v2 API; the flannel config is then stored with C(etcdctl put) in the v3 keyspace,
        which only a flannel that reads the v3 API finds.
      - Ignored with O(flavor=coreos), whose etcd2 ships with the OS.
    type: str
  flannel_network:
    description: The IPv4 network (CIDR) flannel hands out subnets from.
    type: str
    default: 10.1.0.0/16
  flannel_backend:
    description: flannel backend type, for example V(vxlan); flannel's default when omitted.
    type: str
  ebs:
    description: The EBS data volume every machine formats (once) and mounts.
    type: dict
    default: {}
    suboptions:
      enabled:
        description: Whether to prepare and mount the volume at all.
        type: bool
        default: true
      device:
        description: Device name the volume is attached as in the block device mapping.
        type: str
        default: /dev/sdb
      filesystem:
        description: Filesystem to create when the volume has none.
        type: str
        choices: [ext4, xfs, btrfs]
        default: ext4
      mount_point:
        description: Where to mount it; the mount unit is named after it.
        type: str
        default: /media/ebs
      label:
        description: Filesystem label, also how the mount unit finds the volume.
        type: str
        default: coreos-ebs
  fleet:
    description: Whether to run fleet.
    type: bool
    default: true
  fleet_metadata:
    description: fleet machine metadata, rendered as C(key=value,key=value) with the keys sorted.
    type: dict
    default: {}
  fleet_image:
    description: Container image Flatcar machines copy C(fleetd) and C(fleetctl) from.
    type: str
    default: quay.io/coreos/fleet:v1.0.0
  units:
    description: Extra units, laid over the base file's (see the merge rule above).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Unit name, such as V(app.service) or V(app@.service).
        type: str
        required: true
      command:
        description: What coreos-cloudinit does with the unit at boot.
        type: str
        choices: [start, stop, restart, reload, try-restart, reload-or-restart, reload-or-try-restart]
      enable:
        description: Whether to enable the unit (its C([Install]) section).
        type: bool
      mask:
        description: Whether to mask the unit.
        type: bool
      runtime:
        description: Whether the unit goes to C(/run) instead of C(/etc).
        type: bool
      content:
        description: The unit file; omitted for units the OS already has.
        type: str
      drop_ins:
        description: Drop-ins for the unit.
        type: list
        elements: dict
        suboptions:
          name:
            description: Drop-in file name, ending in C(.conf).
            type: str
            required: true
          content:
            description: The drop-in's text.
            type: str
            required: true
  write_files:
    description: Extra files, laid over the base file's (matched by path).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path on the machine.
        type: str
        required: true
      content:
        description: File content.
        type: str
      permissions:
        description: Octal mode as a string, for example V('0644').
        type: str
      owner:
        description: C(user:group) owning the file.
        type: str
      encoding:
        description: Encoding of O(write_files[].content) (V(b64), V(gzip+base64), ...).
        type: str
  ssh_authorized_keys:
    description: Public SSH keys for the C(core) user, added to the base file's.
    type: list
    elements: str
    default: []
  hostname:
    description: Host name to set on every machine.
    type: str
notes:
  - EC2 limits user data to 16 KB (16384 bytes) before base64; RV(size) is the raw size.
  - Discovery URLs and tokens are secrets; validation errors name the option, never its value.
seealso:
  - name: coreos-cloudinit cloud-config reference
    description: The keys Flatcar's coreos-cloudinit reads.
    link: https://github.com/flatcar/coreos-cloudinit/blob/flatcar-master/Documentation/cloud-config.md
  - module: coreos_ec2.cluster.discovery_token
"""

EXAMPLES = r"""
- name: Render the user data of a Flatcar cluster from the user's base file
  coreos_ec2.cluster.coreos_cloud_config:
    src: config/cloud-config.example
    discovery_url: "{{ token.discovery_url }}"
    flannel_network: 10.1.0.0/16
    flannel_backend: vxlan
    fleet_metadata:
      cluster: demo
      region: us-east-1
  register: cloud_config
  no_log: true

- name: Legacy CoreOS Container Linux, no EBS volume, an extra unit
  coreos_ec2.cluster.coreos_cloud_config:
    flavor: coreos
    discovery_url: "{{ token.discovery_url }}"
    ebs:
      enabled: false
    units:
      - name: hello.service
        command: start
        content: |
          [Service]
          ExecStart=/usr/bin/echo hello
  register: cloud_config
  no_log: true

- name: etcd v3 discovery (etcd 3.6, no fleet)
  coreos_ec2.cluster.coreos_cloud_config:
    discovery_token: "{{ token.token }}"
    discovery_endpoints: "{{ token.endpoints }}"
    fleet: false
  register: cloud_config
  no_log: true
"""

RETURN = r"""
user_data:
  description: The user data, starting with C(#cloud-config).
  returned: success
  type: str
  sample: "#cloud-config\ncoreos:\n  units:\n  - name: format-ebs.service\n"
user_data_b64:
  description: RV(user_data) base64-encoded; exact even where Ansible masks a O(discovery_token) in RV(user_data).
  returned: success
  type: str
  sample: I2Nsb3VkLWNvbmZpZwo=
cloud_config:
  description: The user data parsed back; binary file content (C(!!binary)) is shown base64-encoded.
  returned: success
  type: dict
  sample: {"coreos": {"units": [{"name": "etcd-member.service", "command": "start"}]}}
size:
  description: Size of RV(user_data) in bytes (EC2 allows 16384).
  returned: success
  type: int
  sample: 7342
overrides:
  description:
    - One message per base-file entry that a generated setting or an option replaced, or that was translated for
      Flatcar or dropped (also emitted as warnings).
  returned: success
  type: list
  elements: str
  sample: ["unit etcd-member.service drop-in 20-clct-etcd-member.conf from the base file is replaced by the generated setting",
           "coreos.etcd2.heartbeat-interval from the base file config/cloud-config.example is translated to
            ETCD_HEARTBEAT_INTERVAL in etcd-member.service's drop-in 10-clct-coreos-etcd2.conf (Flatcar has no etcd2)"]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.module import (
    MUTUALLY_EXCLUSIVE,
    REQUIRED_ONE_OF,
    REQUIRED_TOGETHER,
    argument_spec,
    run,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.user_data import HAS_YAML, YAML_IMPORT_ERROR
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=MUTUALLY_EXCLUSIVE,
        required_one_of=REQUIRED_ONE_OF,
        required_together=REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    if not HAS_YAML:
        module.fail_json(msg=missing_required_lib("PyYAML"), exception=YAML_IMPORT_ERROR)
    try:
        result, warnings = run(module.params)
    except ClusterError as exc:
        module.fail_json(msg=exc.msg)
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
