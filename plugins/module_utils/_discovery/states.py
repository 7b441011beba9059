# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the discovery_token module does in each state, as plain functions returning its result.

- ensure_present: reuse the token the cluster's instances carry, or mint one.
- ensure_absent: delete a self-hosted token.
- token_info: read a token back (size, members) without changing anything (discovery_token_info).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.base import PROTOCOLS, backend_for
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.etcd_v2 import is_v2_url
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.http import Transport, validate_size
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.user_data import (
    describe_reused, find_discovery_in_instances,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError


def ensure_present(
    protocol: str, size: Any, *, service: Optional[str] = None, endpoints: Optional[List[str]] = None,
    existing_user_data: Optional[List[Any]] = None, pending_url: Optional[str] = None, check_mode: bool = False,
    **transport_options: Any,
) -> Dict[str, Any]:
    """Reuse the token the cluster's instances carry, or resume with `pending_url`, or mint one; returns the
    module's result.

    pending_url is a token an interrupted launch of this cluster minted (and recorded): it is taken again when the
    service still has it, with the requested size and no member registered yet; otherwise a new one is minted.

    The transport options are Transport's (timeout, validate_certs, retries, sleep), as for every state.
    """
    size = validate_size(size)
    transport = Transport(**transport_options)
    if protocol not in PROTOCOLS:
        raise ValidationError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol != "etcd_v3" and endpoints:
        raise ValidationError(f"endpoints is only used with protocol=etcd_v3, not {protocol}; use service")
    if protocol == "etcd_v2" and not service:
        raise ValidationError("service is required with protocol=etcd_v2: the client URL of the etcd that hosts tokens, e.g. http://10.0.0.5:2379")
    backend = backend_for(protocol, service, endpoints=endpoints, transport=transport)

    result: Dict[str, Any] = {
        "changed": False, "protocol": protocol, "discovery_url": "", "token": "",
        "endpoints": backend.endpoints, "size": size, "reused": False, "warnings": [],
    }
    existing = find_discovery_in_instances(existing_user_data or [])
    if existing is not None:
        found_protocol, token = describe_reused(existing)
        if found_protocol != protocol:
            result["warnings"].append(
                f"The running instances use protocol {found_protocol}, not the requested {protocol}; reusing theirs"
            )
        result.update(
            protocol=found_protocol, token=token, reused=True, size=None,
            discovery_url=existing.get("url", ""), endpoints=existing.get("endpoints", []),
            diff={"before": {"token_exists": True}, "after": {"token_exists": True}},
        )
        return result

    if pending_url and protocol in ("public", "etcd_v2"):
        why = _pending_unusable(backend_for(protocol, service, url=pending_url, transport=transport), size)
        if not why:
            pending = backend_for(protocol, service, url=pending_url, transport=transport)
            result.update(discovery_url=pending.discovery_url, token=pending.token, reused=True,
                          diff={"before": {"token_exists": True}, "after": {"token_exists": True}})
            return result
        result["warnings"].append(f"The token an interrupted launch of this cluster minted is not reused ({why}); "
                                  "minting a new one")

    result["changed"] = True
    result["diff"] = {"before": {"token_exists": False}, "after": {"token_exists": True}}
    if check_mode:
        return result
    result["discovery_url"], result["token"] = backend.create(size)
    return result


def _pending_unusable(backend: Any, size: int) -> str:
    """Why a token minted earlier cannot bootstrap this launch (empty when it can)."""
    try:
        registry = backend.read()
    except ClusterError as exc:
        return f"it cannot be read: {exc.msg}"
    if not registry.exists:
        return "the service no longer has it"
    if registry.size is not None and registry.size != size:
        return f"it is sized {registry.size}, not {size}"
    if registry.members:
        return f"{len(registry.members)} members registered with it already"
    return ""


def ensure_absent(
    protocol: str, *, url: Optional[str] = None, service: Optional[str] = None, endpoints: Optional[List[str]] = None,
    token: Optional[str] = None, check_mode: bool = False, **transport_options: Any,
) -> Dict[str, Any]:
    """Delete a self-hosted token (v2 by url, v3 by token and endpoints); returns the module's result."""
    transport = Transport(**transport_options)
    if protocol == "etcd_v2":
        if not url:
            raise ValidationError("url is required with state=absent and protocol=etcd_v2: the discovery URL to delete")
        backend = backend_for(protocol, url=url, transport=transport)
    elif protocol == "etcd_v3":
        if not token:
            raise ValidationError("token is required with state=absent and protocol=etcd_v3")
        backend = backend_for(protocol, service, endpoints=endpoints, token=token, transport=transport)
    else:
        raise ValidationError(
            f"state=absent needs protocol=etcd_v2 or etcd_v3, got {protocol!r}: "
            "the public discovery service offers no way to delete a token"
        )
    size = backend.read_size()
    exists = size is not None or backend.exists()
    result: Dict[str, Any] = {
        "changed": exists, "protocol": protocol, "discovery_url": "", "token": "",
        "endpoints": backend.endpoints, "size": size, "reused": False, "warnings": [],
        "diff": {"before": {"token_exists": exists}, "after": {"token_exists": False}},
    }
    if exists and not check_mode:
        # It existed a moment ago and will be gone: a change, even if a retried request whose first
        # answer was lost (or a concurrent run) makes delete find nothing left to delete.
        backend.delete()
    return result


def infer_protocol(url: Optional[str], token: Optional[str]) -> str:
    """The protocol of a token given without one: a URL into /v2/keys/ is etcd_v2, another URL public."""
    if url:
        return "etcd_v2" if isinstance(url, str) and is_v2_url(url) else "public"
    if token:
        return "etcd_v3"
    raise ValidationError("url is required: the discovery URL to read (or token, for protocol=etcd_v3)")


def token_info(
    protocol: Optional[str] = None, *, url: Optional[str] = None, service: Optional[str] = None,
    endpoints: Optional[List[str]] = None, token: Optional[str] = None, **transport_options: Any,
) -> Dict[str, Any]:
    """Read a token back without changing anything; returns the module's result.

    Bad input raises ValidationError. A token that cannot be read (service down, not an etcd, ...)
    does not: the result then carries `msg`, with `exists` and `size` None, so that a caller can
    decide (cleanup keeps such a token in its plan rather than forget it).
    """
    transport = Transport(**transport_options)
    if protocol is None:
        protocol = infer_protocol(url, token)
    if protocol in ("public", "etcd_v2"):
        if not url:
            raise ValidationError(f"url is required with protocol={protocol}: the discovery URL to read")
        if token or endpoints:
            raise ValidationError(f"token and endpoints are only used with protocol=etcd_v3, not {protocol}")
        backend = backend_for(protocol, url=url, transport=transport)
    elif protocol == "etcd_v3":
        if not token:
            raise ValidationError("token is required with protocol=etcd_v3: the v3 discovery token to read")
        if url:
            raise ValidationError("url is only used with protocol=public or etcd_v2; etcd_v3 reads token at endpoints")
        backend = backend_for(protocol, service, endpoints=endpoints, token=token, transport=transport)
    else:
        raise ValidationError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")

    result: Dict[str, Any] = {
        "changed": False, "protocol": protocol, "discovery_url": backend.discovery_url,
        "service": "" if protocol == "etcd_v3" else backend.service, "token": backend.token,
        "endpoints": backend.endpoints, "size": None, "members": [], "exists": None,
        "deletable": backend.deletable,
    }
    try:
        registry = backend.read()
    except ClusterError as exc:
        result["msg"] = exc.msg
        return result
    result.update(exists=registry.exists, size=registry.size, members=registry.members)
    return result


TOKEN_REQUIRED_IF = [("state", "present", ["size"])]
TOKEN_MUTUALLY_EXCLUSIVE = [("service", "endpoints")]


def token_argument_spec() -> Dict[str, Any]:
    """The discovery_token module's options (the module and the controller-side action plugin)."""
    from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.http import transport_argument_spec

    return dict(
        protocol=dict(type="str", default="public", choices=["public", "etcd_v2", "etcd_v3"]),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        service=dict(type="str"),
        endpoints=dict(type="list", elements="str"),
        size=dict(type="int"),
        url=dict(type="str", no_log=True),
        token=dict(type="str", no_log=True),
        existing_user_data=dict(type="list", elements="str", no_log=True),
        resume_url=dict(type="str", no_log=False),
        **transport_argument_spec(),
    )


def run_token(p: Dict[str, Any], check_mode: bool = False) -> Tuple[Dict[str, Any], List[str]]:
    """The discovery_token module's result and warnings; raises ClusterError."""
    from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.http import transport_options

    transport = transport_options(p)
    if p["state"] == "present":
        if p["url"] or p["token"]:
            raise ValidationError("url and token are only used with state=absent (resume_url resumes a token)")
        result = ensure_present(
            p["protocol"], p["size"], service=p["service"], endpoints=p["endpoints"],
            existing_user_data=p["existing_user_data"], pending_url=p["resume_url"], check_mode=check_mode, **transport,
        )
    else:
        result = ensure_absent(
            p["protocol"], url=p["url"], service=p["service"], endpoints=p["endpoints"], token=p["token"],
            check_mode=check_mode, **transport,
        )
    return result, result.pop("warnings")


def token_info_argument_spec() -> Dict[str, Any]:
    """The discovery_token_info module's options (the module and the controller-side action plugin)."""
    from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.http import transport_argument_spec

    return dict(
        url=dict(type="str", no_log=True),
        token=dict(type="str", no_log=True),
        protocol=dict(type="str", choices=["public", "etcd_v2", "etcd_v3"]),
        service=dict(type="str"),
        endpoints=dict(type="list", elements="str"),
        **transport_argument_spec(),
    )


TOKEN_INFO_MUTUALLY_EXCLUSIVE = [("service", "endpoints")]


def run_token_info(p: Dict[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """The discovery_token_info module's result; raises ClusterError for bad input."""
    from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.http import transport_options

    return token_info(p["protocol"], url=p["url"], service=p["service"], endpoints=p["endpoints"], token=p["token"],
                      **transport_options(p)), []
