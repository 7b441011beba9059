# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_discovery: validation, user-data parsing, and the public protocol against a real HTTP server.

The HTTP tests run a tiny http.server on a free loopback port that answers like discovery.etcd.io
would (or would not): the code under test does real requests through open_url. Retries use a fake
sleep, so only the timeout test waits (a fraction of a second). etcd-backed tests live in
tests/integration/test_discovery_members.py.
"""

from __future__ import annotations

import base64
import gzip
import http.server
import json
import re
import socket
import threading
import time
import urllib.error
from urllib.parse import quote

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _discovery as d
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError

TOKEN = "3e86b59982e49066c5d813af1c2e2579cbf573de"
PUBLIC_URL = f"https://discovery.etcd.io/{TOKEN}"
V2_URL = "http://10.0.0.5:2379/v2/keys/_etcd/registry/0f3c9b2d7a6e4c1b8d5e2f9a0b1c2d3e"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # open_url honours proxy variables; loopback test traffic must go straight to the fake server.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    "size, error",
    [
        (1, None),
        (3, None),
        (99, None),
        (0, "size must be at least 1"),
        (-3, "size must be at least 1"),
        (100, "size must be at most 99, got 100: every etcd write waits for a majority"),
        (True, "size must be an integer between 1 and 99"),
        ("3", "size must be an integer between 1 and 99"),
        (None, "size must be an integer between 1 and 99"),
        (3.0, "size must be an integer between 1 and 99"),
    ],
)
def test_validate_size(size, error):
    if error is None:
        assert d.validate_size(size) == size
    else:
        with pytest.raises(ValidationError, match="^" + error.replace("(", r"\(")):
            d.validate_size(size)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("https://discovery.etcd.io", "https://discovery.etcd.io"),
        ("https://discovery.etcd.io/", "https://discovery.etcd.io"),
        ("http://127.0.0.1:2379", "http://127.0.0.1:2379"),
        ("http://[::1]:2379/", "http://[::1]:2379"),
        ("  http://etcd.internal:2379  ", "http://etcd.internal:2379"),
        ("https://example.com/discovery/", "https://example.com/discovery"),
        ("ftp://example.com", None),
        ("discovery.etcd.io", None),
        ("http://", None),
        ("http://host:port", None),
        ("http://exa mple.com", None),
        ("https://example.com/?a=b", None),
        ("", None),
        (None, None),
        (2379, None),
    ],
)
def test_validate_service_url(value, expected):
    if expected is None:
        with pytest.raises(ValidationError, match="^service must be"):
            d.validate_service_url(value, "service")
    else:
        assert d.validate_service_url(value, "service") == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        (["http://a:2379", "http://b:2379/"], ["http://a:2379", "http://b:2379"]),
        ("http://a:2379,http://b:2379", ["http://a:2379", "http://b:2379"]),
        ([], None),
        (None, None),
        (["http://a:2379", "a:2379"], None),
    ],
)
def test_validate_endpoints(value, expected):
    if expected is None:
        with pytest.raises(ValidationError, match="^endpoints must be"):
            d.validate_endpoints(value)
    else:
        assert d.validate_endpoints(value) == expected


@pytest.mark.parametrize(
    "token, ok",
    [
        ("0f3c9b2d7a6e4c1b8d5e2f9a0b1c2d3e", True),
        ("my-cluster.v1_2", True),
        ("", False),
        ("../../x", False),
        ("a/b", False),
        ("-flag", False),
        ("x" * 129, False),
        (None, False),
    ],
)
def test_validate_token(token, ok):
    if ok:
        assert d.validate_token(token) == token
    else:
        with pytest.raises(ValidationError) as info:
            d.validate_token(token)
        # The token is a secret: the message says what is allowed, never echoes the value.
        assert "token must be" in info.value.msg
        if token:
            assert token not in info.value.msg


@pytest.mark.parametrize(
    "url, ok",
    [
        (V2_URL, True),
        (V2_URL + "/", True),
        ("https://etcd.example.com/v2/keys/discovery/abc", True),
        ("http://10.0.0.5:2379/v2/keys/", False),
        ("http://10.0.0.5:2379/v2/keys", False),
        (PUBLIC_URL, False),
        ("10.0.0.5:2379/v2/keys/x", False),
        (None, False),
    ],
)
def test_validate_v2_url(url, ok):
    if ok:
        assert d.validate_v2_url(url) == url.rstrip("/")
    else:
        with pytest.raises(ValidationError, match="^url must be an etcd v2 discovery URL"):
            d.validate_v2_url(url)


@pytest.mark.parametrize(
    "timeout, retries, error",
    [
        (10, 5, None),
        (0.5, 0, None),
        (0, 5, "timeout must be"),
        (-1, 5, "timeout must be"),
        (10, -1, "retries must be"),
        (10, 1.5, "retries must be"),
    ],
)
def test_validate_transport(timeout, retries, error):
    if error is None:
        d.validate_transport(timeout, retries)
    else:
        with pytest.raises(ValidationError, match=error):
            d.validate_transport(timeout, retries)


# ---------------------------------------------------------------------------------------------------
# The body of a /new answer


@pytest.mark.parametrize(
    "service, body, expected",
    [
        pytest.param("https://discovery.etcd.io", PUBLIC_URL, PUBLIC_URL, id="real-answer"),
        pytest.param("https://discovery.etcd.io", PUBLIC_URL + "\n", PUBLIC_URL, id="trailing-newline"),
        pytest.param("https://discovery.etcd.io/", PUBLIC_URL, PUBLIC_URL, id="service-with-slash"),
        pytest.param("https://DISCOVERY.etcd.io", PUBLIC_URL, PUBLIC_URL, id="host-case"),
        pytest.param("http://127.0.0.1:8087", f"http://127.0.0.1:8087/{TOKEN[:16]}", f"http://127.0.0.1:8087/{TOKEN[:16]}", id="self-hosted-16-hex"),
        pytest.param("https://example.com/disc", f"https://example.com/disc/{TOKEN}", f"https://example.com/disc/{TOKEN}", id="service-path-prefix"),
        pytest.param("https://example.com/disc", f"https://example.com/{TOKEN}", None, id="path-prefix-missing"),
        pytest.param("https://discovery.etcd.io", f"https://evil.example/{TOKEN}", None, id="other-host"),
        pytest.param("https://discovery.etcd.io", f"https://discovery.etcd.io/{TOKEN}/x", None, id="two-segments"),
        pytest.param("https://discovery.etcd.io", "https://discovery.etcd.io/abc123", None, id="token-too-short"),
        pytest.param("https://discovery.etcd.io", f"https://discovery.etcd.io/{'a' * 65}", None, id="token-too-long"),
        pytest.param("https://discovery.etcd.io", "https://discovery.etcd.io/zzzzzzzzzzzzzzzzzzzz", None, id="token-not-hex"),
        pytest.param("https://discovery.etcd.io", f"https://discovery.etcd.io/{TOKEN}?x=1", None, id="query"),
        pytest.param("https://discovery.etcd.io", f"https://user:pw@discovery.etcd.io/{TOKEN}", None, id="userinfo"),
        pytest.param("https://discovery.etcd.io", f"ftp://discovery.etcd.io/{TOKEN}", None, id="scheme"),
        pytest.param("https://discovery.etcd.io", "<html><body>Service Unavailable</body></html>", None, id="html"),
        pytest.param("https://discovery.etcd.io", f"{PUBLIC_URL} {PUBLIC_URL}", None, id="two-urls"),
        pytest.param("https://discovery.etcd.io", "", None, id="empty"),
        pytest.param("https://discovery.etcd.io", "size must be an integer", None, id="error-text"),
    ],
)
def test_parse_public_token_url(service, body, expected):
    assert d.parse_public_token_url(service, body) == expected


# ---------------------------------------------------------------------------------------------------
# User data

FLATCAR_V2 = f"""#cloud-config
coreos:
  units:
    - name: etcd-member.service
      command: start
      drop-ins:
        - name: 20-cluster.conf
          content: |
            [Service]
            Environment="ETCD_NAME=%m"
            Environment="ETCD_DISCOVERY={PUBLIC_URL}"
            Environment="ETCD_ADVERTISE_CLIENT_URLS=http://$private_ipv4:2379"
