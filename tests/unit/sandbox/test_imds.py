# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sandbox's instance metadata service: tables of requests over handle(), and one trip through HTTP."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import urllib.error
import urllib.request

import pytest

# sandbox_host is a package the role copies to the host, not part of the collection's Python tree.
_FILES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "sandbox", "files")
if os.path.abspath(_FILES) not in sys.path:
    sys.path.insert(0, os.path.abspath(_FILES))

from sandbox_host.imds import InstanceMetadata, MetadataService  # noqa: E402  pylint: disable=wrong-import-position

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKq0 core@sandbox"
NODE_IP, OTHER_IP, STRANGER_IP = "10.131.0.4", "10.131.0.5", "10.131.0.99"

NODE = InstanceMetadata(
    instance_id="i-0123456789abcdef0", instance_type="t3.micro", availability_zone="eu-west-1b",
    region="eu-west-1", local_ipv4=NODE_IP, public_ipv4="54.0.0.4",
    local_hostname="ip-10-131-0-4.eu-west-1.compute.internal",
    public_hostname="ec2-54-0-0-4.eu-west-1.compute.amazonaws.com", ami_id="ami-0f00ba4", reservation_id="r-0abc",
    security_groups=("coreos-x", "ssh"), key_name="sandbox", public_key=KEY, user_data=b"#cloud-config\n\xff",
    http_tokens="optional", http_endpoint="enabled", mac="06:00:0a:83:00:04")
OTHER = dataclasses.replace(NODE, instance_id="i-0fffffffffffffff1", local_ipv4=OTHER_IP, public_ipv4=None,
                            public_hostname=None, key_name=None, public_key=None, user_data=None,
                            http_tokens="required", local_hostname="ip-10-131-0-5.eu-west-1.compute.internal")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(clock: FakeClock) -> MetadataService:
    instances = {NODE_IP: NODE, OTHER_IP: OTHER}
    return MetadataService(instances.get, clock)


def token(service: MetadataService, ip: str = NODE_IP, ttl: str = "60") -> str:
    status, headers, body = service.handle("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": ttl},
                                           ip)
    assert status == 200 and headers["X-aws-ec2-metadata-token-ttl-seconds"] == ttl
    return body.decode("ascii")


# --- paths ------------------------------------------------------------------------------------------

LEAVES = [
    ("meta-data/ami-id", b"ami-0f00ba4"),
    ("meta-data/hostname", b"ip-10-131-0-4.eu-west-1.compute.internal"),
    ("meta-data/instance-id", b"i-0123456789abcdef0"),
    ("meta-data/instance-type", b"t3.micro"),
    ("meta-data/local-hostname", b"ip-10-131-0-4.eu-west-1.compute.internal"),
    ("meta-data/local-ipv4", b"10.131.0.4"),
    ("meta-data/mac", b"06:00:0a:83:00:04"),
    ("meta-data/placement/availability-zone", b"eu-west-1b"),
    ("meta-data/placement/region", b"eu-west-1"),
    ("meta-data/public-hostname", b"ec2-54-0-0-4.eu-west-1.compute.amazonaws.com"),
    ("meta-data/public-ipv4", b"54.0.0.4"),
    ("meta-data/public-keys/0/openssh-key", KEY.encode() + b"\n"),
    ("meta-data/reservation-id", b"r-0abc"),
    ("meta-data/security-groups", b"coreos-x\nssh"),
]
META_LISTING = (b"ami-id\nhostname\ninstance-id\ninstance-type\nlocal-hostname\nlocal-ipv4\nmac\nplacement/\n"
                b"public-hostname\npublic-ipv4\npublic-keys/\nreservation-id\nsecurity-groups")
LISTINGS = [
    ("", b"dynamic\nmeta-data\nuser-data"),
    ("/", b"dynamic\nmeta-data\nuser-data"),
    ("/meta-data", META_LISTING),
    ("/meta-data/", META_LISTING),
    ("/meta-data/placement", b"availability-zone\nregion"),
    ("/meta-data/placement/", b"availability-zone\nregion"),
    ("/meta-data/public-keys", b"0=sandbox"),
    ("/meta-data/public-keys/", b"0=sandbox"),
    ("/meta-data/public-keys/0", b"openssh-key"),
    ("/meta-data/public-keys/0/", b"openssh-key"),
    ("/dynamic/", b"instance-identity/"),
    ("/dynamic/instance-identity/", b"document"),
]
NOT_FOUND = ["/meta-data/instance-id/", "/meta-data/nothing", "/meta-data/public-keys/1",
             "/meta-data/public-keys/0/openssh-key/", "/meta-data//instance-id", "/meta-data/placement/zone",
             "/user-data/", "/meta"]


