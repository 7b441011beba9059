# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sandbox's EC2 instance metadata service (IMDS), answering each node for its own instance only.

The host process runs `MetadataService.serve()` on the bridge's host address; every node's requests to
169.254.169.254:80 are DNAT'ed there, so the client address is the node's private IP, which is how this
service knows which instance is asking (`lookup(ip)`; None means no instance, and nothing is revealed).

What it follows (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html,
instancedata-data-retrieval.html, instancedata-data-categories.html):
  * IMDSv2: `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` (1..21600) returns a
    session token bound to the instance; refused (403) when the request carries `X-Forwarded-For`, as EC2
    refuses token requests that went through a proxy. A GET with a bad or expired token is 401, even when
    tokens are optional; without a token it is 401 when the instance requires tokens (IMDSv1 otherwise).
  * The categories a node's tools read: meta-data (ami-id, hostname, instance-id, instance-type,
    local-hostname, local-ipv4, mac, placement/, public-hostname, public-ipv4, public-keys/,
    reservation-id, security-groups), user-data and dynamic/instance-identity/document, under the
    versions `latest` and `2009-04-04`. Directories answer with and without a trailing slash, leaves
    without one only.
  * Errors carry EC2's XHTML error page (text/html); the two sandbox-only answers (no instance at this
    address, endpoint disabled) are short plain text.

Not emulated: the other versions and categories (network/, block-device-mapping/, iam/, ...), the
identity document's signatures, hop-limit enforcement (IMDS counts IP hops; the DNAT hides them) and
EC2's rate limits. Standard library only.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

TOKEN_PATH = "/latest/api/token"
TOKEN_HEADER = "x-aws-ec2-metadata-token"
TOKEN_TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"
TOKEN_TTL_MAX = 21600  # six hours, the documented maximum
VERSIONS = ("2009-04-04", "latest")

Response = tuple[int, dict[str, str], bytes]

# What EC2's metadata service answers for its errors (same page, other status and reason).
_ERROR_PAGE = (
    '<?xml version="1.0" encoding="iso-8859-1"?>\n'
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
    '\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
    '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
    " <head>\n"
    "  <title>{status} - {reason}</title>\n"
    " </head>\n"
    " <body>\n"
    "  <h1>{status} - {reason}</h1>\n"
    " </body>\n"
    "</html>\n"
)
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}


@dataclass(frozen=True)
class InstanceMetadata:
    """What IMDS tells one instance about itself."""

    instance_id: str
    instance_type: str
    availability_zone: str
    region: str
    local_ipv4: str
    public_ipv4: str | None
    local_hostname: str
    public_hostname: str | None
    ami_id: str
    reservation_id: str
    security_groups: tuple[str, ...]
    key_name: str | None
    public_key: str | None  # one OpenSSH line
    user_data: bytes | None
    http_tokens: str = "optional"  # 'optional' | 'required' (MetadataOptions.HttpTokens)
    http_endpoint: str = "enabled"  # 'enabled' | 'disabled' (MetadataOptions.HttpEndpoint)
    mac: str = ""


@dataclass(frozen=True)
class _Token:
    client_ip: str
    instance_id: str
    expires: float


def _response(status: int, body: bytes, content_type: str = "text/plain",
              extra: Mapping[str, str] | None = None) -> Response:
    headers = {"Content-Type": content_type, "Server": "EC2ws", "Content-Length": str(len(body))}
    headers.update(extra or {})
    return status, headers, body


def _error(status: int, extra: Mapping[str, str] | None = None) -> Response:
    page = _ERROR_PAGE.format(status=status, reason=_REASONS[status]).encode("ascii")
    return _response(status, page, "text/html", extra)


def _text(status: int, text: str) -> Response:
    return _response(status, (text.rstrip("\n") + "\n").encode("utf-8"))


