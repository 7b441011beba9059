# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""etcd discovery tokens: mint, read back, delete, and find the one a running cluster already uses.

Three ways to get a token:
- `public`: the public protocol of https://discovery.etcd.io (GET <service>/new?size=N answers with
  the token URL as the body). Members pass that URL to `--discovery`.
- `etcd_v2`: a self-hosted etcd with the v2 keys API (etcd <= 3.5 with --enable-v2). A token is the
  directory /_etcd/registry/<uuid> holding `_config/size`, the same layout discovery.etcd.io keeps;
  members pass <endpoint>/v2/keys/_etcd/registry/<uuid> to `--discovery` and register themselves
  as <dir>/<member id>.
- `etcd_v3`: etcd 3.6+ v3 discovery, which reads /_etcd/registry/<token>/_config/size over the v3 API
  (see etcd's server/etcdserver/api/v3discovery/discovery.go). Members get `--discovery-token` and
  `--discovery-endpoints`. The key is written through the v3 JSON gateway (POST /v3/kv/...), which
  etcd 3.4 serves too.

Discovery URLs and tokens let anyone join a bootstrapping cluster, so error messages name the
service or the endpoint, never the token.

HTTP goes through ansible.module_utils.urls.open_url: no third-party import, proxies and
validate_certs behave as in every other Ansible module.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import http.client
import json
import re
import socket
import ssl
import time
import urllib.error
import uuid
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote_to_bytes, urlencode, urlsplit

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import SSLValidationError, open_url

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._retry import http_retry_after, retry_call

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core; the regex fallback still works
    yaml = None

DEFAULT_SERVICE = "https://discovery.etcd.io"
PROTOCOLS = ("public", "etcd_v2", "etcd_v3")
REGISTRY_PREFIX = "/_etcd/registry"
MIN_SIZE = 1
# A discovery token only bootstraps the initial members. etcd needs a majority for every write, so
# each member beyond a handful makes the cluster slower, not safer; 99 is already far past sense.
MAX_SIZE = 99
# 429 and the 5xx answers a proxy or an overloaded service gives; anything else will not get better.
RETRYABLE_STATUS = frozenset((429, 500, 502, 503, 504))
# A token body is one short line; a larger answer is an error page, and only its start is shown.
MAX_BODY = 64 * 1024
HTTP_AGENT = "coreos_ec2.cluster-discovery_token"

# discovery.etcd.io tokens are 32 hex digits today; allow some room either side.
_PUBLIC_TOKEN_RE = re.compile(r"^[0-9a-fA-F]{16,64}$")
# A v3 token becomes part of an etcd key path: no slashes, nothing a shell or unit file would mangle.
_V3_TOKEN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

_CONTENT_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_CONTENT_JSON = {"Content-Type": "application/json"}


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


def validate_token(token: Any, option: str = "token") -> str:
    """A v3 discovery token: letters, digits, '.', '_' and '-', at most 128 characters."""
    if not isinstance(token, str) or not _V3_TOKEN_RE.match(token):
        # The value is a secret: say what is allowed, not what was given.
        raise ValidationError(
            f"{option} must be 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return token


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
    marker = path.find("/v2/keys/")
    if marker < 0 or not path[marker + len("/v2/keys/"):].strip("/"):
        # Also what a discovery.etcd.io URL gives: the public service has no way to delete a token.
        raise ValidationError(shape)
    return base


def validate_transport(timeout: Any, retries: Any) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValidationError(f"timeout must be a number of seconds greater than 0, got {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValidationError(f"retries must be an integer >= 0, got {retries!r}")


# ---------------------------------------------------------------------------------------------------
# HTTP with retries


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


def _status_phrase(code: int) -> str:
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return ""


_TRANSPORT_ERRORS = (HttpStatusError, OSError, http.client.HTTPException, UrlsConnectionError)


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


def _request(
    method: str,
    url: str,
    *,
    timeout: float,
    validate_certs: bool,
    data: Optional[bytes] = None,
    headers: Optional[Dict[str, str]] = None,
) -> Tuple[int, bytes]:
    """One HTTP call; an error status becomes HttpStatusError with the body read."""
    try:
        response = open_url(
            url, data=data, headers=headers, method=method, timeout=timeout,
            validate_certs=validate_certs, http_agent=HTTP_AGENT,
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


def _attempt(
    action: str,
    where: str,
    func: Callable[[], Any],
    *,
    timeout: float,
    retries: int,
    sleep: Callable[[float], object],
) -> Any:
    """Run `func` with retries on transient errors; a final transport failure becomes ClusterError.

    The message is "Failed to <action> at <where>: <cause>", where names a service or endpoint.
    """
    calls = [0]

    def counted() -> Any:
        calls[0] += 1
        return func()

    try:
        return retry_call(
            counted, is_retryable=is_transient, attempts=retries + 1, sleep=sleep, retry_after=http_retry_after,
        )
    except _TRANSPORT_ERRORS as exc:
        suffix = f"; gave up after {calls[0]} attempts" if calls[0] > 1 else ""
        raise ClusterError(f"Failed to {action} at {where}: {describe_error(exc, timeout)}{suffix}") from exc


def _json_body(body: bytes, action: str, where: str) -> Dict[str, Any]:
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
# The public protocol (discovery.etcd.io)


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


def create_public_token(
    service: str = DEFAULT_SERVICE,
    size: int = 3,
    timeout: float = 10,
    validate_certs: bool = True,
    retries: int = 5,
    sleep: Callable[[float], object] = time.sleep,
) -> str:
    """Mint a token at a service speaking the discovery.etcd.io protocol; returns the token URL."""
    service = validate_service_url(service, "service")
    size = validate_size(size)
    validate_transport(timeout, retries)
    action = "create discovery token"

    def new() -> Tuple[int, bytes]:
        return _request("GET", f"{service}/new?{urlencode({'size': size})}", timeout=timeout, validate_certs=validate_certs)

    _status, body = _attempt(action, service, new, timeout=timeout, retries=retries, sleep=sleep)
    text = body.decode("utf-8", "replace")
    url = parse_public_token_url(service, text)
    if url is None:
        got = f"'{printable(text.strip())}'" if text.strip() else "an empty answer"
        raise ClusterError(
            f"Failed to {action} at {service}: expected a token URL on the same host "
            f"(like {service}/<hex token>), got {got}"
        )
    return url


# ---------------------------------------------------------------------------------------------------
# Self-hosted etcd, v2 keys API


def v2_endpoint_of(url: str) -> str:
    """The client URL part of a v2 discovery URL (what error messages name instead of the token)."""
    return url[: url.find("/v2/keys/")]


def _v2_dir_url(endpoint: str, token: str) -> str:
    return f"{endpoint}/v2/keys{REGISTRY_PREFIX}/{token}"


def _v2_hint(exc: BaseException) -> Optional[str]:
    if isinstance(exc, HttpStatusError) and exc.code == 404 and exc.etcd_error_code() is None:
        # etcd 3.4/3.5 answer a plain "404 page not found" when started without --enable-v2.
        return "the v2 keys API is not served there (etcd 3.4 and 3.5 need --enable-v2; 3.6 dropped it)"
    return None


def _v2_read_size(dir_url: str, *, timeout: float, validate_certs: bool, retries: int, sleep: Callable[[float], object], action: str) -> Optional[int]:
    """The size stored under a v2 token directory; None when the key does not exist."""
    where = v2_endpoint_of(dir_url)

    def get() -> Optional[Tuple[int, bytes]]:
        try:
            return _request("GET", f"{dir_url}/_config/size", timeout=timeout, validate_certs=validate_certs)
        except HttpStatusError as exc:
            if exc.code == 404 and exc.etcd_error_code() == 100:  # 100 = Key not found
                return None
            raise

    answer = _attempt_v2(action, where, get, timeout=timeout, retries=retries, sleep=sleep)
    if answer is None:
        return None
    node = _json_body(answer[1], action, where).get("node") or {}
    try:
        return int(node.get("value"))
    except (TypeError, ValueError):
        raise ClusterError(f"Failed to {action} at {where}: _config/size holds '{printable(str(node.get('value')))}', not a number") from None


def _attempt_v2(action: str, where: str, func: Callable[[], Any], **kwargs: Any) -> Any:
    try:
        return _attempt(action, where, func, **kwargs)
    except ClusterError as exc:
        hint = _v2_hint(exc.__cause__) if exc.__cause__ is not None else None
        if hint:
            raise ClusterError(f"{exc.msg}: {hint}") from exc.__cause__
        raise


def create_etcd_v2_token(
    endpoint: str,
    size: int,
    timeout: float = 10,
    validate_certs: bool = True,
    retries: int = 5,
    sleep: Callable[[float], object] = time.sleep,
) -> str:
    """Create /_etcd/registry/<uuid>/_config/size = size on an etcd v2 keys API; returns the member URL."""
    endpoint = validate_service_url(endpoint, "service")
    size = validate_size(size)
    validate_transport(timeout, retries)
    action = "create discovery token"
    dir_url = _v2_dir_url(endpoint, uuid.uuid4().hex)
    # prevExist=false: etcd refuses to overwrite. A fresh uuid4 never exists, so a 412 can only come
    # from our own earlier attempt whose answer was lost; that attempt's value is then checked below.
    form = urlencode({"value": str(size), "prevExist": "false"}).encode()

    def put() -> Optional[Tuple[int, bytes]]:
        try:
            return _request("PUT", f"{dir_url}/_config/size", data=form, headers=_CONTENT_FORM,
                            timeout=timeout, validate_certs=validate_certs)
        except HttpStatusError as exc:
            if exc.code == 412:
                return None
            raise

    answer = _attempt_v2(action, endpoint, put, timeout=timeout, retries=retries, sleep=sleep)
    if answer is None:
        stored = _v2_read_size(dir_url, timeout=timeout, validate_certs=validate_certs, retries=retries, sleep=sleep, action=action)
    else:
        node = _json_body(answer[1], action, endpoint).get("node") or {}
        stored = int(node["value"]) if str(node.get("value", "")).isdigit() else None
    if stored != size:
        raise ClusterError(f"Failed to {action} at {endpoint}: etcd stored size {stored!r} instead of {size}")
    return dir_url


# ---------------------------------------------------------------------------------------------------
# Self-hosted etcd, v3 API through the JSON gateway


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _prefix_end(prefix: str) -> str:
    """etcd's range_end for "every key starting with prefix" (last byte plus one)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def v3_size_key(token: str) -> str:
    return f"{REGISTRY_PREFIX}/{token}/_config/size"


def v3_token_prefix(token: str) -> str:
    return f"{REGISTRY_PREFIX}/{token}/"


def _v3_call(
    endpoints: List[str],
    path: str,
    payload: Dict[str, Any],
    action: str,
    *,
    timeout: float,
    validate_certs: bool,
    retries: int,
    sleep: Callable[[float], object],
) -> Dict[str, Any]:
    """POST a gateway request to the first endpoint that answers; retry the round on transient errors."""
    where = ", ".join(endpoints)
    data = json.dumps(payload).encode()

    def one_round() -> Tuple[int, bytes]:
        last: Optional[BaseException] = None
        for endpoint in endpoints:
            try:
                return _request("POST", endpoint + path, data=data, headers=_CONTENT_JSON,
                                timeout=timeout, validate_certs=validate_certs)
            except _TRANSPORT_ERRORS as exc:
                if not is_transient(exc):
                    raise
                last = exc  # a member that is down: ask the next one
        raise last if last is not None else ClusterError(f"Failed to {action}: no endpoints")

    _status, body = _attempt(action, where, one_round, timeout=timeout, retries=retries, sleep=sleep)
    return _json_body(body, action, where)


def _v3_read_size(endpoints: List[str], token: str, action: str, **transport: Any) -> Optional[int]:
    answer = _v3_call(endpoints, "/v3/kv/range", {"key": _b64(v3_size_key(token))}, action, **transport)
    kvs = answer.get("kvs") or []
    if not kvs:
        return None
    raw = base64.b64decode(kvs[0].get("value") or "").decode("utf-8", "replace")
    if not raw.isdigit():
        raise ClusterError(f"Failed to {action} at {', '.join(endpoints)}: _config/size holds '{printable(raw)}', not a number")
    return int(raw)


def create_etcd_v3_token(
    endpoints: List[str],
    size: int,
    timeout: float = 10,
    validate_certs: bool = True,
    retries: int = 5,
    sleep: Callable[[float], object] = time.sleep,
) -> str:
    """Write /_etcd/registry/<new token>/_config/size = size through the v3 gateway; returns the token."""
    endpoints = validate_endpoints(endpoints)
    size = validate_size(size)
    validate_transport(timeout, retries)
    action = "create discovery token"
    token = uuid.uuid4().hex
    key = _b64(v3_size_key(token))
    # Create-only, like prevExist=false in v2: a retried request whose first answer was lost must not
    # look like a failure, and nothing ever overwrites a token's size.
    txn = {
        "compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
        "success": [{"request_put": {"key": key, "value": _b64(str(size))}}],
    }
    transport = {"timeout": timeout, "validate_certs": validate_certs, "retries": retries, "sleep": sleep}
    answer = _v3_call(endpoints, "/v3/kv/txn", txn, action, **transport)
    # The gateway leaves out false booleans: no "succeeded" means the key already existed.
    if answer.get("succeeded") is not True:
        stored = _v3_read_size(endpoints, token, action, **transport)
        if stored != size:
            raise ClusterError(f"Failed to {action} at {', '.join(endpoints)}: etcd stored size {stored!r} instead of {size}")
    return token


# ---------------------------------------------------------------------------------------------------
# Reading back and deleting self-hosted tokens


def _transport(timeout: float, validate_certs: bool, retries: int, sleep: Callable[[float], object]) -> Dict[str, Any]:
    validate_transport(timeout, retries)
    return {"timeout": timeout, "validate_certs": validate_certs, "retries": retries, "sleep": sleep}


def read_token_size(
    protocol: str,
    *,
    url: Optional[str] = None,
    endpoints: Optional[List[str]] = None,
    token: Optional[str] = None,
    timeout: float = 10,
    validate_certs: bool = True,
    retries: int = 5,
    sleep: Callable[[float], object] = time.sleep,
) -> Optional[int]:
    """The size a self-hosted token was created with; None when it does not exist."""
    transport = _transport(timeout, validate_certs, retries, sleep)
    action = "read discovery token"
    if protocol == "etcd_v2":
        return _v2_read_size(validate_v2_url(url), action=action, **transport)
    if protocol == "etcd_v3":
        return _v3_read_size(validate_endpoints(endpoints), validate_token(token), action, **transport)
    raise ValidationError(f"protocol must be etcd_v2 or etcd_v3 to read a token back, got {protocol!r}")


def _v2_dir_exists(url: str, action: str, **transport: Any) -> bool:
    def get() -> bool:
        try:
            _request("GET", url, timeout=transport["timeout"], validate_certs=transport["validate_certs"])
            return True
        except HttpStatusError as exc:
            if exc.code == 404 and exc.etcd_error_code() == 100:
                return False
            raise

    return _attempt_v2(action, v2_endpoint_of(url), get, **_retry_kwargs(transport))


def _retry_kwargs(transport: Dict[str, Any]) -> Dict[str, Any]:
    return {"timeout": transport["timeout"], "retries": transport["retries"], "sleep": transport["sleep"]}


def _v3_count(endpoints: List[str], token: str, action: str, **transport: Any) -> int:
    prefix = v3_token_prefix(token)
    answer = _v3_call(
        endpoints, "/v3/kv/range",
        {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix)), "count_only": True},
        action, **transport,
    )
    return int(answer.get("count") or 0)


def token_exists(
    protocol: str,
    *,
    url: Optional[str] = None,
    endpoints: Optional[List[str]] = None,
    token: Optional[str] = None,
    timeout: float = 10,
    validate_certs: bool = True,
    retries: int = 5,
    sleep: Callable[[float], object] = time.sleep,
) -> bool:
    """Whether anything is stored under a self-hosted token (its size or registered members)."""
    transport = _transport(timeout, validate_certs, retries, sleep)
    action = "read discovery token"
    if protocol == "etcd_v2":
        return _v2_dir_exists(validate_v2_url(url), action, **transport)
    if protocol == "etcd_v3":
        return _v3_count(validate_endpoints(endpoints), validate_token(token), action, **transport) > 0
    raise ValidationError(f"protocol must be etcd_v2 or etcd_v3 to check a token, got {protocol!r}")


def delete_token(
    protocol: str,
    *,
    url: Optional[str] = None,
    endpoints: Optional[List[str]] = None,
    token: Optional[str] = None,
    timeout: float = 10,
    validate_certs: bool = True,
    retries: int = 5,
    sleep: Callable[[float], object] = time.sleep,
) -> bool:
    """Remove a self-hosted token with everything under it; False when it was already gone."""
    transport = _transport(timeout, validate_certs, retries, sleep)
    action = "delete discovery token"
    if protocol == "etcd_v2":
        url = validate_v2_url(url)
        where = v2_endpoint_of(url)
        if not _v2_dir_exists(url, action, **transport):
            return False
        # A recursive delete of a wrong URL could wipe unrelated keys; only a directory that holds a
        # discovery size is taken for a token.
        if _v2_read_size(url, action=action, **transport) is None:
            raise ClusterError(
                f"Refusing to delete at {where}: the directory given in url has no _config/size, "
                "so it does not look like a discovery token"
            )

        tries = [0]

        def delete() -> bool:
            tries[0] += 1
            try:
                _request("DELETE", f"{url}?{urlencode({'recursive': 'true', 'dir': 'true'})}",
                         timeout=timeout, validate_certs=validate_certs)
                return True
            except HttpStatusError as exc:
                if exc.code == 404 and exc.etcd_error_code() == 100:
                    # On a retry: our earlier attempt deleted it and its answer was lost.
                    # On the first try: someone else deleted it since we looked.
                    return tries[0] > 1
                raise

        return _attempt_v2(action, where, delete, timeout=timeout, retries=retries, sleep=sleep)
    if protocol == "etcd_v3":
        endpoints = validate_endpoints(endpoints)
        prefix = v3_token_prefix(validate_token(token))
        answer = _v3_call(
            endpoints, "/v3/kv/deleterange",
            {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))},
            action, **transport,
        )
        return int(answer.get("deleted") or 0) > 0
    raise ValidationError(
        f"protocol must be etcd_v2 or etcd_v3 to delete a token, got {protocol!r}: "
        "the public discovery service offers no way to delete one"
    )


# ---------------------------------------------------------------------------------------------------
# Finding the discovery setting in an instance's user data

# ETCD_DISCOVERY=<url> as a systemd Environment= assignment (quoted or not, several per line), an
# EnvironmentFile line or a shell export. The `=` right after the name keeps ETCD_DISCOVERY_TOKEN,
# _ENDPOINTS and _SRV out.
_ENV_V2_RE = re.compile(r"""(?:^|(?<=[\s"'=]))ETCD_DISCOVERY=["']?([^\s"'\\]+)""", re.M)
_ENV_TOKEN_RE = re.compile(r"""(?:^|(?<=[\s"'=]))ETCD_DISCOVERY_TOKEN=["']?([^\s"'\\]+)""", re.M)
_ENV_ENDPOINTS_RE = re.compile(r"""(?:^|(?<=[\s"'=]))ETCD_DISCOVERY_ENDPOINTS=["']?([^\s"'\\]+)""", re.M)
# etcd flags in an ExecStart or script; Go accepts one or two dashes and `=` or a space.
_FLAG_V2_RE = re.compile(r"""(?<![\w-])--?discovery(?:=|[ \t]+)["']?([^\s"'\\]+)""")
_FLAG_TOKEN_RE = re.compile(r"""(?<![\w-])--?discovery-token(?:=|[ \t]+)["']?([^\s"'\\]+)""")
_FLAG_ENDPOINTS_RE = re.compile(r"""(?<![\w-])--?discovery-endpoints(?:=|[ \t]+)["']?([^\s"'\\]+)""")

_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=\s]+$")


def decode_user_data(user_data: Any) -> Optional[str]:
    """User data as text: raw, or base64 (as EC2's DescribeInstanceAttribute gives it), maybe gzipped."""
    if user_data is None:
        return None
    raw: bytes = user_data if isinstance(user_data, bytes) else str(user_data).encode("utf-8", "surrogateescape")
    if not raw.strip():
        return None
    stripped = b"".join(raw.split())
    if _BASE64_RE.match(raw.decode("latin-1")) and len(stripped) % 4 == 0:
        try:
            decoded = base64.b64decode(stripped, validate=True)
        except (binascii.Error, ValueError):
            decoded = None
        if decoded is not None:
            unpacked = _maybe_gunzip(decoded)
            try:
                return unpacked.decode("utf-8")
            except UnicodeDecodeError:
                pass  # base64-looking text that is not: read it as it is
    return _maybe_gunzip(raw).decode("utf-8", "replace")


def _maybe_gunzip(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError):
            return data
    return data


def _structured_strings(text: str) -> Tuple[Any, List[str]]:
    """The parsed document (YAML cloud-config or Ignition JSON) and every string inside it.

    Scanning the strings, not only the raw text, finds settings hidden behind JSON escapes, YAML
    quoting or Ignition `data:` URLs.
    """
    document: Any = None
    try:
        document = json.loads(text)
    except ValueError:
        if yaml is not None:
            try:
                document = yaml.safe_load(text)
            except Exception:  # noqa: BLE001 - any YAML trouble means "not YAML": the regex fallback runs
                document = None
    strings: List[str] = []

    def walk(node: Any, depth: int = 0) -> None:
        if depth > 50:
            return
        if isinstance(node, str):
            strings.append(node)
            if node.startswith("data:"):
                strings.append(_decode_data_url(node))
        elif isinstance(node, dict):
            for value in node.values():
                walk(value, depth + 1)
        elif isinstance(node, list):
            for value in node:
                walk(value, depth + 1)

    if isinstance(document, (dict, list)):
        walk(document)
    return document, strings


def _decode_data_url(url: str) -> str:
    """The text of an RFC 2397 data: URL (Ignition writes file contents that way)."""
    header, _sep, payload = url.partition(",")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(payload).decode("utf-8", "replace")
        return unquote_to_bytes(payload).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def _legacy_coreos_discovery(document: Any) -> List[str]:
    """coreos.etcd2.discovery (and the older coreos.etcd.discovery) of a CoreOS cloud-config."""
    found = []
    coreos = document.get("coreos") if isinstance(document, dict) else None
    if isinstance(coreos, dict):
        for section in ("etcd2", "etcd"):
            settings = coreos.get(section)
            if isinstance(settings, dict) and isinstance(settings.get("discovery"), str):
                found.append(settings["discovery"].strip())
    return found


def _is_http_url(value: str) -> bool:
    try:
        validate_service_url(value)
    except ValidationError:
        return False
    return True


def _ordered_unique(values: Iterable[str]) -> List[str]:
    seen: List[str] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def find_discovery_in_user_data(user_data: Any) -> Optional[Dict[str, Any]]:
    """The discovery setting carried by one instance's user data, or None.

    Returns {"protocol": "v2", "url": URL} or {"protocol": "v3", "token": T, "endpoints": [URL, ...]}.
    Raises ClusterError when the user data is contradictory (two different settings, or a v3 token
    without endpoints): minting a new token then would split the cluster.
    """
    text = decode_user_data(user_data)
    if text is None:
        return None
    document, strings = _structured_strings(text)
    texts = [text] + strings

    v2_urls = [u for u in _legacy_coreos_discovery(document) if _is_http_url(u)]
    tokens: List[str] = []
    endpoint_lists: List[Tuple[str, ...]] = []
    for chunk in texts:
        for regex in (_ENV_V2_RE, _FLAG_V2_RE):
            v2_urls.extend(u for u in regex.findall(chunk) if _is_http_url(u))
        for regex in (_ENV_TOKEN_RE, _FLAG_TOKEN_RE):
            tokens.extend(t for t in regex.findall(chunk) if _V3_TOKEN_RE.match(t))
        for regex in (_ENV_ENDPOINTS_RE, _FLAG_ENDPOINTS_RE):
            for value in regex.findall(chunk):
                urls = [e.strip().rstrip("/") for e in value.split(",") if e.strip()]
                if urls and all(_is_http_url(e) for e in urls):
                    endpoint_lists.append(tuple(urls))

    v2_urls = _ordered_unique(u.rstrip("/") for u in v2_urls)
    tokens = _ordered_unique(tokens)
    endpoint_sets = _ordered_unique(tuple(sorted(e)) for e in endpoint_lists)
    if len(v2_urls) > 1:
        raise ClusterError(f"The user data carries {len(v2_urls)} different etcd discovery URLs; cannot tell which one the cluster uses")
    if len(tokens) > 1:
        raise ClusterError(f"The user data carries {len(tokens)} different etcd discovery tokens; cannot tell which one the cluster uses")
    if len(endpoint_sets) > 1:
        raise ClusterError("The user data carries different ETCD_DISCOVERY_ENDPOINTS lists; cannot tell which one the cluster uses")
    if tokens and v2_urls:
        raise ClusterError("The user data carries both a v2 discovery URL and a v3 discovery token; cannot tell which one the cluster uses")
    if tokens:
        if not endpoint_lists:
            raise ClusterError("The user data sets an etcd v3 discovery token but no ETCD_DISCOVERY_ENDPOINTS (--discovery-endpoints)")
        return {"protocol": "v3", "token": tokens[0], "endpoints": list(endpoint_lists[0])}
    if v2_urls:
        return {"protocol": "v2", "url": v2_urls[0]}
    return None


def _setting_key(setting: Dict[str, Any]) -> Tuple[Any, ...]:
    if setting["protocol"] == "v3":
        return ("v3", setting["token"], tuple(sorted(setting["endpoints"])))
    return ("v2", setting["url"])


def find_discovery_in_instances(user_data_list: Iterable[Any]) -> Optional[Dict[str, Any]]:
    """The one discovery setting shared by a cluster's instances (their user data), or None.

    Instances without user data or without a discovery setting are skipped; two instances that
    disagree are an error, since a new member could join either cluster.
    """
    found: List[Tuple[int, Dict[str, Any]]] = []
    for index, user_data in enumerate(user_data_list):
        try:
            setting = find_discovery_in_user_data(user_data)
        except ClusterError as exc:
            raise ClusterError(f"existing_user_data[{index}]: {exc.msg}") from exc
        if setting is not None:
            found.append((index, setting))
    if not found:
        return None
    first_index, first = found[0]
    for index, setting in found[1:]:
        if _setting_key(setting) != _setting_key(first):
            raise ClusterError(
                f"existing_user_data[{first_index}] and existing_user_data[{index}] carry different etcd discovery "
                "settings; refusing to pick one (is an old cluster's instance still listed?)"
            )
    return first


def describe_reused(setting: Dict[str, Any]) -> Tuple[str, str]:
    """(protocol option value, token) for a setting found in user data."""
    if setting["protocol"] == "v3":
        return "etcd_v3", setting["token"]
    url = setting["url"]
    protocol = "etcd_v2" if "/v2/keys/" in urlsplit(url).path else "public"
    return protocol, urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------------------
# What the module does, as plain functions


def ensure_present(
    protocol: str,
    size: Any,
    *,
    service: Optional[str] = None,
    endpoints: Optional[List[str]] = None,
    existing_user_data: Optional[List[Any]] = None,
    check_mode: bool = False,
    timeout: float = 10,
    validate_certs: bool = True,
    retries: int = 5,
    sleep: Callable[[float], object] = time.sleep,
) -> Dict[str, Any]:
    """Reuse the token the cluster's instances carry, or mint one; returns the module's result."""
    size = validate_size(size)
    validate_transport(timeout, retries)
    if protocol not in PROTOCOLS:
        raise ValidationError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol == "etcd_v3":
        endpoints = validate_endpoints(endpoints if endpoints else ([service] if service else None))
    elif endpoints:
        raise ValidationError(f"endpoints is only used with protocol=etcd_v3, not {protocol}; use service")
    elif protocol == "etcd_v2":
        if not service:
            raise ValidationError("service is required with protocol=etcd_v2: the client URL of the etcd that hosts tokens, e.g. http://10.0.0.5:2379")
        service = validate_service_url(service, "service")
    else:
        service = validate_service_url(service or DEFAULT_SERVICE, "service")

    result: Dict[str, Any] = {
        "changed": False, "protocol": protocol, "discovery_url": "", "token": "",
        "endpoints": list(endpoints or []), "size": size, "reused": False, "warnings": [],
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

    result["changed"] = True
    result["diff"] = {"before": {"token_exists": False}, "after": {"token_exists": True}}
    if check_mode:
        return result
    transport = {"timeout": timeout, "validate_certs": validate_certs, "retries": retries, "sleep": sleep}
    if protocol == "public":
        url = create_public_token(service, size, **transport)
    elif protocol == "etcd_v2":
        url = create_etcd_v2_token(service, size, **transport)
    else:
        result["token"] = create_etcd_v3_token(endpoints, size, **transport)
        return result
    result["discovery_url"] = url
    result["token"] = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return result


def ensure_absent(
    protocol: str,
    *,
    url: Optional[str] = None,
    service: Optional[str] = None,
    endpoints: Optional[List[str]] = None,
    token: Optional[str] = None,
    check_mode: bool = False,
    timeout: float = 10,
    validate_certs: bool = True,
    retries: int = 5,
    sleep: Callable[[float], object] = time.sleep,
) -> Dict[str, Any]:
    """Delete a self-hosted token (v2 by url, v3 by token and endpoints); returns the module's result."""
    validate_transport(timeout, retries)
    where: Dict[str, Any]
    if protocol == "etcd_v2":
        if not url:
            raise ValidationError("url is required with state=absent and protocol=etcd_v2: the discovery URL to delete")
        where = {"url": validate_v2_url(url)}
        result_endpoints: List[str] = []
    elif protocol == "etcd_v3":
        if not token:
            raise ValidationError("token is required with state=absent and protocol=etcd_v3")
        endpoints = validate_endpoints(endpoints if endpoints else ([service] if service else None))
        where = {"endpoints": endpoints, "token": validate_token(token)}
        result_endpoints = endpoints
    else:
        raise ValidationError(
            f"state=absent needs protocol=etcd_v2 or etcd_v3, got {protocol!r}: "
            "the public discovery service offers no way to delete a token"
        )
    transport = {"timeout": timeout, "validate_certs": validate_certs, "retries": retries, "sleep": sleep}
    size = read_token_size(protocol, **where, **transport)
    exists = size is not None or token_exists(protocol, **where, **transport)
    result: Dict[str, Any] = {
        "changed": exists, "protocol": protocol, "discovery_url": "", "token": "",
        "endpoints": result_endpoints, "size": size, "reused": False, "warnings": [],
        "diff": {"before": {"token_exists": exists}, "after": {"token_exists": False}},
    }
    if exists and not check_mode:
        # It existed a moment ago and will be gone: a change, even if a retried request whose first
        # answer was lost (or a concurrent run) makes delete_token find nothing left to delete.
        delete_token(protocol, **where, **transport)
    return result
