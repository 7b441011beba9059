# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Laying one cloud-config over another, and spelling drop-ins the flavour's way.

The rule: the layer on top wins where they collide, and each overridden unit, drop-in, file or key
is named in a warning; entries of the base that do not collide are kept as they are.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.entries import _find_key, _normalize_unit


def merge_cloud_config(
    base: Mapping[str, Any], over: Mapping[str, Any], over_label: str, base_label: str = "the base file"
) -> tuple[dict[str, Any], list[str]]:
    """Lay `over` on `base`: `over` wins where they collide, everything else of `base` is kept.

    Units merge by name (field by field; drop-ins by name), files by path, coreos sections key by
    key, ssh_authorized_keys as a union. Units and files of `over` come first, then the rest of
    `base` in its own order. Returns the result and one warning per overridden entry, naming it
    but never its value (values may hold discovery tokens).
    """
    result: dict[str, Any] = copy.deepcopy(dict(base))
    warnings: list[str] = []

    def note(what: str) -> None:
        warnings.append(f"{what} from {base_label} is replaced by {over_label}")

    for key, value in over.items():
        existing = _find_key(result, key)
        if existing is not None and existing != key:
            result[key] = result.pop(existing)  # adopt our spelling, keep the value for merging
        if key == "coreos":
            result["coreos"] = _merge_coreos(result.get("coreos") or {}, value, note)
        elif key == "write_files":
            result["write_files"] = _merge_by(result.get("write_files") or [], value, "path", "write_files", note)
        elif key == "ssh_authorized_keys":
            merged = list(result.get("ssh_authorized_keys") or [])
            merged += [k for k in value if k not in merged]
            result["ssh_authorized_keys"] = merged
        else:
            if key in result and result[key] != value:
                note(key)
            result[key] = copy.deepcopy(value)
    return result, warnings


def _merge_by(base_list: list, over_list: list, id_key: str, where: str, note: Any) -> list:
    by_id = {entry.get(id_key): entry for entry in base_list if isinstance(entry, Mapping)}
    out = []
    for entry in over_list:
        old = by_id.pop(entry.get(id_key), None)
        if old is not None and old != entry:
            note(f"{where} {entry.get(id_key)}")
        out.append(copy.deepcopy(entry))
    taken = {entry.get(id_key) for entry in over_list}
    out += [entry for entry in base_list if not (isinstance(entry, Mapping) and entry.get(id_key) in taken)]
    return out


def _merge_coreos(base: dict[str, Any], over: Mapping[str, Any], note: Any) -> dict[str, Any]:
    result = dict(base)
    for key, value in over.items():
        existing = _find_key(result, key)
        if existing is not None and existing != key:
            result[key] = result.pop(existing)
        if key == "units":
            result["units"] = _merge_units(result.get("units") or [], value, note)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            section = dict(result[key])
            for sub, sub_value in value.items():
                old_key = _find_key(section, sub)
                if old_key is not None:
                    old = section.pop(old_key)
                    if old != sub_value:
                        note(f"coreos.{key}.{sub}")
                section[sub] = copy.deepcopy(sub_value)
            result[key] = section
        else:
            if key in result and result[key] != value:
                note(f"coreos.{key}")
            result[key] = copy.deepcopy(value)
    return result


def _merge_units(base_units: list, over_units: list, note: Any) -> list:
    by_name = {u.get("name"): u for u in base_units}
    out = []
    for unit in over_units:
        name = unit.get("name")
        old = by_name.get(name)
        if old is None:
            out.append(copy.deepcopy(unit))
            continue
        merged = dict(old)
        for key, value in unit.items():
            if key == "name":
                continue
            if key == "drop_ins":
                merged["drop_ins"] = _merge_by(
                    merged.get("drop_ins") or [], value, "name", f"unit {name} drop-in", note
                )
                continue
            if key in merged and merged[key] != value:
                note(f"unit {name} {key}")
            merged[key] = copy.deepcopy(value)
        out.append(merged)
    taken = {u.get("name") for u in over_units}
    out += [u for u in base_units if u.get("name") not in taken]
    return out


def finalize_for_flavor(cfg: dict[str, Any], flavor: str) -> dict[str, Any]:
    """Spell every unit's drop-ins the flavour's way: `drop_ins` (Flatcar) or `drop-ins` (CoreOS)."""
    key = "drop_ins" if flavor == "flatcar" else "drop-ins"
    coreos = cfg.get("coreos")
    if isinstance(coreos, dict) and isinstance(coreos.get("units"), list):
        units = []
        for unit in coreos["units"]:
            unit = _normalize_unit(unit)
            if "drop_ins" in unit:
                unit[key] = unit.pop("drop_ins")
            units.append(unit)
        coreos["units"] = units
    return cfg