def _tree(instance: InstanceMetadata) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(leaves, directory listings) of one instance, keyed by path below the version, no slashes at the ends."""
    meta = {
        "ami-id": instance.ami_id,
        "hostname": instance.local_hostname,
        "instance-id": instance.instance_id,
        "instance-type": instance.instance_type,
        "local-hostname": instance.local_hostname,
        "local-ipv4": instance.local_ipv4,
        "mac": instance.mac,
        "placement/availability-zone": instance.availability_zone,
        "placement/region": instance.region,
        "reservation-id": instance.reservation_id,
        "security-groups": "\n".join(instance.security_groups),
    }
    if instance.public_hostname:
        meta["public-hostname"] = instance.public_hostname
    if instance.public_ipv4:
        meta["public-ipv4"] = instance.public_ipv4
    if instance.public_key:
        meta["public-keys/0/openssh-key"] = instance.public_key.rstrip("\n") + "\n"
    # The subset of the identity document this service knows; AWS SDKs read the region from it.
    document = {
        "availabilityZone": instance.availability_zone,
        "imageId": instance.ami_id,
        "instanceId": instance.instance_id,
        "instanceType": instance.instance_type,
        "privateIp": instance.local_ipv4,
        "region": instance.region,
        "version": "2017-09-30",
    }
    leaves = {"meta-data/" + path: value.encode("utf-8") for path, value in meta.items()}
    leaves["dynamic/instance-identity/document"] = json.dumps(document, indent=2).encode("utf-8")
    if instance.user_data:  # EC2 cannot store empty user data: b"" is none
        leaves["user-data"] = instance.user_data

    children: dict[str, set[str]] = {}
    for path in leaves:
        parts = path.split("/")
        for depth, name in enumerate(parts):
            is_dir = depth < len(parts) - 1
            # The version's own listing names its categories without slashes, as EC2 does.
            children.setdefault("/".join(parts[:depth]), set()).add(name + "/" if is_dir and depth else name)
    listings = {path: "\n".join(sorted(names)).encode("utf-8") for path, names in children.items()}
    if instance.public_key:
        # EC2 lists key index and key name, not a plain directory entry.
        listings["meta-data/public-keys"] = ("0=%s" % (instance.key_name or "")).encode("utf-8")
    return leaves, listings


class MetadataService:
    """The IMDS logic: `handle()` is pure apart from the token store, `serve()` puts it on HTTP."""

    def __init__(self, lookup: Callable[[str], InstanceMetadata | None], clock: Callable[[], float] = time.monotonic):
        self._lookup = lookup
        self._clock = clock
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()  # the HTTP server answers in several threads
        self._servers: list[http.server.ThreadingHTTPServer] = []

    # --- tokens ---------------------------------------------------------------------------------------
    def _issue_token(self, client_ip: str, instance: InstanceMetadata, ttl: int) -> str:
        token = base64.urlsafe_b64encode(secrets.token_bytes(42)).decode("ascii")
        now = self._clock()
        with self._lock:
            # Dropping expired tokens here keeps the store as small as the live sessions.
            self._tokens = {key: value for key, value in self._tokens.items() if value.expires > now}
            self._tokens[token] = _Token(client_ip, instance.instance_id, now + ttl)
        return token

    def _token_valid(self, token: str, client_ip: str, instance: InstanceMetadata) -> bool:
        with self._lock:
            known = self._tokens.get(token)
        return (known is not None and known.client_ip == client_ip and known.instance_id == instance.instance_id
                and self._clock() < known.expires)

    # --- requests -------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: Mapping[str, str], client_ip: str) -> Response:
        """(status, headers, body) for one request from client_ip; a HEAD gets the GET's headers, no body."""
        headers = {name.lower(): value for name, value in headers.items()}
        path = path.split("?", 1)[0].split("#", 1)[0]
        instance = self._lookup(client_ip)
        if instance is None:
            return _text(404, "Not Found: no instance of this sandbox has the address %s" % client_ip)
        if instance.http_endpoint != "enabled":
            return _text(403, "The instance metadata service is disabled for this instance")

        if path == TOKEN_PATH:
            if method != "PUT":
                return _error(405, {"Allow": "PUT"})
            return self._put_token(headers, client_ip, instance)
        if method not in ("GET", "HEAD"):
            return _error(405, {"Allow": "GET, HEAD"})

        token = headers.get(TOKEN_HEADER)
        if token is not None:
            if not self._token_valid(token, client_ip, instance):
                return _error(401)
        elif instance.http_tokens == "required":
            return _error(401)

        status, answer, body = self._get(path, instance)
        return (status, answer, b"") if method == "HEAD" else (status, answer, body)

    def _put_token(self, headers: Mapping[str, str], client_ip: str, instance: InstanceMetadata) -> Response:
        if "x-forwarded-for" in headers:
            return _error(403)
        raw = headers.get(TOKEN_TTL_HEADER, "").strip()
        if not re.fullmatch(r"[0-9]{1,6}", raw) or not 1 <= int(raw) <= TOKEN_TTL_MAX:
            return _error(400)
        ttl = int(raw)
        token = self._issue_token(client_ip, instance, ttl)
        return _response(200, token.encode("ascii"), extra={"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)})

    @staticmethod
    def _get(path: str, instance: InstanceMetadata) -> Response:
        if path == "/":
            return _response(200, "\n".join(VERSIONS).encode("ascii"))
        match = re.fullmatch(r"/(%s)(?:/(.*))?" % "|".join(re.escape(v) for v in VERSIONS), path)
        if not match or "//" in path:
            return _error(404)
        rel = match.group(2) or ""
        leaves, listings = _tree(instance)
        if rel in leaves:
            content_type = "application/octet-stream" if rel == "user-data" else "text/plain"
            return _response(200, leaves[rel], content_type)
        directory = rel[:-1] if rel.endswith("/") else rel
        if directory in listings:
            return _response(200, listings[directory])
        return _error(404)

    # --- HTTP -----------------------------------------------------------------------------------------
    def serve(self, host: str, port: int, log: Callable[[str], None] | None = None
              ) -> http.server.ThreadingHTTPServer:
        """A started server on (host, port) in a daemon thread; port 0 binds a free port (server_address)."""
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            server_version = "EC2ws"

            def version_string(self) -> str:
                return "EC2ws"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
                if log is not None:
                    log("imds %s: %s" % (self.client_address[0], format % args))

            def _answer(self) -> None:
                length = self.headers.get("Content-Length", "0")
                if length.isdigit() and int(length) <= 65536:
                    self.rfile.read(int(length))  # the token PUT may carry a body; EC2 ignores it
                status, answer, body = service.handle(self.command, self.path, dict(self.headers.items()),
                                                      self.client_address[0])
                self.send_response(status, _REASONS.get(status))
                for name, value in answer.items():
                    if name != "Server":  # send_response has sent it
                        self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def __getattr__(self, name: str) -> Callable[[], None]:
                # Every method reaches handle(), which answers 405 with Allow, as IMDS does; without this
                # the base class would answer 501 for methods it has no do_<METHOD> for.
                if name.startswith("do_"):
                    return self._answer
                raise AttributeError(name)

        server = http.server.ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="imds-%s:%d" % server.server_address[:2],
                                  daemon=True)
        thread.start()
        self._servers.append(server)
        return server

    def shutdown(self) -> None:
        """Stop every server serve() started and close its socket."""
        while self._servers:
            server = self._servers.pop()
            server.shutdown()
            server.server_close()
