# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sandbox host's two views of the EC2 emulator.

- EmulatorReader: what the emulator says the instances are (one DescribeInstances per region and poll),
  their user data, volume sizes and key material.
- ApiFront: the sandbox's EC2 endpoint. It passes every request through to the emulator unchanged and
  tells the host which regions are in use and when an instance changed, so nodes follow at once instead of
  at the next poll; RebootInstances, which changes nothing the API shows, is only seen here.
"""

from __future__ import annotations

import base64
import http.client
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

# The emulator takes any credentials; these keep its account the same for every caller.
ACCESS_KEY = "sandbox-access-key"
SECRET_KEY = "sandbox-secret-key"

# Calls after which the host looks at the instances again at once.
INSTANCE_CHANGES = frozenset({
    "RunInstances", "StartInstances", "StopInstances", "TerminateInstances", "RebootInstances",
    "ModifyInstanceAttribute", "ModifyInstanceMetadataOptions", "RunScheduledInstances", "CreateFleet",
    "RequestSpotInstances",
})
_CREDENTIAL_RE = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/ec2/aws4_request")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
                "proxy-authenticate", "content-length"}


@dataclass(frozen=True)
class Volume:
    device_name: str
    volume_id: str
    delete_on_termination: bool


@dataclass(frozen=True)
class Instance:
    """The fields of one DescribeInstances entry that the host acts on or the metadata service serves."""

    instance_id: str
    region: str
    state: str
    private_ip: str | None
    public_ip: str | None
    private_dns: str
    public_dns: str
    instance_type: str
    availability_zone: str
    image_id: str
    reservation_id: str
    key_name: str | None
    security_groups: tuple[str, ...]
    http_tokens: str
    http_endpoint: str
    mac: str
    volumes: tuple[Volume, ...] = field(default=())

    @property
    def wants_node(self) -> bool:
        return self.state in ("pending", "running")

    @property
    def gone(self) -> bool:
        return self.state in ("shutting-down", "terminated")


def parse_instances(reservations: list[dict[str, Any]], region: str) -> list[Instance]:
    """Instances from DescribeInstances' Reservations (as boto3 returns them)."""
    found = []
    for reservation in reservations:
        for item in reservation.get("Instances", []):
            options = item.get("MetadataOptions") or {}
            nics = item.get("NetworkInterfaces") or []
            root = item.get("RootDeviceName")
            volumes = tuple(
                Volume(m["DeviceName"], m["Ebs"]["VolumeId"], bool(m["Ebs"].get("DeleteOnTermination")))
                for m in item.get("BlockDeviceMappings", [])
                if m.get("Ebs", {}).get("VolumeId") and m.get("DeviceName") != root
            )
            found.append(Instance(
                instance_id=item["InstanceId"],
                region=region,
                state=item.get("State", {}).get("Name", "unknown"),
                private_ip=item.get("PrivateIpAddress") or None,
                public_ip=item.get("PublicIpAddress") or None,
                private_dns=item.get("PrivateDnsName") or "",
                public_dns=item.get("PublicDnsName") or "",
                instance_type=item.get("InstanceType", ""),
                availability_zone=(item.get("Placement") or {}).get("AvailabilityZone", ""),
                image_id=item.get("ImageId", ""),
                reservation_id=reservation.get("ReservationId", ""),
                key_name=item.get("KeyName") or None,
                security_groups=tuple(g.get("GroupName", "") for g in item.get("SecurityGroups", [])),
                http_tokens=options.get("HttpTokens", "optional"),
                http_endpoint=options.get("HttpEndpoint", "enabled"),
                mac=(nics[0].get("MacAddress") if nics else None) or "",
                volumes=volumes,
            ))
    return found


