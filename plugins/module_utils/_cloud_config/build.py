# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Everything together: settings in, the finished user data out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.entries import validate_cloud_config
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.legacy import (
    refuse_volume_wipes,
    replace_discovery_urls,
    translate_for_flatcar,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.merge import (
    finalize_for_flavor,
    merge_cloud_config,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.settings import (
    CloudConfigSettings,
    validate_settings,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.units import (
    extras_cloud_config,
    generate_cloud_config,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.user_data import (
    json_safe,
    load_base,
    render_user_data,
    validate_user_data,
)


@dataclass
class CloudConfigResult:
    user_data: str
    cloud_config: dict[str, Any]
    size: int
    warnings: list[str]


def build_user_data(
    settings: CloudConfigSettings, base_text: str | None = None, base_source: str = "content"
) -> CloudConfigResult:
    """Everything together: validate, generate, merge over the base, render, check.

    An existing CoreOS cloud-config as the base (legacy.py): a unit of it (or of the units option) that would
    wipe the data volume is refused before anything else; for flatcar its coreos.etcd2 and coreos.fleet are
    translated and etcd2.service/fleet.service dropped; after the merge, every discovery URL the collection
    did not write is the fresh one.
    """
    validate_settings(settings)
    warnings: list[str] = []
    if settings.flavor == "coreos" and settings.etcd_version:
        warnings.append("etcd_version is ignored with flavor coreos: legacy CoreOS runs its built-in etcd2")

    cfg: dict[str, Any] = load_base(base_text, base_source) if base_text is not None else {}
    label = f"the base file {base_source}"
    extras = extras_cloud_config(settings)
    refuse_volume_wipes(cfg, settings.ebs, base_source)
    refuse_volume_wipes(extras, settings.ebs, "units")
    if settings.flavor == "flatcar":
        cfg, settings, notes = translate_for_flatcar(cfg, settings, label, base_source)
        warnings += notes
    if extras:
        cfg, notes = merge_cloud_config(cfg, extras, "the units/write_files options", label)
        warnings += notes
        label = f"{label} or the units/write_files options"
    generated = generate_cloud_config(settings)
    cfg, notes = merge_cloud_config(cfg, generated, "the generated setting", label)
    warnings += notes
    warnings += replace_discovery_urls(cfg, settings, generated, label, base_source)

    cfg = finalize_for_flavor(cfg, settings.flavor)
    validate_cloud_config(cfg)
    user_data = render_user_data(cfg)
    size = validate_user_data(user_data, cfg)
    return CloudConfigResult(user_data=user_data, cloud_config=json_safe(cfg), size=size, warnings=warnings)
