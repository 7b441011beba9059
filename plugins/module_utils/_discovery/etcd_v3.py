# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_v3: etcd 3.6+ v3 discovery, a token kept in a self-hosted etcd's v3 key space.

etcd reads /_etcd/registry/<token>/_config/size and registers members as
/_etcd/registry/<token>/members/<member id> (etcd server/etcdserver/api/v3discovery/discovery.go).
Members get `--discovery-token` and `--discovery-endpoints`. Keys are written and read through the
v3 JSON gateway (POST /v3/kv/...), which etcd 3.4 serves too; it carries keys and values base64
encoded and 64-bit numbers as strings.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.base import (
    REGISTRY_PREFIX, Backend, Registry, registered_members,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.http import (
    CONTENT_JSON, TRANSPORT_ERRORS, Transport, is_transient, json_body, printable, validate_endpoints, validate_size,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError

# A v3 token becomes part of an etcd key path: no slashes, nothing a shell or unit file would mangle.
V3_TOKEN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_token(token: Any, option: str = "token") -> str:
    """A v3 discovery token: letters, digits, '.', '_' and '-', at most 128 characters."""
    if not isinstance(token, str) or not V3_TOKEN_RE.match(token):
        # The value is a secret: say what is allowed, not what was given.
        raise ValidationError(
            f"{option} must be 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return token


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _unb64(text: Any) -> str:
    try:
        return base64.b64decode(text or "").decode("utf-8", "replace")
    except (binascii.Error, ValueError, TypeError):
        return ""


def _prefix_end(prefix: str) -> str:
    """etcd's range_end for "every key starting with prefix" (last byte plus one)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def v3_size_key(token: str) -> str:
    return f"{REGISTRY_PREFIX}/{token}/_config/size"


def v3_token_prefix(token: str) -> str:
    return f"{REGISTRY_PREFIX}/{token}/"


def _size_value(raw: str, action: str, where: str) -> int:
    if not raw.isdigit():
        raise ClusterError(f"Failed to {action} at {where}: _config/size holds '{printable(raw)}', not a number")
    return int(raw)


def registry_of_range(answer: Dict[str, Any], token: str, action: str, where: str) -> Registry:
    """A token's registry from the gateway's answer to a range over /_etcd/registry/<token>/."""
    prefix = v3_token_prefix(token)
    size: Optional[int] = None
    registrations: List[Dict[str, Any]] = []
    kvs = answer.get("kvs") or []
    for kv in kvs:
        if not isinstance(kv, dict):
            continue
        key = _unb64(kv.get("key"))
        if key == v3_size_key(token):
            size = _size_value(_unb64(kv.get("value")), action, where)
        elif key.startswith(prefix + "members/"):
            try:
                created: Any = int(kv.get("create_revision"))
            except (TypeError, ValueError):
                created = None
            # The v2 node shape, which registered_members reads.
            registrations.append({"key": key, "value": _unb64(kv.get("value")), "createdIndex": created})
    return Registry(bool(kvs), size, registered_members(registrations, size))


class EtcdV3Backend(Backend):
    protocol = "etcd_v3"
    deletable = True

    def __init__(self, transport: Transport, endpoints: Optional[List[str]] = None, token: Optional[str] = None) -> None:
        super().__init__(transport)
        self._endpoints = validate_endpoints(endpoints)
        self._token = validate_token(token) if token is not None else ""

    @property
    def service(self) -> str:
        return ", ".join(self._endpoints)

    @property
    def token(self) -> str:
        return self._token

    @property
    def endpoints(self) -> List[str]:
        return list(self._endpoints)

    def _bound_token(self) -> str:
        if not self._token:
            raise ValidationError("token is required with protocol=etcd_v3: the v3 discovery token")
        return self._token

    def _call(self, path: str, payload: Dict[str, Any], action: str) -> Dict[str, Any]:
        """POST a gateway request to the first endpoint that answers; retry the round on transient errors."""
        data = json.dumps(payload).encode()

        def one_round() -> Tuple[int, bytes]:
            last: Optional[BaseException] = None
            for endpoint in self._endpoints:
                try:
                    return self.transport.request("POST", endpoint + path, data=data, headers=CONTENT_JSON)
                except TRANSPORT_ERRORS as exc:
                    if not is_transient(exc):
                        raise
                    last = exc  # a member that is down: ask the next one
            raise last if last is not None else ClusterError(f"Failed to {action}: no endpoints")

        _status, body = self.transport.attempt(action, self.service, one_round)
        return json_body(body, action, self.service)

    def _read_size(self, token: str, action: str) -> Optional[int]:
        answer = self._call("/v3/kv/range", {"key": _b64(v3_size_key(token))}, action)
        kvs = answer.get("kvs") or []
        if not kvs:
            return None
        return _size_value(base64.b64decode(kvs[0].get("value") or "").decode("utf-8", "replace"), action, self.service)

    def _range(self, token: str, action: str, count_only: bool) -> Dict[str, Any]:
        prefix = v3_token_prefix(token)
        payload: Dict[str, Any] = {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}
        if count_only:
            payload["count_only"] = True
        return self._call("/v3/kv/range", payload, action)

    def create(self, size: int) -> Tuple[str, str]:
        """Write /_etcd/registry/<new token>/_config/size = size; returns ("", the token)."""
        size = validate_size(size)
        action = "create discovery token"
        token = uuid.uuid4().hex
        key = _b64(v3_size_key(token))
        # Create-only, like prevExist=false in v2: a retried request whose first answer was lost must not
        # look like a failure, and nothing ever overwrites a token's size.
        txn = {
            "compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": key, "value": _b64(str(size))}}],
        }
        answer = self._call("/v3/kv/txn", txn, action)
        # The gateway leaves out false booleans: no "succeeded" means the key already existed.
        if answer.get("succeeded") is not True:
            stored = self._read_size(token, action)
            if stored != size:
                raise ClusterError(f"Failed to {action} at {self.service}: etcd stored size {stored!r} instead of {size}")
        return "", token

    def read_size(self) -> Optional[int]:
        return self._read_size(self._bound_token(), "read discovery token")

    def exists(self) -> bool:
        return int(self._range(self._bound_token(), "read discovery token", count_only=True).get("count") or 0) > 0

    def read(self) -> Registry:
        action = "read discovery token"
        token = self._bound_token()
        return registry_of_range(self._range(token, action, count_only=False), token, action, self.service)

    def delete(self) -> bool:
        prefix = v3_token_prefix(self._bound_token())
        answer = self._call(
            "/v3/kv/deleterange", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}, "delete discovery token",
        )
        return int(answer.get("deleted") or 0) > 0
