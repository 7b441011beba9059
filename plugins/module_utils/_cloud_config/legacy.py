# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An existing CoreOS cloud-config used as the base: volume wipes, old discovery URLs, what Flatcar lacks.

People bring the cloud-config their CoreOS clusters booted with. Three rules make it safe to lay the
generated layer over it:

- refuse_volume_wipes (both flavours): a unit that runs wipefs, mkfs*, mke2fs, mkswap, blkdiscard or
  shred on the data volume, or dd with it as `of=`, is refused with the unit and the line. The
  collection formats the volume once itself (format-ebs.service); such a unit, started at every boot,
  would erase /media/ebs on every reboot.
- replace_discovery_urls (both flavours): every etcd discovery URL the base carries (ETCD_DISCOVERY=,
  --discovery, a `discovery:` key, a https://discovery.etcd.io/... URL) becomes the cluster's fresh one,
  so no placeholder or old token boots, and a re-run reading the user data back finds one URL only.
  coreos.etcd2 is left to the merge (coreos) or to the translation (flatcar).
- translate_for_flatcar: Flatcar has neither etcd2 nor fleet (its coreos-cloudinit warns that the keys
  etcd2 and fleet are deprecated and does nothing with them). coreos.etcd2 becomes ETCD_* lines in a
  drop-in of etcd-member.service and coreos.fleet FLEET_* lines in a drop-in of the collection's
  fleet.service (fleet metadata pairs join fleet_metadata); entries named etcd2.service and
  fleet.service go, since the collection starts etcd-member.service and its own fleet.service.

coreos-cloudinit turns each key into its variable the same way: ETCD_/FLEET_ and the key upper-cased
with `-` as `_` (config/etcd2.go, config/fleet.go env tags). Where the generated drop-in or unit sets
the same variable, the generated value wins. Every translated, replaced or dropped key is named in one
warning, never with its value (a discovery URL is a secret).
"""

from __future__ import annotations

import copy
import dataclasses
import posixpath
import re
from typing import Any, Iterator, Mapping, Pattern

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.entries import (
    _find_key,
    _norm,
    _normalize_unit,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.merge import merge_cloud_config
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.settings import (
    CloudConfigSettings,
    EbsSettings,
    format_fleet_metadata,
    validate_settings,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.units import (
    etcd_member_dropin,
    fleet_flatcar_units,
    mount_unit_name,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError


ETCD2_DROPIN_NAME = "10-clct-coreos-etcd2.conf"
FLEET_DROPIN_NAME = "10-clct-coreos-fleet.conf"
# Units the base may start that Flatcar does not have; the collection starts its own instead.
FLATCAR_MISSING_UNITS = {
    "etcd2.service": "Flatcar has no etcd2.service (the collection starts etcd-member.service)",
    "fleet.service": "Flatcar has no fleet (the collection installs fleetd and starts its own fleet.service)",
}
# coreos.etcd2 keys (underscore form) that cannot carry over to the generated etcd-member.
_ETCD2_DROPPED = {
    # etcd refuses more than one way to bootstrap: discovery (generated) or initial-cluster or discovery-srv.
    "initial_cluster": "etcd-member joins its cluster through the generated discovery setting",
    "discovery_srv": "etcd-member joins its cluster through the generated discovery setting",
    # Flatcar's etcd-wrapper runs etcd in a container that keeps its data in /var/lib/etcd; another path
    # would be inside the container and lost with it.
    "data_dir": "etcd-member keeps its data in /var/lib/etcd, which Flatcar's etcd-wrapper mounts",
    "wal_dir": "etcd-member keeps its data in /var/lib/etcd, which Flatcar's etcd-wrapper mounts",
}
# etcd2's ca-file and peer-ca-file meant "trust this CA and require client certificates"; etcd 3.4
# removed them in favour of the pair below (coreos-cloudinit's etcd2.go says as much).
_ETCD2_RENAMED = {
    "ca_file": (("ETCD_TRUSTED_CA_FILE", None), ("ETCD_CLIENT_CERT_AUTH", "true")),
    "peer_ca_file": (("ETCD_PEER_TRUSTED_CA_FILE", None), ("ETCD_PEER_CLIENT_CERT_AUTH", "true")),
}
_ENV_NAME_RE = re.compile(r'^Environment="?([A-Z][A-Z0-9_]*)=', re.M)
_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")

# Tools whose every use on a block device destroys what it holds; dd only when it writes the device (of=).
_WIPE_TOOL_RE = re.compile(r"^(?:wipefs|mkfs(?:\.[A-Za-z0-9]+)?|mke2fs|mkswap|blkdiscard|shred)$")
_EXEC_LINE_RE = re.compile(r"^\s*(Exec[A-Za-z]*)\s*=")
# Where one shell command ends and the next begins; quotes are dropped first, so `sh -c "wipefs ..."` counts.
_COMMAND_SPLIT_RE = re.compile(r"&&|\|\||\$\(|[;|&()`]")

# The discovery URL forms a base may carry outside coreos.etcd2 (the ones _discovery/user_data.py reads
# back): a systemd/shell ETCD_DISCOVERY= assignment, an etcd --discovery flag, or the public service's URL
# (the placeholder https://discovery.etcd.io/<token> included; /new, which mints a token, is no token).
_DISCOVERY_TEXT_RES = (
    re.compile(r"""(?:^|(?<=[\s"'=]))(ETCD_DISCOVERY=["']?)(https?://[^\s"'\\]+)""", re.M),
    re.compile(r"""(?<![\w-])(--?discovery(?:=|[ \t]+)["']?)(https?://[^\s"'\\]+)"""),
    re.compile(r"""()(https?://discovery\.etcd\.io/(?!new(?:[?/]|$|[\s"']))[^\s"'\\,;]+)"""),
)


# --------------------------------------------------------------------------------------------
# Units that would wipe the data volume
# --------------------------------------------------------------------------------------------

def _twin(device: str) -> str | None:
    """/dev/sdb <-> /dev/xvdb: the same EBS attachment under Xen's name (as coreos-ebs-prepare looks for it)."""
    directory, name = posixpath.split(device)
    if name.startswith("sd"):
        return posixpath.join(directory, "xvd" + name[2:])
    if name.startswith("xvd"):
        return posixpath.join(directory, "sd" + name[3:])
    return None


def _volume_device_re(ebs: EbsSettings) -> Pattern[str]:
    """The names the data volume (or a partition of it) can have on a machine, as coreos-ebs-prepare finds it:
    the given device, its Xen twin, an NVMe namespace on Nitro instances, and its label."""
    names = [ebs.device] + ([_twin(ebs.device)] if _twin(ebs.device) else [])
    alternatives = [re.escape(name) + r"(?:p?\d+)?" for name in names]
    # coreos-ebs-prepare takes any EBS NVMe disk that is not the root disk: nvme1n1 usually, but the
    # numbering is not fixed, and the root disk (nvme0n1) is no better a target.
    alternatives.append(r"/dev/nvme\d+n\d+(?:p\d+)?")
    alternatives.append(re.escape(f"/dev/disk/by-label/{ebs.label}"))
    return re.compile("|".join(alternatives))


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(number of the first line, text) of each line of a unit file, `\\`-continued lines joined."""
    start, parts = 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        yield start, " ".join(parts)
        parts = []
    if parts:
        yield start, " ".join(parts)


def wiped_device(command: str, device_re: Pattern[str]) -> str | None:
    """The device of the data volume that a unit's command line would wipe or format, or None.

    Looks at each shell command in the line (also inside `sh -c "..."`): a wiping tool with the
    volume as an argument, or dd writing to it (`of=`). A mere mention (blkid, mount) is harmless.
    """
    text = re.sub(r"""["'\\]""", " ", command.lstrip().lstrip("@-:+!"))
    for part in _COMMAND_SPLIT_RE.split(text):
        words = part.split()
        names = [posixpath.basename(word) for word in words]
        if any(_WIPE_TOOL_RE.match(name) for name in names):
            for word in words:
                if device_re.fullmatch(word):
                    return word
        if "dd" in names:
            for word in words:
                if word.startswith("of=") and device_re.fullmatch(word[3:]):
                    return word[3:]
    return None


def _unit_texts(unit: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, text) of a unit's content and of each of its drop-ins."""
    unit = _normalize_unit(unit)
    if isinstance(unit.get("content"), str):
        yield f"unit {unit['name']}", unit["content"]
    for dropin in unit.get("drop_ins") or []:
        if isinstance(dropin, Mapping) and isinstance(dropin.get("content"), str):
            yield f"unit {unit['name']} drop-in {dropin.get('name')}", dropin["content"]


def volume_wipes(cfg: Mapping[str, Any], ebs: EbsSettings) -> list[tuple[str, str, int, str]]:
    """(unit name, where, line number, line) of every Exec* line in coreos.units that would wipe the volume."""
    device_re = _volume_device_re(ebs)
    coreos_key = _find_key(cfg, "coreos")
    coreos = cfg[coreos_key] if coreos_key is not None else None
    units_key = _find_key(coreos, "units") if isinstance(coreos, Mapping) else None
    units = (coreos[units_key] if units_key is not None else None) or []
    found = []
    for unit in units:
        if not isinstance(unit, Mapping):
            continue
        for where, text in _unit_texts(unit):
            for number, line in _logical_lines(text):
                match = _EXEC_LINE_RE.match(line)
                if match and wiped_device(line[match.end():], device_re):
                    found.append((unit["name"], where, number, " ".join(line.split())))
    return found


def refuse_volume_wipes(cfg: Mapping[str, Any], ebs: EbsSettings, source: str) -> None:
    """Raise ValidationError naming each unit line of `cfg` that would wipe or format the data volume.

    Nothing to check when the collection does not manage the volume (ebs.enabled false).
    """
    if not ebs.enabled:
        return
    found = volume_wipes(cfg, ebs)
    if not found:
        return
    lines = "; ".join(f"{where}, line {number}: {line[:200]}" for _name, where, number, line in found)
    several = len({name for name, _where, _number, _line in found}) > 1
    twin = _twin(ebs.device)
    raise ValidationError(
        f"{source}: {'units' if several else 'a unit'} would wipe or format the data volume ({ebs.device}"
        f"{f', {twin}' if twin else ''} or its NVMe name) whenever {'they start' if several else 'it starts'}: "
        f"{lines}. The collection formats the volume once by itself: format-ebs.service gives it a "
        f"filesystem ({ebs.filesystem}) only when it has none, and {mount_unit_name(ebs.mount_point)} mounts it at "
        f"{ebs.mount_point}; a unit that wipes or formats it would erase that data at every boot. Remove "
        f"{'those units' if several else 'that unit'} (or the lines) from the cloud-config."
    )


# --------------------------------------------------------------------------------------------
# Discovery URLs
# --------------------------------------------------------------------------------------------

_V3_CONFLICT = (
    "{source}: {where} carries an etcd v2 discovery URL, but this cluster uses v3 discovery (discovery_token): "
    "remove it; the collection writes the discovery setting itself"
)


def _replace_urls(text: str, fresh: str | None, where: str, source: str) -> tuple[str, bool]:
    found = False

    def swap(match: re.Match) -> str:
        nonlocal found
        found = True
        return match.group(1) + (fresh or "")

    for regex in _DISCOVERY_TEXT_RES:
        text = regex.sub(swap, text)
    if found and fresh is None:
        raise ValidationError(_V3_CONFLICT.format(source=source, where=where))
    return text, found


def replace_discovery_urls(
    cfg: dict[str, Any], settings: CloudConfigSettings, generated: Mapping[str, Any], label: str,
    source: str = "the base file",
) -> list[str]:
    """Replace, in place, every discovery URL of the merged `cfg` that the collection did not write.

    `generated` is the layer the collection laid over (generate_cloud_config): its units' content, its
    drop-ins and its files are left alone, and so is coreos.etcd2, whose discovery key the generated layer
    sets (coreos) or translate_for_flatcar dropped (flatcar). Everything else gets settings.discovery_url;
    with v3 discovery (discovery_token) there is no URL to put there, so a URL is refused. Returns one
    warning per place, naming the place but not the URL.
    """
    fresh = settings.discovery_url
    what = "the cluster's fresh discovery URL"
    warnings: list[str] = []
    ours_units = {u["name"]: u for u in (generated.get("coreos") or {}).get("units") or []}
    ours_files = {f["path"] for f in generated.get("write_files") or []}

    def visit(node: Any, where: str, key: Any = None) -> Any:
        if isinstance(node, str):
            if _norm(key) == "discovery" and re.match(r"^https?://", node.strip()):
                if fresh is None:
                    raise ValidationError(_V3_CONFLICT.format(source=source, where=where))
                if node.strip() != fresh:
                    warnings.append(f"{where} from {label} is replaced by {what}")
                return fresh
            new, found = _replace_urls(node, fresh, where, source)
            if found and new != node:
                warnings.append(f"the discovery URL in {where} from {label} is replaced by {what}")
            return new
        if isinstance(node, dict):
            for child_key in list(node):
                node[child_key] = visit(node[child_key], f"{where}.{child_key}", child_key)
        elif isinstance(node, list):
            for i, child in enumerate(node):
                node[i] = visit(child, f"{where}[{i}]")
        return node

    def visit_unit(unit: Any) -> None:
        if not isinstance(unit, dict):
            return
        name = unit.get("name")
        ours = _normalize_unit(ours_units.get(name) or {})
        if isinstance(unit.get("content"), str) and unit["content"] != ours.get("content"):
            unit["content"] = visit(unit["content"], f"unit {name}")
        ours_dropins = {d["name"] for d in ours.get("drop_ins") or []}
        for key in ("drop_ins", "drop-ins"):
            for dropin in unit.get(key) or []:
                if isinstance(dropin, dict) and isinstance(dropin.get("content"), str) \
                        and dropin.get("name") not in ours_dropins:
                    dropin["content"] = visit(dropin["content"], f"unit {name} drop-in {dropin.get('name')}")

    for key in list(cfg):
        norm = _norm(key)
        if norm == "coreos" and isinstance(cfg[key], dict):
            coreos = cfg[key]
            for sub in list(coreos):
                if _norm(sub) == "etcd2":
                    continue
                if _norm(sub) == "units" and isinstance(coreos[sub], list):
                    for unit in coreos[sub]:
                        visit_unit(unit)
                else:
                    coreos[sub] = visit(coreos[sub], f"coreos.{sub}", sub)
        elif norm == "write_files" and isinstance(cfg[key], list):
            for entry in cfg[key]:
                if isinstance(entry, dict) and isinstance(entry.get("content"), str) \
                        and entry.get("path") not in ours_files:
                    entry["content"] = visit(entry["content"], f"write_files {entry.get('path')}")
        else:
            cfg[key] = visit(cfg[key], str(key), key)
    return warnings


# --------------------------------------------------------------------------------------------
# coreos.etcd2, coreos.fleet and their units on Flatcar
# --------------------------------------------------------------------------------------------

def _env_value(value: Any, where: str) -> str:
    """A value as it goes into Environment="NAME=value": one line, `\\` and `"` escaped, `%` doubled."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float, str)):
        text = str(value)
    else:
        raise ValidationError(f"{where} must be a string, a number or true/false")
    if "\n" in text or "\r" in text:
        raise ValidationError(f"{where} must be one line")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def _dropin(assignments: list[tuple[str, str]]) -> str:
    return "[Service]\n" + "".join(f'Environment="{name}={value}"\n' for name, value in assignments)


def _section_keys(section: Any, where: str) -> Iterator[tuple[Any, str, Any]]:
    """(key as written, key in underscore form, value) of a coreos.etcd2/coreos.fleet mapping."""
    if section is None:
        return
    if not isinstance(section, Mapping):
        raise ValidationError(f"{where} must be a mapping")
    for key, value in section.items():
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ValidationError(f"{where}: {key!r} is not a key coreos-cloudinit knows")
        yield key, _norm(key), value


def _translate_etcd2(
    section: Any, settings: CloudConfigSettings, source: str, label: str,
) -> tuple[list[tuple[str, str]], list[str]]:
    generated = set(_ENV_NAME_RE.findall(etcd_member_dropin(settings)))
    assignments: dict[str, str] = {}
    warnings: list[str] = []
    for key, norm, value in _section_keys(section, f"{source}: coreos.etcd2"):
        what = f"coreos.etcd2.{key} from {label}"
        if norm == "discovery":
            warnings.append(f"{what} is replaced by the generated setting (the cluster's fresh discovery setting)")
            continue
        if norm in _ETCD2_DROPPED:
            warnings.append(f"{what} is dropped: {_ETCD2_DROPPED[norm]}")
            continue
        pairs = _ETCD2_RENAMED.get(norm) or (("ETCD_" + norm.upper(), None),)
        kept = [(name, fixed) for name, fixed in pairs if name not in generated]
        if not kept:
            warnings.append(f"{what} is replaced by the generated setting ({', '.join(n for n, dummy in pairs)})")
            continue
        text = _env_value(value, f"{source}: coreos.etcd2.{key}")
        assignments.update((name, text if fixed is None else fixed) for name, fixed in kept)
        warnings.append(
            f"{what} is translated to {', '.join(n for n, dummy in kept)} in etcd-member.service's drop-in "
            f"{ETCD2_DROPIN_NAME} (Flatcar has no etcd2)"
        )
    return list(assignments.items()), warnings


def _fleet_metadata_pairs(value: Any, where: str) -> dict[str, str]:
    """fleet's metadata string `k=v,k2=v2` (config.go ParseMetadata: pairs split on ',', then on the first '=')."""
    if not isinstance(value, str):
        raise ValidationError(f"{where} must be a string like region=us-east-1,role=web")
    pairs: dict[str, str] = {}
    for pair in value.split(","):
        if not pair.strip():
            continue
        key, sep, val = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"{where} must be key=value pairs separated by ',' like region=us-east-1,role=web")
        pairs[key.strip()] = val.strip()
    try:
        format_fleet_metadata(pairs)
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc.msg}") from None
    return pairs


def _translate_fleet(
    section: Any, settings: CloudConfigSettings, source: str, label: str,
) -> tuple[list[tuple[str, str]], dict[str, str], list[str]]:
    """FLEET_* assignments for the drop-in, metadata pairs for fleet_metadata, warnings."""
    assignments: list[tuple[str, str]] = []
    metadata: dict[str, str] = {}
    warnings: list[str] = []
    if not settings.fleet:
        for key, _norm_key, _value in _section_keys(section, f"{source}: coreos.fleet"):
            warnings.append(f"coreos.fleet.{key} from {label} is dropped: fleet is off and Flatcar has no fleet")
        return assignments, metadata, warnings
    service = next(u for u in fleet_flatcar_units(settings) if u["name"] == "fleet.service")
    generated = set(_ENV_NAME_RE.findall(service["content"])) - {"FLEET_METADATA"}
    for key, norm, value in _section_keys(section, f"{source}: coreos.fleet"):
        what = f"coreos.fleet.{key} from {label}"
        name = "FLEET_" + norm.upper()
        if norm == "metadata":
            metadata = _fleet_metadata_pairs(value, f"{source}: coreos.fleet.{key}")
            taken = sorted(k for k in metadata if k in {str(g) for g in settings.fleet_metadata})
            note = f" (the generated keys win: {', '.join(taken)})" if taken else ""
            warnings.append(f"{what} is merged into the generated FLEET_METADATA of fleet.service{note}")
            continue
        if name in generated:
            warnings.append(f"{what} is replaced by the generated setting ({name})")
            continue
        assignments.append((name, _env_value(value, f"{source}: coreos.fleet.{key}")))
        warnings.append(
            f"{what} is translated to {name} in fleet.service's drop-in {FLEET_DROPIN_NAME} (Flatcar has no fleet)"
        )
    return assignments, metadata, warnings


def translate_for_flatcar(
    cfg: dict[str, Any], settings: CloudConfigSettings, label: str, source: str = "the base file",
) -> tuple[dict[str, Any], CloudConfigSettings, list[str]]:
    """The base without coreos.etcd2, coreos.fleet, etcd2.service and fleet.service, what they set moved to
    drop-ins of etcd-member.service and fleet.service, and the settings with the base's fleet metadata
    pairs added (settings' own keys win). Units are expected under `drop_ins` already (load_base)."""
    cfg = copy.deepcopy(cfg)
    warnings: list[str] = []
    coreos_key = _find_key(cfg, "coreos")
    coreos = cfg.get(coreos_key) if coreos_key is not None else None
    if not isinstance(coreos, dict):
        return cfg, settings, warnings

    etcd_env: list[tuple[str, str]] = []
    etcd2_key = _find_key(coreos, "etcd2")
    if etcd2_key is not None:
        etcd_env, notes = _translate_etcd2(coreos.pop(etcd2_key), settings, source, label)
        warnings += notes
    fleet_env: list[tuple[str, str]] = []
    fleet_key = _find_key(coreos, "fleet")
    if fleet_key is not None:
        fleet_env, metadata, notes = _translate_fleet(coreos.pop(fleet_key), settings, source, label)
        warnings += notes
        if metadata:
            merged = dict(metadata)
            merged.update(settings.fleet_metadata)
            settings = dataclasses.replace(settings, fleet_metadata=merged)
            validate_settings(settings)

    units_key = _find_key(coreos, "units")
    if units_key is not None and isinstance(coreos[units_key], list):
        kept = []
        for unit in coreos[units_key]:
            why = FLATCAR_MISSING_UNITS.get(unit.get("name")) if isinstance(unit, Mapping) else None
            if why and unit["name"] == "fleet.service" and not settings.fleet:
                why = "Flatcar has no fleet, and fleet is off"
            if why is None:
                kept.append(unit)
                continue
            extra = [k for k in ("content", "drop_ins") if unit.get(k)]
            with_what = f" with its {' and '.join(k.replace('_', '-') for k in extra)}" if extra else ""
            warnings.append(f"unit {unit['name']} from {label} is dropped{with_what}: {why}")
        coreos[units_key] = kept

    layer_units = [
        {"name": unit, "drop_ins": [{"name": dropin_name, "content": _dropin(env)}]}
        for unit, dropin_name, env in (
            ("etcd-member.service", ETCD2_DROPIN_NAME, etcd_env),
            ("fleet.service", FLEET_DROPIN_NAME, fleet_env),
        )
        if env
    ]
    if layer_units:
        # A base drop-in of the same name is replaced, and the merge names it in a warning.
        cfg, notes = merge_cloud_config(
            cfg, {"coreos": {"units": layer_units}}, "the translation of coreos.etcd2/fleet", label
        )
        warnings += notes
    return cfg, settings, warnings