"""

FLATCAR_V3 = """#cloud-config
coreos:
  units:
    - name: etcd-member.service
      command: start
      drop-ins:
        - name: 20-cluster.conf
          content: |
            [Service]
            Environment="ETCD_DISCOVERY_TOKEN=0f3c9b2d7a6e4c1b"
            Environment="ETCD_DISCOVERY_ENDPOINTS=http://10.0.0.5:2379,http://10.0.0.6:2379"
"""

LEGACY_COREOS = f"""#cloud-config
coreos:
  etcd2:
    discovery: {PUBLIC_URL}
    advertise-client-urls: http://$private_ipv4:2379
    listen-client-urls: http://0.0.0.0:2379
  units:
    - name: etcd2.service
      command: start
"""

EXECSTART = f"""#cloud-config
coreos:
  units:
    - name: etcd.service
      content: |
        [Service]
        ExecStart=/usr/bin/etcd --name %m --discovery {V2_URL} --discovery-fallback exit
"""

EXECSTART_EQUALS = f"""[Service]
ExecStart=/usr/bin/etcd --name=%m --discovery-fallback=exit --discovery={V2_URL}
"""

SCRIPT = f"""#!/bin/bash
export ETCD_DISCOVERY="{PUBLIC_URL}"
exec etcd
"""

IGNITION_DROPIN = json.dumps({
    "ignition": {"version": "3.3.0"},
    "systemd": {"units": [{
        "name": "etcd-member.service", "enabled": True,
        "dropins": [{"name": "20-discovery.conf", "contents": f'[Service]\nEnvironment="ETCD_DISCOVERY={V2_URL}"\n'}],
    }]},
})

IGNITION_DATA_URL = json.dumps({
    "ignition": {"version": "3.3.0"},
    "storage": {"files": [{
        "path": "/etc/etcd.env",
        "contents": {"source": "data:," + quote(f"ETCD_DISCOVERY={V2_URL}\nETCD_NAME=node\n", safe="")},
    }]},
})

BROKEN_YAML = f"""#cloud-config
coreos:
  units:
  - name: etcd-member.service
     drop-ins: [ {{ oops
Environment="ETCD_DISCOVERY={PUBLIC_URL}"
"""

V3_FLAGS = """[Service]
ExecStart=/usr/bin/etcd --discovery-token=abc123 --discovery-endpoints=http://10.0.0.5:2379
"""

V2_RESULT = {"protocol": "v2", "url": V2_URL}
PUBLIC_RESULT = {"protocol": "v2", "url": PUBLIC_URL}
V3_RESULT = {"protocol": "v3", "token": "0f3c9b2d7a6e4c1b", "endpoints": ["http://10.0.0.5:2379", "http://10.0.0.6:2379"]}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def b64_wrapped(text: str) -> str:
    encoded = b64(text)
    return "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))


@pytest.mark.parametrize(
    "user_data, expected",
    [
        pytest.param(FLATCAR_V2, PUBLIC_RESULT, id="flatcar-v2"),
        pytest.param(b64(FLATCAR_V2), PUBLIC_RESULT, id="flatcar-v2-base64"),
        pytest.param(b64_wrapped(FLATCAR_V2), PUBLIC_RESULT, id="flatcar-v2-base64-wrapped"),
        pytest.param(base64.b64encode(gzip.compress(FLATCAR_V2.encode())).decode(), PUBLIC_RESULT, id="flatcar-v2-gzip-base64"),
        pytest.param(FLATCAR_V3, V3_RESULT, id="flatcar-v3"),
        pytest.param(b64(FLATCAR_V3), V3_RESULT, id="flatcar-v3-base64"),
        pytest.param(LEGACY_COREOS, PUBLIC_RESULT, id="legacy-coreos-etcd2"),
        pytest.param(b64(LEGACY_COREOS), PUBLIC_RESULT, id="legacy-coreos-etcd2-base64"),
        pytest.param(LEGACY_COREOS.replace("etcd2:", "etcd:"), PUBLIC_RESULT, id="legacy-coreos-etcd1"),
        pytest.param(EXECSTART, V2_RESULT, id="execstart-flag-space"),
        pytest.param(EXECSTART_EQUALS, V2_RESULT, id="execstart-flag-equals"),
        pytest.param(EXECSTART_EQUALS.replace("--discovery=", "-discovery="), V2_RESULT, id="execstart-single-dash"),
        pytest.param(SCRIPT, PUBLIC_RESULT, id="shell-export-quoted"),
        pytest.param(f"Environment=ETCD_DISCOVERY={V2_URL}", V2_RESULT, id="unquoted-environment"),
        pytest.param(f'Environment="ETCD_NAME=a" "ETCD_DISCOVERY={V2_URL}"', V2_RESULT, id="two-assignments-one-line"),
        pytest.param(IGNITION_DROPIN, V2_RESULT, id="ignition-dropin"),
        pytest.param(b64(IGNITION_DROPIN), V2_RESULT, id="ignition-dropin-base64"),
        pytest.param(IGNITION_DATA_URL, V2_RESULT, id="ignition-data-url"),
        pytest.param(BROKEN_YAML, PUBLIC_RESULT, id="broken-yaml-regex-fallback"),
        pytest.param(V3_FLAGS, {"protocol": "v3", "token": "abc123", "endpoints": ["http://10.0.0.5:2379"]}, id="v3-flags"),
        pytest.param(FLATCAR_V2 + f'            Environment="ETCD_DISCOVERY={PUBLIC_URL}"\n', PUBLIC_RESULT, id="same-url-twice"),
        pytest.param(LEGACY_COREOS + FLATCAR_V2.split("\n", 1)[1].replace("coreos:\n", ""), PUBLIC_RESULT, id="legacy-and-dropin-agree"),
        # Not discovery settings at all:
        pytest.param("#cloud-config\nhostname: a\n", None, id="no-discovery"),
        pytest.param('Environment="ETCD_DISCOVERY_SRV=example.com"', None, id="discovery-srv-only"),
        pytest.param('Environment="ETCD_DISCOVERY=$DISCOVERY_URL"', None, id="unexpanded-variable"),
        pytest.param("ExecStart=/usr/bin/etcd --discovery-fallback exit", None, id="fallback-flag-only"),
        pytest.param("", None, id="empty"),
        pytest.param("   \n", None, id="blank"),
        pytest.param(None, None, id="none"),
        pytest.param(b64("#!/bin/sh\necho hello\n"), None, id="base64-script-without-discovery"),
    ],
)
def test_find_discovery_in_user_data(user_data, expected):
    assert d.find_discovery_in_user_data(user_data) == expected


@pytest.mark.parametrize(
    "user_data, error",
    [
        pytest.param(FLATCAR_V2 + f'            Environment="ETCD_DISCOVERY={V2_URL}"\n', "2 different etcd discovery URLs", id="two-urls"),
        pytest.param('Environment="ETCD_DISCOVERY_TOKEN=abc"', "no ETCD_DISCOVERY_ENDPOINTS", id="v3-without-endpoints"),
        pytest.param(FLATCAR_V3 + f'            Environment="ETCD_DISCOVERY={V2_URL}"\n', "both a v2 discovery URL and a v3", id="v2-and-v3"),
        pytest.param(
            'Environment="ETCD_DISCOVERY_TOKEN=a"\nEnvironment="ETCD_DISCOVERY_TOKEN=b"\nEnvironment="ETCD_DISCOVERY_ENDPOINTS=http://x:1"',
            "2 different etcd discovery tokens", id="two-tokens",
        ),
    ],
)
def test_find_discovery_contradictions(user_data, error):
    with pytest.raises(ClusterError, match=error) as info:
        d.find_discovery_in_user_data(user_data)
    # The settings are secrets; a message describes the conflict without quoting them.
    assert TOKEN not in info.value.msg and "10.0.0.5" not in info.value.msg


@pytest.mark.parametrize(
    "user_data_list, expected, error",
    [
        pytest.param([], None, None, id="no-instances"),
        pytest.param(["", None, "#cloud-config\n"], None, None, id="nothing-found"),
        pytest.param(["", b64(FLATCAR_V2), FLATCAR_V2], PUBLIC_RESULT, None, id="agree-raw-and-base64"),
        pytest.param([FLATCAR_V2, LEGACY_COREOS], PUBLIC_RESULT, None, id="agree-across-flavours"),
        pytest.param(
            [FLATCAR_V3, FLATCAR_V3.replace("http://10.0.0.5:2379,http://10.0.0.6:2379", "http://10.0.0.6:2379,http://10.0.0.5:2379")],
            V3_RESULT, None, id="v3-endpoint-order-ignored",
        ),
        pytest.param([FLATCAR_V2, "", EXECSTART], None, r"existing_user_data\[0\] and existing_user_data\[2\] carry different", id="disagree"),
        pytest.param(["", 'Environment="ETCD_DISCOVERY_TOKEN=abc"'], None, r"^existing_user_data\[1\]: .*no ETCD_DISCOVERY_ENDPOINTS", id="broken-one"),
    ],
)
def test_find_discovery_in_instances(user_data_list, expected, error):
    if error:
        with pytest.raises(ClusterError, match=error):
            d.find_discovery_in_instances(user_data_list)
    else:
        assert d.find_discovery_in_instances(user_data_list) == expected


@pytest.mark.parametrize(
    "setting, expected",
    [
        (PUBLIC_RESULT, ("public", TOKEN)),
        (V2_RESULT, ("etcd_v2", "0f3c9b2d7a6e4c1b8d5e2f9a0b1c2d3e")),
        (V3_RESULT, ("etcd_v3", "0f3c9b2d7a6e4c1b")),
    ],
)
def test_describe_reused(setting, expected):
    assert d.describe_reused(setting) == expected


# ---------------------------------------------------------------------------------------------------
# Which errors are retried, and how they read


def http_status(code, reason="", body=b"", headers=None):
    return d.HttpStatusError(code, reason, body, headers or {})


@pytest.mark.parametrize(
    "exc, transient, description",
    [
        (http_status(503, "Service Unavailable"), True, "HTTP 503 Service Unavailable"),
        (http_status(429, "Too Many Requests"), True, "HTTP 429 Too Many Requests"),
        (http_status(500), True, "HTTP 500 Internal Server Error"),
        (http_status(502), True, "HTTP 502 Bad Gateway"),
        (http_status(504), True, "HTTP 504 Gateway Timeout"),
        (http_status(404, "Not Found"), False, "HTTP 404 Not Found"),
        (http_status(400, "Bad Request", b'{"errorCode":209,"message":"Invalid field"}'), False, "HTTP 400 Bad Request (Invalid field)"),
        (http_status(412, "", b'{"errorCode":105,"message":"Key already exists"}'), False, "HTTP 412 Precondition Failed (Key already exists)"),
        (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), True, "connection failed: [Errno 111] Connection refused"),
        (urllib.error.URLError(socket.timeout("timed out")), True, "timed out after 10 s"),
        (
            urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known")), False,
            "connection failed: [Errno -2] Name or service not known",
        ),
        (TimeoutError("timed out"), True, "timed out after 10 s"),
        (ConnectionResetError(104, "Connection reset by peer"), True, "connection failed: [Errno 104] Connection reset by peer"),
        (d.http.client.RemoteDisconnected("Remote end closed connection"), True, "invalid HTTP answer (RemoteDisconnected: Remote end closed connection)"),
        (d.SSLValidationError("certificate verify failed"), False, "connection failed: certificate verify failed"),
        (ValueError("bug"), False, "connection failed: bug"),
    ],
)
def test_is_transient_and_describe(exc, transient, description):
    assert d.is_transient(exc) is transient
    assert d.describe_error(exc, 10) == description


def test_printable_escapes_and_truncates():
    assert d.printable("a\x1b[31mb\n", 100) == "a\\x1b[31mb\\n"
    assert d.printable("x" * 150, 100) == "x" * 100 + "..."


# ---------------------------------------------------------------------------------------------------
# The public protocol against a real HTTP server


class FakeDiscovery:
    """An HTTP server on a free loopback port that plays a script of answers to GET /new.

    Each answer is (status, body, headers, delay). The last one repeats when the script runs out.
    """

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                fake.requests.append(self.path)
                index = min(len(fake.requests), len(fake.answers)) - 1
                status, body, headers, delay = fake.answers[index]
                if delay:
                    time.sleep(delay)
                payload = body.replace("{base}", fake.url).encode()
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def ok(body="{base}/" + TOKEN):
    return (200, body, {"Content-Type": "text/plain"}, 0)


def status(code, body="", headers=None, delay=0):
    return (code, body, headers or {}, delay)


def refused_url():
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def test_public_good_answer():
    with FakeDiscovery([ok()]) as service:
        sleeps = Sleeps()
        url = d.create_public_token(service.url, 5, timeout=5, sleep=sleeps)
    assert url == f"{service.url}/{TOKEN}"
    assert service.requests == ["/new?size=5"]
    assert sleeps == []


def test_public_503_then_good():
    with FakeDiscovery([status(503), status(502), ok()]) as service:
        sleeps = Sleeps()
        url = d.create_public_token(service.url, 3, timeout=5, retries=5, sleep=sleeps)
    assert url == f"{service.url}/{TOKEN}"
    assert len(service.requests) == 3
    assert len(sleeps) == 2 and all(0 <= s <= 8 for s in sleeps)


def test_public_429_honours_retry_after():
    with FakeDiscovery([status(429, headers={"Retry-After": "7"}), ok()]) as service:
        sleeps = Sleeps()
        d.create_public_token(service.url, 3, timeout=5, sleep=sleeps)
    assert sleeps == [7.0]


def test_public_503_gives_up_with_service_and_status():
    with FakeDiscovery([status(503)]) as service:
        sleeps = Sleeps()
        with pytest.raises(ClusterError) as info:
            d.create_public_token(service.url, 3, timeout=5, retries=2, sleep=sleeps)
    assert info.value.msg == (
        f"Failed to create discovery token at {service.url}: HTTP 503 Service Unavailable; gave up after 3 attempts"
    )
    assert len(service.requests) == 3 and len(sleeps) == 2


def test_public_404_is_not_retried():
    with FakeDiscovery([status(404, "not here")]) as service:
        sleeps = Sleeps()
        with pytest.raises(ClusterError, match=r"^Failed to create discovery token at http://127\.0\.0\.1:\d+: HTTP 404 Not Found$"):
            d.create_public_token(service.url + "/", 3, timeout=5, sleep=sleeps)
    assert service.requests == ["/new?size=3"] and sleeps == []


@pytest.mark.parametrize(
    "body, shown",
    [
        pytest.param("<html>\x1b[31mcaptive portal</html>", "'<html>\\x1b[31mcaptive portal</html>'", id="html"),
        pytest.param("", "an empty answer", id="empty"),
        pytest.param(f"https://evil.example/{TOKEN}", f"'https://evil.example/{TOKEN}'", id="other-host"),
        pytest.param("x" * 500, "'" + "x" * 100 + "...'", id="long"),
    ],
)
def test_public_garbage_body(body, shown):
    with FakeDiscovery([ok(body)]) as service:
        with pytest.raises(ClusterError) as info:
            d.create_public_token(service.url, 3, timeout=5, sleep=Sleeps())
    assert info.value.msg.startswith(f"Failed to create discovery token at {service.url}: expected a token URL")
    assert info.value.msg.endswith("got " + shown)
    assert len(service.requests) == 1  # a garbage answer is not retried


def test_public_connection_refused():
    url = refused_url()
    sleeps = Sleeps()
    with pytest.raises(ClusterError) as info:
        d.create_public_token(url, 3, timeout=2, retries=2, sleep=sleeps)
    assert info.value.msg.startswith(f"Failed to create discovery token at {url}: connection failed:")
    assert "Connection refused" in info.value.msg
    assert info.value.msg.endswith("gave up after 3 attempts")
    assert len(sleeps) == 2


def test_public_slow_answer_times_out():
    with FakeDiscovery([status(200, "{base}/" + TOKEN, delay=2)]) as service:
        sleeps = Sleeps()
        started = time.monotonic()
        with pytest.raises(ClusterError) as info:
            d.create_public_token(service.url, 3, timeout=0.3, retries=1, sleep=sleeps)
        elapsed = time.monotonic() - started
    assert info.value.msg == f"Failed to create discovery token at {service.url}: timed out after 0.3 s; gave up after 2 attempts"
    assert len(service.requests) == 2
    assert elapsed < 1.8  # two 0.3 s timeouts, not the server's 2 s delays


def test_public_validation_happens_before_any_request():
    with FakeDiscovery([ok()]) as service:
        with pytest.raises(ValidationError, match="size must be at most 99"):
            d.create_public_token(service.url, 100)
    assert service.requests == []


# ---------------------------------------------------------------------------------------------------
# ensure_present / ensure_absent without etcd


def test_ensure_present_reuses_without_network():
    # The service does not exist: reuse must not touch it.
    result = d.ensure_present("public", 3, service=refused_url(), existing_user_data=["", b64(FLATCAR_V2)], retries=0)
    assert result["changed"] is False and result["reused"] is True
    assert result["discovery_url"] == PUBLIC_URL and result["token"] == TOKEN
    assert result["protocol"] == "public" and result["size"] is None and result["warnings"] == []
    assert result["diff"] == {"before": {"token_exists": True}, "after": {"token_exists": True}}


def test_ensure_present_reuse_warns_on_other_protocol():
    result = d.ensure_present("etcd_v2", 3, service="http://10.0.0.5:2379", existing_user_data=[FLATCAR_V3])
    assert result["reused"] is True and result["protocol"] == "etcd_v3"
    assert result["token"] == "0f3c9b2d7a6e4c1b" and result["endpoints"] == V3_RESULT["endpoints"]
    assert result["discovery_url"] == ""
    assert result["warnings"] == ["The running instances use protocol etcd_v3, not the requested etcd_v2; reusing theirs"]


def test_ensure_present_check_mode_mints_nothing():
    with FakeDiscovery([ok()]) as service:
        result = d.ensure_present("public", 3, service=service.url, existing_user_data=["#cloud-config\n"], check_mode=True)
    assert service.requests == []
    assert result["changed"] is True and result["discovery_url"] == "" and result["token"] == ""
    assert result["diff"] == {"before": {"token_exists": False}, "after": {"token_exists": True}}


def test_ensure_present_public_mints():
    with FakeDiscovery([ok()]) as service:
        result = d.ensure_present("public", 3, service=service.url)
    assert service.requests == ["/new?size=3"]
    assert result["changed"] is True and result["reused"] is False
    assert result["discovery_url"] == f"{service.url}/{TOKEN}" and result["token"] == TOKEN


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: d.ensure_present("etcd_v2", 3), "service is required with protocol=etcd_v2"),
        (lambda: d.ensure_present("etcd_v3", 3), "endpoints must be a non-empty list"),
        (lambda: d.ensure_present("public", 3, endpoints=["http://a:1"]), "endpoints is only used with protocol=etcd_v3"),
        (lambda: d.ensure_present("public", 0), "size must be at least 1"),
        (lambda: d.ensure_present("bogus", 3), "protocol must be one of"),
        (lambda: d.ensure_absent("public", url=PUBLIC_URL), "state=absent needs protocol=etcd_v2 or etcd_v3"),
        (lambda: d.ensure_absent("etcd_v2"), "url is required with state=absent"),
        (lambda: d.ensure_absent("etcd_v2", url=PUBLIC_URL), "url must be an etcd v2 discovery URL"),
        (lambda: d.ensure_absent("etcd_v3", endpoints=["http://a:1"]), "token is required"),
        (lambda: d.ensure_absent("etcd_v3", token="abc"), "endpoints must be a non-empty list"),
    ],
)
def test_ensure_validation(call, error):
    with pytest.raises(ValidationError, match=error):
        call()


@pytest.mark.parametrize(
    "body, expected",
    [
        (b'{"action":"create","node":{"value":"3"}}', {"action": "create", "node": {"value": "3"}}),
        (b"<html>bad gateway</html>", "the answer is not JSON: '<html>bad gateway</html>'"),
        (b"\xff\xfe", "the answer is not JSON"),
        (b"[1, 2]", "unexpected answer '[1, 2]'"),
    ],
)
def test_json_body(body, expected):
    if isinstance(expected, dict):
        assert d._json_body(body, "create discovery token", "http://e:2379") == expected
    else:
        with pytest.raises(ClusterError, match="^Failed to create discovery token at http://e:2379: " + re.escape(expected)):
            d._json_body(body, "create discovery token", "http://e:2379")


# ---------------------------------------------------------------------------------------------------
# The contract with the cloud-config generator: what it writes, this module reads back.


@pytest.mark.parametrize(
    "params, expected",
    [
        pytest.param({"flavor": "flatcar", "discovery_url": PUBLIC_URL}, PUBLIC_RESULT, id="flatcar-v2"),
        pytest.param({"flavor": "coreos", "discovery_url": V2_URL}, V2_RESULT, id="coreos-etcd2"),
        pytest.param(
            {"flavor": "flatcar", "fleet": False, "discovery_token": "0f3c9b2d7a6e4c1b",
             "discovery_endpoints": V3_RESULT["endpoints"]},
            V3_RESULT, id="flatcar-v3",
        ),
    ],
)
def test_reads_back_generated_user_data(params, expected):
    cc = pytest.importorskip("ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config")
    user_data = cc.build_user_data(cc.settings_from_params(params)).user_data
    assert d.find_discovery_in_user_data(user_data) == expected
    assert d.find_discovery_in_user_data(b64(user_data)) == expected