@pytest.mark.parametrize("version", ["latest", "2009-04-04"])
@pytest.mark.parametrize("path, body", LEAVES)
def test_leaves(service, version, path, body):
    status, headers, answer = service.handle("GET", f"/{version}/{path}", {}, NODE_IP)
    assert (status, answer) == (200, body)
    assert headers == {"Content-Type": "text/plain", "Server": "EC2ws", "Content-Length": str(len(body))}


@pytest.mark.parametrize("version", ["latest", "2009-04-04"])
@pytest.mark.parametrize("path, body", LISTINGS)
def test_listings(service, version, path, body):
    status, headers, answer = service.handle("GET", f"/{version}{path}", {}, NODE_IP)
    assert (status, answer, headers["Content-Type"]) == (200, body, "text/plain")


@pytest.mark.parametrize("version", ["latest", "2009-04-04"])
def test_user_data_is_raw_bytes(service, version):
    status, headers, answer = service.handle("GET", f"/{version}/user-data", {}, NODE_IP)
    assert (status, answer) == (200, b"#cloud-config\n\xff")
    assert headers["Content-Type"] == "application/octet-stream" and headers["Content-Length"] == "15"


@pytest.mark.parametrize("version", ["latest", "2009-04-04"])
@pytest.mark.parametrize("path", NOT_FOUND)
def test_not_found(service, version, path):
    status, headers, answer = service.handle("GET", f"/{version}{path}", {}, NODE_IP)
    assert status == 404 and b"404 - Not Found" in answer and headers["Server"] == "EC2ws"


@pytest.mark.parametrize("path, status, body", [
    ("/", 200, b"2009-04-04\nlatest"),
    ("/latest", 200, b"dynamic\nmeta-data\nuser-data"),
    ("/nothing", 404, None),
    ("/latest-ish/meta-data", 404, None),
    ("/1.0/meta-data", 404, None),
    ("/2009-04-04/api/token", 404, None),
    ("", 404, None),
])
def test_root_and_unknown_versions(service, path, status, body):
    answer = service.handle("GET", path, {}, NODE_IP)
    assert answer[0] == status
    assert answer[2] == body if body is not None else b"404 - Not Found" in answer[2]


def test_identity_document(service):
    status, _headers, answer = service.handle("GET", "/latest/dynamic/instance-identity/document", {}, NODE_IP)
    assert status == 200
    assert json.loads(answer) == {"availabilityZone": "eu-west-1b", "imageId": "ami-0f00ba4",
                                  "instanceId": "i-0123456789abcdef0", "instanceType": "t3.micro",
                                  "privateIp": "10.131.0.4", "region": "eu-west-1", "version": "2017-09-30"}


@pytest.mark.parametrize("path", ["/latest/meta-data/public-ipv4", "/latest/meta-data/public-hostname",
                                  "/latest/meta-data/public-keys", "/latest/meta-data/public-keys/0/openssh-key",
                                  "/latest/user-data"])
def test_absent_values_are_not_found(service, path):
    status, _headers, _answer = service.handle("GET", path, {"X-aws-ec2-metadata-token": token(service, OTHER_IP)},
                                               OTHER_IP)
    assert status == 404


def test_listings_leave_out_what_the_instance_lacks(service):
    headers = {"X-aws-ec2-metadata-token": token(service, OTHER_IP)}
    assert service.handle("GET", "/latest/", headers, OTHER_IP)[2] == b"dynamic\nmeta-data"
    assert service.handle("GET", "/latest/meta-data/", headers, OTHER_IP)[2] == (
        b"ami-id\nhostname\ninstance-id\ninstance-type\nlocal-hostname\nlocal-ipv4\nmac\nplacement/\n"
        b"reservation-id\nsecurity-groups")
    assert service.handle("GET", "/latest/meta-data/instance-id", headers, OTHER_IP)[2] == b"i-0fffffffffffffff1"


