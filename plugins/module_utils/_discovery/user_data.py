# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding the discovery setting a running cluster already uses, in its instances' user data.

User data comes raw or base64 encoded (as EC2's DescribeInstanceAttribute gives it), maybe gzipped,
as a CoreOS/Flatcar cloud-config (YAML), Ignition (JSON) or a plain script. The setting is returned
as {"protocol": "v2", "url": URL} or {"protocol": "v3", "token": T, "endpoints": [URL, ...]}, and
describe_reused() names the discovery_token protocol it belongs to.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote_to_bytes, urlsplit

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.etcd_v2 import is_v2_url
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.etcd_v3 import V3_TOKEN_RE
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.http import validate_service_url
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core; the regex fallback still works
    yaml = None

# ETCD_DISCOVERY=<url> as a systemd Environment= assignment (quoted or not, several per line), an
# EnvironmentFile line or a shell export. The `=` right after the name keeps ETCD_DISCOVERY_TOKEN,
# _ENDPOINTS and _SRV out.
_ENV_V2_RE = re.compile(r"""(?:^|(?<=[\s"'=]))ETCD_DISCOVERY=["']?([^\s"'\\]+)""", re.M)
_ENV_TOKEN_RE = re.compile(r"""(?:^|(?<=[\s"'=]))ETCD_DISCOVERY_TOKEN=["']?([^\s"'\\]+)""", re.M)
_ENV_ENDPOINTS_RE = re.compile(r"""(?:^|(?<=[\s"'=]))ETCD_DISCOVERY_ENDPOINTS=["']?([^\s"'\\]+)""", re.M)
# etcd flags in an ExecStart or script; Go accepts one or two dashes and `=` or a space.
_FLAG_V2_RE = re.compile(r"""(?<![\w-])--?discovery(?:=|[ \t]+)["']?([^\s"'\\]+)""")
_FLAG_TOKEN_RE = re.compile(r"""(?<![\w-])--?discovery-token(?:=|[ \t]+)["']?([^\s"'\\]+)""")
_FLAG_ENDPOINTS_RE = re.compile(r"""(?<![\w-])--?discovery-endpoints(?:=|[ \t]+)["']?([^\s"'\\]+)""")

_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=\s]+$")


def decode_user_data(user_data: Any) -> Optional[str]:
    """User data as text: raw, or base64 (as EC2's DescribeInstanceAttribute gives it), maybe gzipped."""
    if user_data is None:
        return None
    raw: bytes = user_data if isinstance(user_data, bytes) else str(user_data).encode("utf-8", "surrogateescape")
    if not raw.strip():
        return None
    stripped = b"".join(raw.split())
    if _BASE64_RE.match(raw.decode("latin-1")) and len(stripped) % 4 == 0:
        try:
            decoded = base64.b64decode(stripped, validate=True)
        except (binascii.Error, ValueError):
            decoded = None
        if decoded is not None:
            unpacked = _maybe_gunzip(decoded)
            try:
                return unpacked.decode("utf-8")
            except UnicodeDecodeError:
                pass  # base64-looking text that is not: read it as it is
    return _maybe_gunzip(raw).decode("utf-8", "replace")


def _maybe_gunzip(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError):
            return data
    return data


def _structured_strings(text: str) -> Tuple[Any, List[str]]:
    """The parsed document (YAML cloud-config or Ignition JSON) and every string inside it.

    Scanning the strings, not only the raw text, finds settings hidden behind JSON escapes, YAML
    quoting or Ignition `data:` URLs.
    """
    document: Any = None
    try:
        document = json.loads(text)
    except ValueError:
        if yaml is not None:
            try:
                document = yaml.safe_load(text)
            except Exception:  # noqa: BLE001 - any YAML trouble means "not YAML": the regex fallback runs
                document = None
    strings: List[str] = []

    def walk(node: Any, depth: int = 0) -> None:
        if depth > 50:
            return
        if isinstance(node, str):
            strings.append(node)
            if node.startswith("data:"):
                strings.append(_decode_data_url(node))
        elif isinstance(node, dict):
            for value in node.values():
                walk(value, depth + 1)
        elif isinstance(node, list):
            for value in node:
                walk(value, depth + 1)

    if isinstance(document, (dict, list)):
        walk(document)
    return document, strings


def _decode_data_url(url: str) -> str:
    """The text of an RFC 2397 data: URL (Ignition writes file contents that way)."""
    header, _sep, payload = url.partition(",")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(payload).decode("utf-8", "replace")
        return unquote_to_bytes(payload).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def _legacy_coreos_discovery(document: Any) -> List[str]:
    """coreos.etcd2.discovery (and the older coreos.etcd.discovery) of a CoreOS cloud-config."""
    found = []
    coreos = document.get("coreos") if isinstance(document, dict) else None
    if isinstance(coreos, dict):
        for section in ("etcd2", "etcd"):
            settings = coreos.get(section)
            if isinstance(settings, dict) and isinstance(settings.get("discovery"), str):
                found.append(settings["discovery"].strip())
    return found


