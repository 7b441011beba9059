# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cloud-config as text: reading and parsing a base file, rendering the user data, checking it.

Parsing rejects duplicate keys and names the file and line of a problem; the rendered user data
must parse back to the same cloud-config and fit EC2's user data limit.
"""

from __future__ import annotations

import base64
import datetime
import traceback
from typing import Any, Mapping

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.entries import (
    _find_key,
    _normalize_unit,
    validate_unit,
    validate_write_file,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError

try:
    import yaml

    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError:  # the module reports it with missing_required_lib
    yaml = None
    HAS_YAML = False
    YAML_IMPORT_ERROR = traceback.format_exc()


# EC2 rejects user data over 16 KB, counted on the raw text before base64.
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html
EC2_USER_DATA_LIMIT = 16384


def _yaml_loader() -> type:
    """A safe loader that also rejects duplicate keys (PyYAML silently keeps the last one)."""

    class _Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict:
        loader.flatten_mapping(node)
        seen: dict[Any, Any] = {}
        for key_node, _value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                    )
            except TypeError:
                pass  # unhashable keys fail below with PyYAML's own message
            seen[key] = True
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return _Loader


def _yaml_dumper() -> type:
    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:  # no &id001 anchors: cloudinit users read this
            return True

    def represent_str(dumper: Any, data: str) -> Any:
        # Multi-line strings (units, scripts) as literal blocks, as people write cloud-config.
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    _Dumper.add_representer(str, represent_str)
    return _Dumper


def _require_yaml() -> None:
    if not HAS_YAML:
        raise ValidationError("PyYAML is required to build cloud-config")


def parse_cloud_config(text: str, source: str = "cloud-config") -> dict[str, Any]:
    """Parse cloud-config text; errors name `source` and the 1-based line of the problem."""
    _require_yaml()
    if not isinstance(text, str):
        raise ValidationError(f"{source}: cloud-config must be text")
    first_line = text.split("\n", 1)[0].rstrip()
    if first_line != "#cloud-config":
        # coreos-cloudinit's IsCloudConfig: anything else is run as a script or ignored.
        raise ValidationError(f"{source}: line 1 must be '#cloud-config' (coreos-cloudinit ignores the file otherwise)")
    try:
        data = yaml.load(text, Loader=_yaml_loader())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "an unknown line"
        problem = exc.problem or exc.context or "invalid YAML"
        # An unclosed bracket or quote is reported at the end of the file; say where it started.
        context = ""
        if exc.problem and exc.context and exc.context_mark and exc.context_mark is not mark:
            context = f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise ValidationError(f"{source}: invalid YAML at {where}: {problem}{context}") from None
    except yaml.YAMLError as exc:
        raise ValidationError(f"{source}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationError(f"{source}: the top level must be a mapping of cloud-config keys, not a {type(data).__name__}")
    return data


def _section(parent: dict[str, Any], name: str, empty: Any, error: str) -> Any:
    """The value under `name` in any spelling _find_key accepts, None when there is none.

    An empty value (`coreos:` with nothing after it) becomes `empty` in place; any other value must be of
    empty's type, else ValidationError(error).
    """
    key = _find_key(parent, name)
    if key is None:
        return None
    value = parent[key]
    if value is None:
        value = parent[key] = empty
    if not isinstance(value, type(empty)):
        raise ValidationError(error)
    return value


def load_base(text: str, source: str) -> dict[str, Any]:
    """Parse and check the base file's structure; drop-ins land under `drop_ins` whatever the spelling."""
    data = parse_cloud_config(text, source)
    coreos = _section(data, "coreos", {}, f"{source}: coreos must be a mapping")
    units = _section(coreos, "units", [], f"{source}: coreos.units must be a list") if coreos is not None else None
    for i, unit in enumerate(units or []):
        validate_unit(unit, f"{source}: coreos.units[{i}]")
        units[i] = _normalize_unit(unit)
    files = _section(data, "write_files", [], f"{source}: write_files must be a list")
    for i, entry in enumerate(files or []):
        validate_write_file(entry, f"{source}: write_files[{i}]")
    keys_key = _find_key(data, "ssh_authorized_keys")
    if keys_key is not None and not isinstance(data[keys_key], (list, type(None))):
        raise ValidationError(f"{source}: ssh_authorized_keys must be a list")
    return data


def render_user_data(cfg: Mapping[str, Any]) -> str:
    _require_yaml()
    body = yaml.dump(
        dict(cfg), Dumper=_yaml_dumper(), default_flow_style=False, sort_keys=False, allow_unicode=True, width=1 << 16
    )
    return "#cloud-config\n" + body


def validate_user_data(user_data: str, expected: Mapping[str, Any]) -> int:
    """Parse the rendered text back, check it round-trips and fits EC2's limit; returns its size."""
    parsed = parse_cloud_config(user_data, "generated user data")
    if parsed != expected:
        raise ValidationError("generated user data does not parse back to the same cloud-config (YAML round trip failed)")
    size = len(user_data.encode("utf-8"))
    if size > EC2_USER_DATA_LIMIT:
        raise ValidationError(
            f"user data is {size} bytes, over EC2's limit of {EC2_USER_DATA_LIMIT} bytes (16 KB, before base64): "
            "make the base file, units or write_files smaller"
        )
    return size


def json_safe(value: Any) -> Any:
    """The parsed cloud-config as JSON can carry it: bytes (!!binary) as base64, dates as ISO text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def read_base_file(path: str) -> str:
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"Cannot read the base cloud-config {path}: {exc}") from None