class EmulatorReader:
    """Reads the emulator directly (not through ApiFront: the host's own polling is nobody's change)."""

    def __init__(self, endpoint_url: str):
        self.endpoint_url = endpoint_url
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, region: str) -> Any:
        with self._lock:
            if region not in self._clients:
                # Imported here: only the host process needs boto3, not the tests of the pure parts.
                import boto3  # pylint: disable=import-outside-toplevel
                from botocore.config import Config  # pylint: disable=import-outside-toplevel

                self._clients[region] = boto3.client(
                    "ec2", region_name=region, endpoint_url=self.endpoint_url, aws_access_key_id=ACCESS_KEY,
                    aws_secret_access_key=SECRET_KEY,
                    config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
                )
            return self._clients[region]

    def instances(self, region: str) -> list[Instance]:
        reservations: list[dict[str, Any]] = []
        for page in self.client(region).get_paginator("describe_instances").paginate():
            reservations += page.get("Reservations", [])
        return parse_instances(reservations, region)

    def user_data(self, region: str, instance_id: str) -> bytes | None:
        answer = self.client(region).describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        value = (answer.get("UserData") or {}).get("Value")
        return base64.b64decode(value) if value else None

    def volume_sizes(self, region: str, volume_ids: list[str]) -> dict[str, int]:
        if not volume_ids:
            return {}
        answer = self.client(region).describe_volumes(VolumeIds=volume_ids)
        return {v["VolumeId"]: int(v["Size"]) for v in answer.get("Volumes", [])}

    def volume_sizes_all(self, region: str) -> dict[str, int]:
        """Every volume the emulator has in a region (attached or not), by id."""
        sizes: dict[str, int] = {}
        for page in self.client(region).get_paginator("describe_volumes").paginate():
            sizes.update({v["VolumeId"]: int(v["Size"]) for v in page.get("Volumes", [])})
        return sizes

    def public_key(self, region: str, key_name: str) -> str | None:
        try:
            answer = self.client(region).describe_key_pairs(KeyNames=[key_name], IncludePublicKey=True)
        except Exception:  # noqa: BLE001 - an unknown key (the emulator accepts any name at launch)
            return None
        pairs = answer.get("KeyPairs") or []
        return (pairs[0].get("PublicKey") or "").strip() or None if pairs else None


def request_action(method: str, path: str, body: bytes) -> tuple[str | None, dict[str, list[str]]]:
    """The EC2 query API's Action and parameters of a request (form body or query string)."""
    params = parse_qs(urlsplit(path).query, keep_blank_values=True)
    if method == "POST" and body:
        params.update(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))
    action = params.get("Action", [None])[0]
    return action, params


def request_region(headers: Any) -> str | None:
    match = _CREDENTIAL_RE.search(headers.get("Authorization", "") or "")
    return match.group(1) if match else None


def instance_ids(params: dict[str, list[str]]) -> list[str]:
    numbered = [(int(key.split(".")[1]), values[0]) for key, values in params.items()
                if re.fullmatch(r"InstanceId\.\d+", key)]
    return [value for _n, value in sorted(numbered)]


class ApiFront:
    """A pass-through HTTP front for the emulator that reports instance changes to `on_change`.

    on_change(region, action, instance_ids) runs after the emulator answered 200, on the request's thread.
    """

    def __init__(self, host: str, port: int, emulator: tuple[str, int],
                 on_change: Callable[[str, str, list[str]], None], on_region: Callable[[str], None]):
        front = self
        self.emulator = emulator
        self.on_change = on_change
        self.on_region = on_region
        self._local = threading.local()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def _relay(self) -> None:
                front.relay(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _relay

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="api-front", daemon=True)

    def start(self) -> "ApiFront":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(*self.emulator, timeout=120)
            self._local.conn = conn
        return conn

    def relay(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_HEADERS}
        for attempt in (0, 1):
            conn = self._connection(fresh=attempt > 0)
            try:
                conn.request(handler.command, handler.path, body=body or None, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                # A kept-alive connection the emulator closed: try once more on a new one.
                if attempt:
                    message = f"sandbox EC2 front: the emulator did not answer: {exc}".encode()
                    handler.send_response(502)
                    handler.send_header("Content-Type", "text/plain")
                    handler.send_header("Content-Length", str(len(message)))
                    handler.end_headers()
                    handler.wfile.write(message)
                    return
        handler.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_HEADERS:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)
        region = request_region(handler.headers)
        if region:
            self.on_region(region)
            action, params = request_action(handler.command, handler.path, body)
            if action in INSTANCE_CHANGES and response.status == 200:
                self.on_change(region, action, instance_ids(params))
