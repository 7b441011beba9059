# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The coreos_cloud_config module's options and its work, defined once: the module (plugins/modules) and the
action plugin that runs it on the controller without a module process (plugins/action) both call these."""

from __future__ import annotations

import base64
from typing import Any, Dict, Tuple

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.build import build_user_data
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.settings import settings_from_params
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.user_data import read_base_file

MUTUALLY_EXCLUSIVE = [("src", "content"), ("discovery_url", "discovery_token")]
REQUIRED_ONE_OF = [("discovery_url", "discovery_token")]
REQUIRED_TOGETHER = [("discovery_token", "discovery_endpoints")]


def argument_spec() -> dict:
    unit_spec = dict(
        name=dict(type="str", required=True),
        command=dict(
            type="str",
            choices=["start", "stop", "restart", "reload", "try-restart", "reload-or-restart", "reload-or-try-restart"],
        ),
        enable=dict(type="bool"),
        mask=dict(type="bool"),
        runtime=dict(type="bool"),
        content=dict(type="str"),
        drop_ins=dict(
            type="list", elements="dict",
            options=dict(name=dict(type="str", required=True), content=dict(type="str", required=True)),
        ),
    )
    file_spec = dict(
        path=dict(type="str", required=True),
        content=dict(type="str"),
        permissions=dict(type="str"),
        owner=dict(type="str"),
        encoding=dict(type="str"),
    )
    ebs_spec = dict(
        enabled=dict(type="bool", default=True),
        device=dict(type="str", default="/dev/sdb"),
        filesystem=dict(type="str", default="ext4", choices=["ext4", "xfs", "btrfs"]),
        mount_point=dict(type="str", default="/media/ebs"),
        label=dict(type="str", default="coreos-ebs"),
    )
    return dict(
        src=dict(type="path"),
        content=dict(type="str"),
        flavor=dict(type="str", default="flatcar", choices=["flatcar", "coreos"]),
        discovery_url=dict(type="str"),
        discovery_token=dict(type="str", no_log=True),
        discovery_endpoints=dict(type="list", elements="str"),
        etcd_version=dict(type="str"),
        flannel_network=dict(type="str", default="10.1.0.0/16"),
        flannel_backend=dict(type="str"),
        ebs=dict(type="dict", default={}, options=ebs_spec, apply_defaults=True),
        fleet=dict(type="bool", default=True),
        fleet_metadata=dict(type="dict", default={}),
        fleet_image=dict(type="str", default="quay.io/coreos/fleet:v1.0.0"),
        units=dict(type="list", elements="dict", default=[], options=unit_spec),
        write_files=dict(type="list", elements="dict", default=[], options=file_spec),
        ssh_authorized_keys=dict(type="list", elements="str", default=[], no_log=False),
        hostname=dict(type="str"),
    )


def run(params: Dict[str, Any]) -> Tuple[Dict[str, Any], list]:
    """The module's result and warnings for validated params; raises ClusterError."""
    settings = settings_from_params(params)
    if params["src"]:
        base_text, base_source = read_base_file(params["src"]), params["src"]
    elif params["content"] is not None:
        base_text, base_source = params["content"], "content"
    else:
        base_text, base_source = None, "content"
    result = build_user_data(settings, base_text, base_source)
    return dict(
        changed=False,
        user_data=result.user_data,
        user_data_b64=base64.b64encode(result.user_data.encode("utf-8")).decode("ascii"),
        cloud_config=result.cloud_config,
        size=result.size,
        overrides=result.warnings,
    ), list(result.warnings)