def _is_http_url(value: str) -> bool:
    try:
        validate_service_url(value)
    except ValidationError:
        return False
    return True


def _ordered_unique(values: Iterable[str]) -> List[str]:
    seen: List[str] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def find_discovery_in_user_data(user_data: Any) -> Optional[Dict[str, Any]]:
    """The discovery setting carried by one instance's user data, or None.

    Returns {"protocol": "v2", "url": URL} or {"protocol": "v3", "token": T, "endpoints": [URL, ...]}.
    Raises ClusterError when the user data is contradictory (two different settings, or a v3 token
    without endpoints): minting a new token then would split the cluster.
    """
    text = decode_user_data(user_data)
    if text is None:
        return None
    document, strings = _structured_strings(text)
    texts = [text] + strings

    v2_urls = [u for u in _legacy_coreos_discovery(document) if _is_http_url(u)]
    tokens: List[str] = []
    endpoint_lists: List[Tuple[str, ...]] = []
    for chunk in texts:
        for regex in (_ENV_V2_RE, _FLAG_V2_RE):
            v2_urls.extend(u for u in regex.findall(chunk) if _is_http_url(u))
        for regex in (_ENV_TOKEN_RE, _FLAG_TOKEN_RE):
            tokens.extend(t for t in regex.findall(chunk) if V3_TOKEN_RE.match(t))
        for regex in (_ENV_ENDPOINTS_RE, _FLAG_ENDPOINTS_RE):
            for value in regex.findall(chunk):
                urls = [e.strip().rstrip("/") for e in value.split(",") if e.strip()]
                if urls and all(_is_http_url(e) for e in urls):
                    endpoint_lists.append(tuple(urls))

    v2_urls = _ordered_unique(u.rstrip("/") for u in v2_urls)
    tokens = _ordered_unique(tokens)
    endpoint_sets = _ordered_unique(tuple(sorted(e)) for e in endpoint_lists)
    if len(v2_urls) > 1:
        raise ClusterError(f"The user data carries {len(v2_urls)} different etcd discovery URLs; cannot tell which one the cluster uses")
    if len(tokens) > 1:
        raise ClusterError(f"The user data carries {len(tokens)} different etcd discovery tokens; cannot tell which one the cluster uses")
    if len(endpoint_sets) > 1:
        raise ClusterError("The user data carries different ETCD_DISCOVERY_ENDPOINTS lists; cannot tell which one the cluster uses")
    if tokens and v2_urls:
        raise ClusterError("The user data carries both a v2 discovery URL and a v3 discovery token; cannot tell which one the cluster uses")
    if tokens:
        if not endpoint_lists:
            raise ClusterError("The user data sets an etcd v3 discovery token but no ETCD_DISCOVERY_ENDPOINTS (--discovery-endpoints)")
        return {"protocol": "v3", "token": tokens[0], "endpoints": list(endpoint_lists[0])}
    if v2_urls:
        return {"protocol": "v2", "url": v2_urls[0]}
    return None


def _setting_key(setting: Dict[str, Any]) -> Tuple[Any, ...]:
    if setting["protocol"] == "v3":
        return ("v3", setting["token"], tuple(sorted(setting["endpoints"])))
    return ("v2", setting["url"])


def find_discovery_in_instances(user_data_list: Iterable[Any]) -> Optional[Dict[str, Any]]:
    """The one discovery setting shared by a cluster's instances (their user data), or None.

    Instances without user data or without a discovery setting are skipped; two instances that
    disagree are an error, since a new member could join either cluster.
    """
    found: List[Tuple[int, Dict[str, Any]]] = []
    for index, user_data in enumerate(user_data_list):
        try:
            setting = find_discovery_in_user_data(user_data)
        except ClusterError as exc:
            raise ClusterError(f"existing_user_data[{index}]: {exc.msg}") from exc
        if setting is not None:
            found.append((index, setting))
    if not found:
        return None
    first_index, first = found[0]
    for index, setting in found[1:]:
        if _setting_key(setting) != _setting_key(first):
            raise ClusterError(
                f"existing_user_data[{first_index}] and existing_user_data[{index}] carry different etcd discovery "
                "settings; refusing to pick one (is an old cluster's instance still listed?)"
            )
    return first


def describe_reused(setting: Dict[str, Any]) -> Tuple[str, str]:
    """(protocol option value, token) for a setting found in user data."""
    if setting["protocol"] == "v3":
        return "etcd_v3", setting["token"]
    url = setting["url"]
    protocol = "etcd_v2" if is_v2_url(url) else "public"
    return protocol, urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
