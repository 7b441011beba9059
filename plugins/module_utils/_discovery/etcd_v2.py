# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd_v2: a token in a self-hosted etcd's v2 keys API (etcd <= 3.5 with --enable-v2).

A token is the directory /_etcd/registry/<uuid> holding `_config/size`, the same layout
discovery.etcd.io keeps; members pass <endpoint>/v2/keys/_etcd/registry/<uuid> to `--discovery` and
register themselves as <dir>/<member id> (etcd server/etcdserver/api/v2discovery/discovery.go).
The public service answers reads of a token URL with the same v2 JSON, so public.py reads through
V2Directory too.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Dict, Optional, Tuple
from urllib.parse import urlencode, urlsplit

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.base import (
    MISSING, REGISTRY_PREFIX, Backend, Registry, registered_members,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.http import (
    CONTENT_FORM, HttpStatusError, Transport, json_body, printable, validate_service_url, validate_size,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError

V2_KEYS = "/v2/keys/"


def validate_v2_url(url: Any, option: str = "url") -> str:
    """An etcd v2 keys URL of a token directory: http(s)://HOST/v2/keys/<dir>/.../<token>."""
    shape = f"{option} must be an etcd v2 discovery URL like http://HOST:2379/v2/keys/_etcd/registry/TOKEN"
    if not isinstance(url, str):
        raise ValidationError(shape)
    try:
        base = validate_service_url(url, option)
    except ValidationError:
        raise ValidationError(shape) from None
    path = urlsplit(base).path
    marker = path.find(V2_KEYS)
    if marker < 0 or not path[marker + len(V2_KEYS):].strip("/"):
        # Also what a discovery.etcd.io URL gives: the public service has no way to delete a token.
        raise ValidationError(shape)
    return base


def is_v2_url(url: str) -> bool:
    """Whether a discovery URL points into an etcd v2 keys API (else it is a discovery.etcd.io URL)."""
    return V2_KEYS in urlsplit(url).path


def v2_endpoint_of(url: str) -> str:
    """The client URL part of a v2 discovery URL (what error messages name instead of the token)."""
    return url[: url.find(V2_KEYS)]


def _v2_hint(exc: BaseException) -> Optional[str]:
    if isinstance(exc, HttpStatusError) and exc.code == 404 and exc.etcd_error_code() is None:
        # etcd 3.4/3.5 answer a plain "404 page not found" when started without --enable-v2.
        return "the v2 keys API is not served there (etcd 3.4 and 3.5 need --enable-v2; 3.6 dropped it)"
    return None


def size_of_answer(answer: Dict[str, Any], action: str, where: str) -> int:
    """The size in the JSON of GET <token dir>/_config/size."""
    node = answer.get("node") or {}
    try:
        return int(node.get("value"))
    except (TypeError, ValueError):
        raise ClusterError(f"Failed to {action} at {where}: _config/size holds '{printable(str(node.get('value')))}', not a number") from None


def registry_of_answers(listing: Optional[Dict[str, Any]], size: Optional[int]) -> Registry:
    """A token's registry from the JSON of GET <token dir> (None: etcd answered Key not found) and its size.

    etcd hides keys starting with '_' from directory listings, so `_config` is never among the nodes
    and the size comes from its own key.
    """
    if listing is None:
        return MISSING
    node = listing.get("node")
    nodes = node.get("nodes") if isinstance(node, dict) else None
    return Registry(True, size, registered_members(nodes if isinstance(nodes, list) else [], size))


class V2Directory:
    """A token directory read and written through the v2 keys API (also the public service's reads)."""

    def __init__(self, transport: Transport, url: str, where: str, v2_hints: bool = True) -> None:
        self.transport = transport
        self.url = url
        self.where = where
        self.v2_hints = v2_hints

    def attempt(self, action: str, func: Callable[[], Any]) -> Any:
        try:
            return self.transport.attempt(action, self.where, func)
        except ClusterError as exc:
            hint = _v2_hint(exc.__cause__) if self.v2_hints and exc.__cause__ is not None else None
            if hint:
                raise ClusterError(f"{exc.msg}: {hint}") from exc.__cause__
            raise

    def _get(self, url: str) -> Optional[Tuple[int, bytes]]:
        """GET with etcd's Key not found as None."""
        try:
            return self.transport.request("GET", url)
        except HttpStatusError as exc:
            if exc.is_key_not_found():
                return None
            raise

    def read_size(self, action: str) -> Optional[int]:
        """The size stored under the directory; None when the key does not exist."""
        answer = self.attempt(action, lambda: self._get(f"{self.url}/_config/size"))
        if answer is None:
            return None
        return size_of_answer(json_body(answer[1], action, self.where), action, self.where)

    def exists(self, action: str) -> bool:
        return self.attempt(action, lambda: self._get(self.url)) is not None

    def read(self, action: str) -> Registry:
        answer = self.attempt(action, lambda: self._get(self.url))
        if answer is None:
            return MISSING
        listing = json_body(answer[1], action, self.where)
        return registry_of_answers(listing, self.read_size(action))


class V2TokenBackend(Backend):
    """A protocol whose token is a URL read through V2Directory: etcd_v2, and public (whose service answers
    reads of a token URL with the v2 JSON of the etcd behind it). Subclasses set `_service` and `_url`."""

    # Whether a 404 without an etcd error code is explained as an etcd without --enable-v2.
    v2_hints = True
    _service = ""
    _url = ""

    @property
    def service(self) -> str:
        return self._service

    @property
    def discovery_url(self) -> str:
        return self._url

    @property
    def token(self) -> str:
        return self._url.rsplit("/", 1)[-1] if self._url else ""

    def _directory(self) -> V2Directory:
        if not self._url:
            raise ValidationError(f"url is required with protocol={self.protocol}: the discovery URL of the token")
        return V2Directory(self.transport, self._url, self._service, v2_hints=self.v2_hints)

    def read_size(self) -> Optional[int]:
        return self._directory().read_size("read discovery token")

    def exists(self) -> bool:
        return self._directory().exists("read discovery token")

    def read(self) -> Registry:
        return self._directory().read("read discovery token")


class EtcdV2Backend(V2TokenBackend):
    protocol = "etcd_v2"
    deletable = True

    def __init__(self, transport: Transport, service: Optional[str] = None, url: Optional[str] = None) -> None:
        super().__init__(transport)
        if url:
            self._url = validate_v2_url(url)
            self._service = v2_endpoint_of(self._url)
        elif service:
            self._url = ""
            self._service = validate_service_url(service, "service")
        else:
            raise ValidationError("service or url is required with protocol=etcd_v2: the client URL of the etcd that hosts tokens")

    def create(self, size: int) -> Tuple[str, str]:
        """Create /_etcd/registry/<uuid>/_config/size = size; returns the member URL and the uuid."""
        size = validate_size(size)
        action = "create discovery token"
        token = uuid.uuid4().hex
        directory = V2Directory(self.transport, f"{self._service}/v2/keys{REGISTRY_PREFIX}/{token}", self._service)
        # prevExist=false: etcd refuses to overwrite. A fresh uuid4 never exists, so a 412 can only come
        # from our own earlier attempt whose answer was lost; that attempt's value is then checked below.
        form = urlencode({"value": str(size), "prevExist": "false"}).encode()

        def put() -> Optional[Tuple[int, bytes]]:
            try:
                return self.transport.request("PUT", f"{directory.url}/_config/size", data=form, headers=CONTENT_FORM)
            except HttpStatusError as exc:
                if exc.code == 412:
                    return None
                raise

        answer = directory.attempt(action, put)
        if answer is None:
            stored = directory.read_size(action)
        else:
            node = json_body(answer[1], action, self._service).get("node") or {}
            stored = int(node["value"]) if str(node.get("value", "")).isdigit() else None
        if stored != size:
            raise ClusterError(f"Failed to {action} at {self._service}: etcd stored size {stored!r} instead of {size}")
        return directory.url, token

    def delete(self) -> bool:
        action = "delete discovery token"
        directory = self._directory()
        if not directory.exists(action):
            return False
        # A recursive delete of a wrong URL could wipe unrelated keys; only a directory that holds a
        # discovery size is taken for a token.
        if directory.read_size(action) is None:
            raise ClusterError(
                f"Refusing to delete at {self._service}: the directory given in url has no _config/size, "
                "so it does not look like a discovery token"
            )

        tries = [0]

        def delete() -> bool:
            tries[0] += 1
            try:
                self.transport.request("DELETE", f"{self._url}?{urlencode({'recursive': 'true', 'dir': 'true'})}")
                return True
            except HttpStatusError as exc:
                if exc.is_key_not_found():
                    # On a retry: our earlier attempt deleted it and its answer was lost.
                    # On the first try: someone else deleted it since we looked.
                    return tries[0] > 1
                raise

        return directory.attempt(action, delete)
