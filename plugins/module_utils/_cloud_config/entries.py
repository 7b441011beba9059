# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The entries of a cloud-config's coreos.units and write_files: their rules and spellings.

systemd's unit name rules, the unit commands and flags coreos-cloudinit accepts, drop-in and file
checks, the `-`/`_` key spellings coreos-cloudinit treats alike, and readers of the units a
cloud-config holds.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError


UNIT_COMMANDS = ("start", "stop", "restart", "reload", "try-restart", "reload-or-restart", "reload-or-try-restart")
# Unit types systemd knows, plus the networkd files coreos-cloudinit also handles as units.
UNIT_TYPES = (
    "service", "socket", "device", "mount", "automount", "swap", "target", "path", "timer", "slice", "scope",
    "network", "netdev", "link",
)
_UNIT_BOOL_FIELDS = ("enable", "mask", "runtime")
_UNIT_FIELDS = ("name", "command", "enable", "content", "mask", "runtime", "drop_ins")
_FILE_FIELDS = ("path", "content", "permissions", "owner", "encoding")
# systemd's unit-name.c: VALID_CHARS, and "@" only as the template/instance separator.
_UNIT_NAME_RE = re.compile(
    r"^(?P<prefix>[A-Za-z0-9:_.\\-]+)(?:@(?P<instance>[A-Za-z0-9:_.\\@-]*))?\.(?P<type>[a-z]+)$"
)
_UNIT_NAME_MAX = 255
_DROPIN_NAME_RE = re.compile(r"^[A-Za-z0-9:_.@\\-]+\.conf$")


def unit_name_problem(name: Any) -> str | None:
    """Why `name` is not a valid systemd unit name, or None when it is."""
    if not isinstance(name, str) or not name:
        return "the name must be a non-empty string"
    if len(name) > _UNIT_NAME_MAX:
        return f"the name is longer than {_UNIT_NAME_MAX} characters"
    match = _UNIT_NAME_RE.match(name)
    if not match:
        return "the name must be NAME.TYPE, NAME@.TYPE or NAME@INSTANCE.TYPE of letters, digits and ':_.\\-'"
    if match.group("type") not in UNIT_TYPES:
        return f"'.{match.group('type')}' is not a unit type ({', '.join(UNIT_TYPES)})"
    return None


def validate_unit_name(name: Any, where: str = "unit") -> None:
    problem = unit_name_problem(name)
    if problem:
        raise ValidationError(f"{where}: {name!r} is not a valid systemd unit name: {problem}")


def validate_unit(unit: Any, where: str) -> None:
    """One entry of coreos.units (drop-ins already under `drop_ins`, or still `drop-ins`)."""
    if not isinstance(unit, Mapping):
        raise ValidationError(f"{where} must be a mapping with at least a name")
    name = unit.get("name")
    validate_unit_name(name, where)
    where = f"{where} ({name})"
    command = unit.get("command")
    if command is not None and command not in UNIT_COMMANDS:
        raise ValidationError(f"{where}: command {command!r} is not one of {', '.join(UNIT_COMMANDS)}")
    for key in _UNIT_BOOL_FIELDS:
        if key in unit and not isinstance(unit[key], bool):
            raise ValidationError(f"{where}: {key} must be true or false, not {unit[key]!r}")
    if "content" in unit and not isinstance(unit["content"], str):
        raise ValidationError(f"{where}: content must be a string")
    for key in ("drop_ins", "drop-ins"):
        if key not in unit:
            continue
        dropins = unit[key]
        if not isinstance(dropins, list):
            raise ValidationError(f"{where}: {key} must be a list")
        for j, dropin in enumerate(dropins):
            if not isinstance(dropin, Mapping):
                raise ValidationError(f"{where}: {key}[{j}] must be a mapping with name and content")
            dname = dropin.get("name")
            if not isinstance(dname, str) or not _DROPIN_NAME_RE.match(dname):
                raise ValidationError(f"{where}: drop-in name {dname!r} must be a file name ending in .conf")
            if not isinstance(dropin.get("content"), str):
                raise ValidationError(f"{where}: drop-in {dname} needs its content as a string")


def validate_write_file(entry: Any, where: str) -> None:
    if not isinstance(entry, Mapping):
        raise ValidationError(f"{where} must be a mapping with at least a path")
    path = entry.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValidationError(f"{where}: path {path!r} must be an absolute path")
    if posixpath.dirname(posixpath.normpath(path)).startswith("/usr"):
        # coreos-cloudinit's validator rejects these too: /usr is read-only on both flavours.
        raise ValidationError(f"{where}: {path} is on the read-only /usr")
    if "permissions" in entry:
        perms = entry["permissions"]
        if isinstance(perms, bool) or not re.match(r"^0?[0-7]{3,4}$", str(perms)):
            raise ValidationError(f"{where} ({path}): permissions {perms!r} must be octal like '0644'")


def _norm(key: Any) -> Any:
    # coreos-cloudinit replaces '-' with '_' in every key before matching (config.go).
    return key.replace("-", "_") if isinstance(key, str) else key


def _find_key(mapping: Mapping[Any, Any], key: str) -> Any:
    for existing in mapping:
        if _norm(existing) == _norm(key):
            return existing
    return None


def _normalize_unit(unit: Mapping[str, Any]) -> dict[str, Any]:
    """Unit keys in their underscore form; `drop-ins` and `drop_ins` merged into `drop_ins`."""
    out: dict[str, Any] = {}
    dropins: list[Any] = []
    has_dropins = False
    for key, value in unit.items():
        if _norm(key) == "drop_ins":
            has_dropins = True
            dropins.extend(value or [])
        else:
            out[_norm(key)] = value
    if has_dropins:
        out["drop_ins"] = dropins
    return out


def validate_cloud_config(cfg: Mapping[str, Any], source: str = "user data") -> None:
    """Structure checks over the merged result: unit names, commands, flags, drop-ins, files."""
    coreos = cfg.get("coreos") or {}
    if not isinstance(coreos, Mapping):
        raise ValidationError(f"{source}: coreos must be a mapping")
    _validate_each_once(coreos.get("units") or [], validate_unit, source, "coreos.units", "name", "unit ")
    _validate_each_once(cfg.get("write_files") or [], validate_write_file, source, "write_files", "path", "")


def _validate_each_once(
    items: Iterable[Any], validate: Callable[[Any, str], None], source: str, section: str, key: str, label: str,
) -> None:
    """validate() each item of `section`, then refuse a second item with the same `key` (a unit name, a file path)."""
    seen = set()
    for i, item in enumerate(items):
        validate(item, f"{source}: {section}[{i}]")
        if item[key] in seen:
            raise ValidationError(f"{source}: {label}{item[key]} appears twice in {section}")
        seen.add(item[key])


def iter_unit_files(cfg: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """(relative path, text) of every unit file and drop-in the cloud-config writes: for checks."""
    for unit in (cfg.get("coreos") or {}).get("units") or []:
        unit = _normalize_unit(unit)
        if "content" in unit:
            yield unit["name"], unit["content"]
        for dropin in unit.get("drop_ins") or []:
            yield f"{unit['name']}.d/{dropin['name']}", dropin["content"]


def unit_names(cfg: Mapping[str, Any]) -> Sequence[str]:
    return [u["name"] for u in (cfg.get("coreos") or {}).get("units") or []]
