# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster's launch template: how its spot machines get their market options.

amazon.aws.ec2_instance has no market option, but passes a launch template to RunInstances, which applies the
template's InstanceMarketOptions to the machines it starts. The template carries nothing else (image, type, user
data, volumes and tags stay ec2_instance's options, so on-demand and spot launches differ in one thing only). It is
named like the cluster's security group and tagged with the cluster, so cleanup finds it and never touches a
template of another cluster.
"""

from __future__ import annotations

from typing import Any, Mapping

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import CLUSTER_TAG_KEY
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, aws_error_text, is_botocore_error
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._placement import (
    MARKETS,
    launch_template_data,
    market_options_current,
    validate_market,
)


def template_argument_spec() -> dict[str, Any]:
    """The cluster_launch_template module's options (module and controller-side action plugin)."""
    return dict(
        cluster_name=dict(type="str", required=True),
        name=dict(type="str", required=True),
        market=dict(type="str", default="spot", choices=list(MARKETS)),
        spot_max_price=dict(type="str", default=""),
        tags=dict(type="dict", default={}),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )


def _tags(template: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in template.get("Tags") or []}


def find_template(client: Any, name: str, cluster_name: str) -> dict[str, Any] | None:
    """The cluster's template by name; None when there is none. A template of that name that is not the cluster's
    (no cluster tag of its name) is refused: it would start the cluster's machines with somebody else's settings."""
    # A filter, not LaunchTemplateNames: asked for by name, a missing template is an error.
    found = client.describe_launch_templates(
        Filters=[{"Name": "launch-template-name", "Values": [name]}])["LaunchTemplates"]
    if not found:
        return None
    template = found[0]
    if _tags(template).get(CLUSTER_TAG_KEY) != cluster_name:
        raise ClusterError(f"launch template {name} exists but does not belong to cluster {cluster_name} (no "
                           f"{CLUSTER_TAG_KEY}={cluster_name} tag): refusing to use or delete it")
    return template


def _summary(template: Mapping[str, Any] | None, version: Any = None) -> dict[str, Any]:
    if not template:
        return {}
    return {"id": template.get("LaunchTemplateId", ""), "name": template.get("LaunchTemplateName", ""),
            "version": str(version if version is not None else template.get("DefaultVersionNumber", ""))}


def run_launch_template(client: Any, p: Mapping[str, Any], check_mode: bool = False
                        ) -> tuple[dict[str, Any], list[str]]:
    """Create, update (a new default version) or delete the cluster's launch template; raises ClusterError."""
    market, price = validate_market(p["market"], p["spot_max_price"])
    name, step = p["name"], f"read launch template {p['name']}"
    try:
        template = find_template(client, name, p["cluster_name"])
        if p["state"] == "absent":
            if template is None:
                return {"changed": False, "launch_template": {}, "diff": {"before": {}, "after": {}}}, []
            step = f"delete launch template {name}"
            if not check_mode:
                client.delete_launch_template(LaunchTemplateId=template["LaunchTemplateId"])
            return {"changed": True, "launch_template": _summary(template),
                    "diff": {"before": {"launch_template": name}, "after": {}}}, []

        wanted = launch_template_data(market, price)
        if template is None:
            step = f"create launch template {name}"
            if check_mode:
                return {"changed": True, "created": True, "launch_template": {"id": "", "name": name, "version": "1"},
                        "diff": {"before": {}, "after": {"launch_template": name, "data": wanted}}}, []
            created = client.create_launch_template(
                LaunchTemplateName=name, LaunchTemplateData=wanted,
                VersionDescription=f"{market} machines of cluster {p['cluster_name']}",
                TagSpecifications=[{"ResourceType": "launch-template", "Tags": [
                    {"Key": k, "Value": str(v)} for k, v in (p["tags"] or {}).items()]}],
            )["LaunchTemplate"]
            return {"changed": True, "created": True, "launch_template": _summary(created, 1),
                    "diff": {"before": {}, "after": {"launch_template": name, "data": wanted}}}, []

        step = f"read launch template {name}'s default version"
        versions = client.describe_launch_template_versions(
            LaunchTemplateId=template["LaunchTemplateId"], Versions=["$Default"])["LaunchTemplateVersions"]
        current = versions[0].get("LaunchTemplateData") if versions else {}
        if market_options_current(current, wanted):
            return {"changed": False, "created": False, "launch_template": _summary(template),
                    "diff": {"before": {}, "after": {}}}, []
        diff = {"before": {"launch_template": name, "data": current},
                "after": {"launch_template": name, "data": wanted}}
        if check_mode:
            return {"changed": True, "created": False, "launch_template": _summary(template), "diff": diff}, []
        step = f"add a version to launch template {name}"
        version = client.create_launch_template_version(
            LaunchTemplateId=template["LaunchTemplateId"], LaunchTemplateData=wanted,
            VersionDescription=f"{market} machines of cluster {p['cluster_name']}",
        )["LaunchTemplateVersion"]["VersionNumber"]
        client.modify_launch_template(LaunchTemplateId=template["LaunchTemplateId"], DefaultVersion=str(version))
        return {"changed": True, "created": False, "launch_template": _summary(template, version), "diff": diff}, []
    except ClusterError:
        raise
    except Exception as exc:  # pylint: disable=broad-exception-caught
        # botocore's errors (its classes are not imported here) become one message naming the step.
        if not is_botocore_error(exc):
            raise
        raise ClusterError(f"Failed to {step}: {aws_error_text(exc)}") from exc
