# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The interface every discovery protocol implements, and backend_for() to pick one.

A backend is bound to the service that keeps its tokens (a discovery.etcd.io-style service, or a
self-hosted etcd) and, for reading and deleting, to one token (a URL, or a v3 token). It mints,
reads back and deletes; the module's states (states.py) only decide what to do.
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.http import Transport
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._ops import discovery_members

PROTOCOLS = ("public", "etcd_v2", "etcd_v3")
# Where etcd discovery keeps a token, in discovery.etcd.io and in etcd's own v2 and v3 discovery.
REGISTRY_PREFIX = "/_etcd/registry"


class Registry(NamedTuple):
    """What a token holds: whether it exists, the size it was created with, the members registered."""

    exists: bool
    size: Optional[int]
    members: List[Dict[str, Any]]


MISSING = Registry(False, None, [])


def registered_members(registrations: Sequence[Any], size: Optional[int]) -> List[Dict[str, Any]]:
    """The members among a token's registrations (etcd v2 key nodes), in registration order.

    etcd counts only the first <size> registrations as members; a machine that registers later finds
    the cluster full and becomes a proxy, so the list is cut to the size when it is known.
    """
    members = discovery_members(list(registrations))
    return members[:size] if size is not None else members


class Backend:
    """One discovery protocol. Subclasses set `protocol` and `deletable` and implement the operations."""

    protocol = ""
    # Whether the protocol has a way to delete a token (the public service has none).
    deletable = False

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @property
    def service(self) -> str:
        """Where the tokens live, as error messages name it (never the token)."""
        raise NotImplementedError

    @property
    def discovery_url(self) -> str:
        """The URL members pass to --discovery; empty when the protocol has none or no token is bound."""
        return ""

    @property
    def token(self) -> str:
        """The bound token ("" when none)."""
        return ""

    @property
    def endpoints(self) -> List[str]:
        """The client URLs members pass to --discovery-endpoints (etcd_v3 only)."""
        return []

    def create(self, size: int) -> Tuple[str, str]:
        """Mint a token for `size` members; returns (discovery_url, token)."""
        raise NotImplementedError

    def read_size(self) -> Optional[int]:
        """The size the bound token was created with; None when it does not exist."""
        raise NotImplementedError

    def exists(self) -> bool:
        """Whether anything is stored under the bound token (its size or registered members)."""
        raise NotImplementedError

    def read(self) -> Registry:
        """Everything the bound token holds, for discovery_token_info."""
        raise NotImplementedError

    def delete(self) -> bool:
        """Remove the bound token with everything under it; False when it was already gone."""
        raise ValidationError(
            f"protocol must be etcd_v2 or etcd_v3 to delete a token, got {self.protocol!r}: "
            "the public discovery service offers no way to delete one"
        )


def backend_for(
    protocol: str,
    service: Optional[str] = None,
    *,
    url: Optional[str] = None,
    endpoints: Optional[List[str]] = None,
    token: Optional[str] = None,
    transport: Optional[Transport] = None,
) -> Backend:
    """The backend of `protocol`, validated and bound to its service and, if given, to one token.

    public: `service` (default https://discovery.etcd.io) and/or a token `url`. etcd_v2: `service`
    (the etcd client URL) and/or a token `url`, whose endpoint then wins. etcd_v3: `endpoints`, or one
    client URL as `service`, and optionally `token`.
    """
    # The backends subclass Backend, so they can only be imported once this module is loaded.
    from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.etcd_v2 import EtcdV2Backend
    from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.etcd_v3 import EtcdV3Backend
    from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.public import PublicBackend

    transport = transport if transport is not None else Transport()
    if protocol == "public":
        return PublicBackend(transport, service=service, url=url)
    if protocol == "etcd_v2":
        return EtcdV2Backend(transport, service=service, url=url)
    if protocol == "etcd_v3":
        return EtcdV3Backend(transport, endpoints=endpoints if endpoints else ([service] if service else None), token=token)
    raise ValidationError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
