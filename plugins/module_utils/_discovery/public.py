# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""public: the protocol of https://discovery.etcd.io.

GET <service>/new?size=N answers with the token URL as the body; members pass that URL to
`--discovery`. A GET of the token URL (or of <token URL>/_config/size) answers with the etcd v2 JSON
of the etcd behind the service, so reads go through etcd_v2.V2Directory. The service has no delete:
tokens expire by themselves.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Tuple
from urllib.parse import urlencode, urlsplit

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.etcd_v2 import V2TokenBackend
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.http import (
    Transport, printable, validate_service_url, validate_size,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError

DEFAULT_SERVICE = "https://discovery.etcd.io"

# discovery.etcd.io tokens are 32 hex digits today; allow some room either side.
_PUBLIC_TOKEN_RE = re.compile(r"^[0-9a-fA-F]{16,64}$")


def parse_public_token_url(service: str, body: str) -> Optional[str]:
    """The token URL in a /new answer, or None when the body is anything else.

    Strict on purpose: the URL is written into every member's configuration, so an error page, a
    captive portal or a proxy's notice must never be taken for a token.
    """
    text = body.strip()
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        return None
    try:
        parts = urlsplit(text)
        service_parts = urlsplit(service)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or parts.query or parts.fragment or parts.username or parts.password:
        return None
    if not parts.hostname or parts.hostname != (service_parts.hostname or "").lower():
        return None
    prefix = service_parts.path.rstrip("/") + "/"
    if not parts.path.startswith(prefix):
        return None
    token = parts.path[len(prefix):]
    if not _PUBLIC_TOKEN_RE.match(token):
        return None
    return text


def validate_public_url(url: Any, option: str = "url") -> Tuple[str, str]:
    """(service, token URL) of a discovery.etcd.io-style token URL: <service>/<hex token>."""
    shape = f"{option} must be a discovery URL like https://discovery.etcd.io/TOKEN (16 to 64 hex digits)"
    try:
        base = validate_service_url(url, option)
    except ValidationError:
        raise ValidationError(shape) from None
    service = base.rsplit("/", 1)[0]
    if parse_public_token_url(service, base) != base:
        raise ValidationError(shape)
    return service, base


class PublicBackend(V2TokenBackend):
    protocol = "public"
    deletable = False
    # A 404 from the service means an unknown token, not an etcd without --enable-v2.
    v2_hints = False

    def __init__(self, transport: Transport, service: Optional[str] = None, url: Optional[str] = None) -> None:
        super().__init__(transport)
        if url:
            self._service, self._url = validate_public_url(url)
        else:
            self._service, self._url = validate_service_url(service or DEFAULT_SERVICE, "service"), ""

    def create(self, size: int) -> Tuple[str, str]:
        """Mint a token; returns the token URL and its last path segment."""
        size = validate_size(size)
        action = "create discovery token"
        service = self._service
        _status, body = self.transport.attempt(
            action, service, lambda: self.transport.request("GET", f"{service}/new?{urlencode({'size': size})}"),
        )
        text = body.decode("utf-8", "replace")
        url = parse_public_token_url(service, text)
        if url is None:
            got = f"'{printable(text.strip())}'" if text.strip() else "an empty answer"
            raise ClusterError(
                f"Failed to {action} at {service}: expected a token URL on the same host "
                f"(like {service}/<hex token>), got {got}"
            )
        return url, urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