def test_head_has_the_get_headers_and_no_body(service):
    status, headers, answer = service.handle("HEAD", "/latest/meta-data/instance-id", {}, NODE_IP)
    assert (status, answer, headers["Content-Length"]) == (200, b"", "19")


def test_query_string_is_ignored(service):
    assert service.handle("GET", "/latest/meta-data/local-ipv4?x=1", {}, NODE_IP)[2] == b"10.131.0.4"


# --- who may ask -------------------------------------------------------------------------------------

def test_unknown_source_gets_404_and_learns_nothing(service):
    for method, path in [("GET", "/latest/meta-data/instance-id"), ("PUT", "/latest/api/token"), ("GET", "/")]:
        status, headers, answer = service.handle(method, path, {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
                                                 STRANGER_IP)
        assert status == 404 and headers["Content-Type"] == "text/plain"
        assert b"i-0" not in answer and NODE_IP.encode() not in answer and OTHER_IP.encode() not in answer


def test_disabled_endpoint_is_403(clock):
    disabled = dataclasses.replace(NODE, http_endpoint="disabled")
    service = MetadataService({NODE_IP: disabled}.get, clock)
    for method, path in [("GET", "/latest/meta-data/instance-id"), ("PUT", "/latest/api/token")]:
        status, _headers, answer = service.handle(method, path, {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
                                                  NODE_IP)
        assert (status, answer) == (403, b"The instance metadata service is disabled for this instance\n")


@pytest.mark.parametrize("method, path, allow", [
    ("POST", "/latest/meta-data/instance-id", "GET, HEAD"),
    ("DELETE", "/latest/meta-data/", "GET, HEAD"),
    ("PUT", "/latest/meta-data/instance-id", "GET, HEAD"),
    ("PUT", "/2009-04-04/api/token", "GET, HEAD"),
    ("GET", "/latest/api/token", "PUT"),
    ("POST", "/latest/api/token", "PUT"),
])
def test_methods(service, method, path, allow):
    status, headers, _answer = service.handle(method, path, {"X-aws-ec2-metadata-token-ttl-seconds": "60"}, NODE_IP)
    assert (status, headers["Allow"]) == (405, allow)


# --- IMDSv2 tokens -----------------------------------------------------------------------------------

@pytest.mark.parametrize("ttl, status", [
    ("1", 200), ("21600", 200), ("60", 200), (" 300 ", 200),
    ("0", 400), ("21601", 400), ("-5", 400), ("1.5", 400), ("abc", 400), ("", 400), (None, 400), ("9999999", 400),
])
def test_token_ttl_validation(service, ttl, status):
    headers = {} if ttl is None else {"X-aws-ec2-metadata-token-ttl-seconds": ttl}
    answer = service.handle("PUT", "/latest/api/token", headers, NODE_IP)
    assert answer[0] == status
    if status == 200:
        assert answer[1]["X-aws-ec2-metadata-token-ttl-seconds"] == ttl.strip() and len(answer[2]) >= 40


def test_token_header_names_are_case_insensitive(service):
    status, _headers, body = service.handle("PUT", "/latest/api/token", {"x-AWS-ec2-metadata-token-ttl-SECONDS": "5"},
                                            NODE_IP)
    assert status == 200
    assert service.handle("GET", "/latest/meta-data/instance-id", {"X-AWS-EC2-METADATA-TOKEN": body.decode()},
                          NODE_IP)[0] == 200


def test_token_through_a_proxy_is_refused(service):
    status, _headers, _answer = service.handle(
        "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60", "X-Forwarded-For": "10.0.0.1"},
        NODE_IP)
    assert status == 403


def test_tokens_are_random(service):
    assert token(service) != token(service)


def test_token_is_served_and_expires_after_its_ttl(service, clock):
    value = token(service, ttl="10")
    path = "/latest/meta-data/instance-id"
    status, _headers, answer = service.handle("GET", path, {"X-aws-ec2-metadata-token": value}, NODE_IP)
    assert (status, answer) == (200, b"i-0123456789abcdef0")
    clock.now += 9.9
    assert service.handle("GET", path, {"X-aws-ec2-metadata-token": value}, NODE_IP)[0] == 200
    clock.now += 0.1
    assert service.handle("GET", path, {"X-aws-ec2-metadata-token": value}, NODE_IP)[0] == 401
    # An expired token is 401 even though this instance would answer without one.
    assert service.handle("GET", path, {}, NODE_IP)[0] == 200


@pytest.mark.parametrize("case", ["required without token", "bad token", "bad token, tokens optional",
                                  "token of another instance", "token of another instance, tokens optional",
                                  "empty token"])
def test_unauthorized(service, case):
    path = "/latest/meta-data/instance-id"
    ip, headers = {
        "required without token": (OTHER_IP, {}),
        "bad token": (OTHER_IP, {"X-aws-ec2-metadata-token": "AQAEAnotatoken=="}),
        "bad token, tokens optional": (NODE_IP, {"X-aws-ec2-metadata-token": "AQAEAnotatoken=="}),
        "token of another instance": (OTHER_IP, {"X-aws-ec2-metadata-token": token(service, NODE_IP)}),
        "token of another instance, tokens optional": (
            NODE_IP, {"X-aws-ec2-metadata-token": token(service, OTHER_IP)}),
        "empty token": (NODE_IP, {"X-aws-ec2-metadata-token": ""}),
    }[case]
    status, headers_out, answer = service.handle("GET", path, headers, ip)
    assert status == 401 and b"401 - Unauthorized" in answer and headers_out["Content-Type"] == "text/html"


def test_required_tokens_serve_with_a_valid_token(service):
    value = token(service, OTHER_IP)
    status, _headers, answer = service.handle("GET", "/2009-04-04/meta-data/local-ipv4",
                                              {"X-aws-ec2-metadata-token": value}, OTHER_IP)
    assert (status, answer) == (200, OTHER_IP.encode())


def test_token_bound_to_the_instance_not_only_the_address(clock):
    """An address handed to a new instance (the old one terminated) does not inherit the old sessions."""
    instances = {NODE_IP: NODE}
    service = MetadataService(instances.get, clock)
    value = token(service)
    instances[NODE_IP] = dataclasses.replace(NODE, instance_id="i-0aaaaaaaaaaaaaaa2")
    assert service.handle("GET", "/latest/meta-data/instance-id", {"X-aws-ec2-metadata-token": value},
                          NODE_IP)[0] == 401


# --- over HTTP ---------------------------------------------------------------------------------------

def test_serve_over_http():
    logged: list[str] = []
    service = MetadataService({"127.0.0.1": dataclasses.replace(NODE, http_tokens="required")}.get)
    server = service.serve("127.0.0.1", 0, log=logged.append)
    base = "http://127.0.0.1:%d" % server.server_address[1]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
    try:
        request = urllib.request.Request(base + "/latest/api/token", method="PUT",
                                         headers={"X-aws-ec2-metadata-token-ttl-seconds": "30"})
        with opener.open(request, timeout=10) as response:
            value = response.read().decode()
            assert response.headers["X-aws-ec2-metadata-token-ttl-seconds"] == "30"
        request = urllib.request.Request(base + "/latest/user-data", headers={"X-aws-ec2-metadata-token": value})
        with opener.open(request, timeout=10) as response:
            assert response.read() == b"#cloud-config\n\xff"
            assert response.headers["Content-Type"] == "application/octet-stream"
            assert response.headers["Server"] == "EC2ws"
        request = urllib.request.Request(base + "/latest/meta-data/instance-id", method="HEAD",
                                         headers={"X-aws-ec2-metadata-token": value})
        with opener.open(request, timeout=10) as response:
            assert response.status == 200 and response.read() == b"" and response.headers["Content-Length"] == "19"
        with pytest.raises(urllib.error.HTTPError) as caught:
            opener.open(base + "/latest/meta-data/instance-id", timeout=10)
        assert caught.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as caught:
            opener.open(urllib.request.Request(base + "/latest/meta-data/", method="PATCH"), timeout=10)
        assert caught.value.code == 405 and caught.value.headers["Allow"] == "GET, HEAD"
    finally:
        service.shutdown()
    assert any("PUT /latest/api/token" in line for line in logged)
    with pytest.raises(urllib.error.URLError):
        opener.open(base + "/", timeout=5)
