# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_discovery.http: validation of sizes, URLs and timeouts; which errors are retried, and how they read."""

from __future__ import annotations

import http.client
import re
import socket
import urllib.error

import pytest
from ansible.module_utils.urls import SSLValidationError

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery import http as h
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError


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
        assert h.validate_size(size) == size
    else:
        with pytest.raises(ValidationError, match="^" + error.replace("(", r"\(")):
            h.validate_size(size)


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
            h.validate_service_url(value, "service")
    else:
        assert h.validate_service_url(value, "service") == expected


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
            h.validate_endpoints(value)
    else:
        assert h.validate_endpoints(value) == expected


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
        h.validate_transport(timeout, retries)
    else:
        with pytest.raises(ValidationError, match=error):
            h.validate_transport(timeout, retries)


# ---------------------------------------------------------------------------------------------------
# Which errors are retried, and how they read


def http_status(code, reason="", body=b"", headers=None):
    return h.HttpStatusError(code, reason, body, headers or {})


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
        (http.client.RemoteDisconnected("Remote end closed connection"), True, "invalid HTTP answer (RemoteDisconnected: Remote end closed connection)"),
        (SSLValidationError("certificate verify failed"), False, "connection failed: certificate verify failed"),
        (ValueError("bug"), False, "connection failed: bug"),
    ],
)
def test_is_transient_and_describe(exc, transient, description):
    assert h.is_transient(exc) is transient
    assert h.describe_error(exc, 10) == description


def test_printable_escapes_and_truncates():
    assert h.printable("a\x1b[31mb\n", 100) == "a\\x1b[31mb\\n"
    assert h.printable("x" * 150, 100) == "x" * 100 + "..."


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
        assert h.json_body(body, "create discovery token", "http://e:2379") == expected
    else:
        with pytest.raises(ClusterError, match="^Failed to create discovery token at http://e:2379: " + re.escape(expected)):
            h.json_body(body, "create discovery token", "http://e:2379")
