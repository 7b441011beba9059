# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a launch reads before it creates anything, and the refusals that follow from it.

The cluster_lookup module reads the key pair, the image, the security group, the cluster's machines and whether
the region offers the machine type in a handful of describe calls; these functions turn the answers into the
facts the launch role uses and into one message per problem, each naming the input and what is allowed.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping


def newest_image(images: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The newest available image (by creation date, then name), as the launch role uses it; {} when none."""
    usable = [i for i in images if i.get("State", "available") == "available"]
    if not usable:
        return {}
    best = max(usable, key=lambda i: (i.get("CreationDate", ""), i.get("Name", "")))
    root = best.get("RootDeviceName") or "/dev/xvda"
    # The root volume's size as the image defines it: a mapping that only asks for encryption still names a size.
    root_size = next((m.get("Ebs", {}).get("VolumeSize") for m in best.get("BlockDeviceMappings") or []
                      if m.get("DeviceName") == root), None)
    return {
        "image_id": best.get("ImageId", ""),
        "name": best.get("Name", ""),
        "creation_date": best.get("CreationDate", ""),
        "root_device_name": root,
        "root_volume_size": root_size or 8,
        "architecture": best.get("Architecture", ""),
    }


def preflight_problems(
    *,
    cluster_name: str,
    region: str,
    key_name: str,
    key_found: bool,
    image: Mapping[str, Any],
    image_id: str | None,
    channel: str,
    architecture: str,
    ami_owner: str,
    instance_type: str,
    type_offered: bool | None,
    offered_similar: list[str],
    existing_count: int,
    size: int,
) -> list[str]:
    """Every reason not to go on, in the order a user would fix them; empty when the launch can proceed."""
    problems = []
    if key_name and not key_found:
        problems.append(f"key pair {key_name} does not exist in {region}: create or import it first "
                        "(key_name must name an existing EC2 key pair)")
    if not image:
        problems.append(f"image_id {image_id} does not exist in {region}" if image_id else
                        f"no available Flatcar {channel} image for {architecture} owned by {ami_owner} in {region}")
    if type_offered is False:
        hint = f" (similar types offered there: {', '.join(offered_similar)})" if offered_similar else ""
        problems.append(f"instance_type {instance_type} is not offered in {region}{hint}: "
                        "give a type the region offers (aws ec2 describe-instance-type-offerings)")
    if existing_count not in (0, size):
        problems.append(f"cluster {cluster_name} already has {existing_count} machines, not {size}: "
                        "launch never resizes a cluster (use the scale operation)")
    return problems


def similar_types(wanted: str, offered: Iterable[str], limit: int = 5) -> list[str]:
    """Offered types of the same family (c4.large -> c4.xlarge ...), else of the same size, for the message."""
    family, dummy, size = wanted.partition(".")
    offered = sorted(set(offered))
    same_family = [t for t in offered if t.partition(".")[0] == family]
    if same_family:
        return same_family[:limit]
    return [t for t in offered if t.partition(".")[2] == size][:limit]
