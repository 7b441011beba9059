# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP for the discovery backends: validation of what they are given, one request, retries, errors.

HTTP goes through ansible.module_utils.urls.open_url: no third-party import, proxies and
validate_certs behave as in every other Ansible module.

Discovery URLs and tokens let anyone join a bootstrapping cluster, so error messages name the
service or the endpoint, never the token.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.error
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import SSLValidationError, open_url

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._retry import http_retry_after, retry_call

MIN_SIZE = 1
# A discovery token only bootstraps the initial members. etcd needs a majority for every write, so
# each member beyond a handful makes the cluster slower, not safer; 99 is already far past sense.
MAX_SIZE = 99
# 429 and the 5xx answers a proxy or an overloaded service gives; anything else will not get better.
RETRYABLE_STATUS = frozenset((429, 500, 502, 503, 504))
# A token body is one short line; a larger answer is an error page, and only its start is shown.
MAX_BODY = 64 * 1024
HTTP_AGENT = "coreos_ec2.cluster-discovery_token"

CONTENT_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CONTENT_JSON = {"Content-Type": "application/json"}


# ---------------------------------------------------------------------------------------------------
# Validation


def validate_size(size: Any, option: str = "size") -> int:
    """The cluster size as an int in [1, 99], or ValidationError naming the option."""
    # bool is an int in Python; `size: true` is a mistake, not a cluster of one.
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValidationError(
            f"{option} must be an integer between {MIN_SIZE} and {MAX_SIZE} (the number of etcd members that "
            f"bootstrap the cluster), got {size!r}"
        )
    if size < MIN_SIZE:
        raise ValidationError(f"{option} must be at least {MIN_SIZE}: a cluster needs one member, got {size}")
    if size > MAX_SIZE:
        raise ValidationError(
            f"{option} must be at most {MAX_SIZE}, got {size}: every etcd write waits for a majority of members, "
            "so a cluster that large is slower, not safer (3 or 5 members is the usual choice)"
        )
    return size


def validate_service_url(value: Any, option: str = "service") -> str:
    """An http(s) URL with a host and no query or fragment, returned without trailing slashes."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{option} must be an http:// or https:// URL, got {value!r}")
    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValidationError(f"{option} must be an http:// or https:// URL, got {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text):
        raise ValidationError(f"{option} must be an http:// or https:// URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ValidationError(f"{option} must be a base URL without a query or fragment, got {value!r}")
    return text.rstrip("/")


def validate_endpoints(endpoints: Any, option: str = "endpoints") -> List[str]:
    """A non-empty list of etcd client URLs."""
    if isinstance(endpoints, str):
        endpoints = [e for e in endpoints.split(",") if e.strip()]
    if not isinstance(endpoints, (list, tuple)) or not endpoints:
        raise ValidationError(f"{option} must be a non-empty list of etcd client URLs (http:// or https://)")
    return [validate_service_url(e, option) for e in endpoints]


def transport_argument_spec() -> Dict[str, Dict[str, Any]]:
    """The options of the discovery modules that make up their Transport (documented in doc_fragments/discovery.py)."""
    return dict(
        timeout=dict(type="float", default=10),
        retries=dict(type="int", default=5),
        validate_certs=dict(type="bool", default=True),
    )


def transport_options(params: Dict[str, Any]) -> Dict[str, Any]:
    """The keyword arguments of the states functions that transport_argument_spec() options give."""
    return {name: params[name] for name in transport_argument_spec()}


def validate_transport(timeout: Any, retries: Any) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValidationError(f"timeout must be a number of seconds greater than 0, got {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValidationError(f"retries must be an integer >= 0, got {retries!r}")


# ---------------------------------------------------------------------------------------------------
# Errors: which are worth another attempt, and how they read


class HttpStatusError(Exception):
    """An HTTP answer with an error status, with its body already read (urllib's HTTPError is a stream)."""

    def __init__(self, code: int, reason: str, body: bytes, headers: Any) -> None:
        super().__init__(f"HTTP {code} {reason}")
        self.code = code
        self.reason = reason or _status_phrase(code)
        self.body = body
        self.headers = headers

    def etcd_message(self) -> str:
        """etcd's own explanation: v2 answers {"message": ...}, the v3 gateway {"error"/"message": ...}."""
        try:
            data = json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return ""
        if isinstance(data, dict):
            return str(data.get("message") or data.get("error") or "")
        return ""

    def etcd_error_code(self) -> Optional[int]:
        try:
            data = json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None
        code = data.get("errorCode") if isinstance(data, dict) else None
        return code if isinstance(code, int) else None

    def is_key_not_found(self) -> bool:
        """etcd v2's 404 with errorCode 100 (Key not found), also what discovery.etcd.io passes on."""
        return self.code == 404 and self.etcd_error_code() == 100


def _status_phrase(code: int) -> str:
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return ""


TRANSPORT_ERRORS = (HttpStatusError, OSError, http.client.HTTPException, UrlsConnectionError)


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed: connection trouble, timeouts, 429 and 5xx gateway answers."""
    if isinstance(exc, HttpStatusError):
        return exc.code in RETRYABLE_STATUS
    if isinstance(exc, SSLValidationError):
        return False  # a certificate does not become valid by asking again
    if isinstance(exc, UrlsConnectionError):
        return True
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, (ssl.SSLError, ssl.CertificateError)):
            return False
        if isinstance(reason, socket.gaierror) and reason.errno == socket.EAI_NONAME:
            return False  # a host name that does not exist
        return True
    if isinstance(exc, (TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException)):
        return True
    return False


def describe_error(exc: BaseException, timeout: float) -> str:
    """A short cause for a message: 'HTTP 503 Service Unavailable', 'timed out after 10 s', ..."""
    if isinstance(exc, HttpStatusError):
        text = f"HTTP {exc.code} {exc.reason}".rstrip()
        detail = exc.etcd_message()
        return f"{text} ({printable(detail, 200)})" if detail else text
    reason: Any = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, (TimeoutError, socket.timeout)) or str(reason) == "timed out":
        return f"timed out after {timeout:g} s"
    if isinstance(reason, http.client.HTTPException):
        return f"invalid HTTP answer ({type(reason).__name__}: {reason})"
    return f"connection failed: {reason}"


def printable(text: str, limit: int = 100) -> str:
    """`text` cut to `limit` characters, with control characters escaped, for an error message."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return shown + ("..." if len(text) > limit else "")


def json_body(body: bytes, action: str, where: str) -> Dict[str, Any]:
    """An answer's JSON object, or ClusterError "Failed to <action> at <where>: ..."."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ClusterError(
            f"Failed to {action} at {where}: the answer is not JSON: '{printable(body.decode('utf-8', 'replace'))}'"
        ) from None
    if not isinstance(data, dict):
        raise ClusterError(f"Failed to {action} at {where}: unexpected answer '{printable(json.dumps(data))}'")
    return data


# ---------------------------------------------------------------------------------------------------
# Requests with retries


class Transport:
    """How every request of one module run is made: timeout, certificate checks, retries, sleep."""

    def __init__(
        self,
        timeout: float = 10,
        validate_certs: bool = True,
        retries: int = 5,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        validate_transport(timeout, retries)
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.retries = retries
        self.sleep = sleep

    def request(
        self, method: str, url: str, data: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None,
    ) -> Tuple[int, bytes]:
        """One HTTP call; an error status becomes HttpStatusError with the body read."""
        try:
            response = open_url(
                url, data=data, headers=headers, method=method, timeout=self.timeout,
                validate_certs=self.validate_certs, http_agent=HTTP_AGENT,
            )
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read(MAX_BODY) or b""
            except Exception:  # noqa: BLE001 - the status is what matters; a broken error body is no news
                body = b""
            raise HttpStatusError(exc.code, str(exc.reason or ""), body, exc.headers) from None
        try:
            status = getattr(response, "status", None) or response.getcode()
            return status, response.read(MAX_BODY)
        finally:
            response.close()

    def attempt(self, action: str, where: str, func: Callable[[], Any]) -> Any:
        """Run `func` with retries on transient errors; a final transport failure becomes ClusterError.

        The message is "Failed to <action> at <where>: <cause>", where names a service or endpoint.
        """
        calls = [0]

        def counted() -> Any:
            calls[0] += 1
            return func()

        try:
            return retry_call(
                counted, is_retryable=is_transient, attempts=self.retries + 1, sleep=self.sleep,
                retry_after=http_retry_after,
            )
        except TRANSPORT_ERRORS as exc:
            suffix = f"; gave up after {calls[0]} attempts" if calls[0] > 1 else ""
            raise ClusterError(f"Failed to {action} at {where}: {describe_error(exc, self.timeout)}{suffix}") from exc
