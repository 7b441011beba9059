# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_discovery.public: the discovery.etcd.io protocol against a real HTTP server.

Retries use a fake sleep, so only the timeout test waits (a fraction of a second).
"""

from __future__ import annotations

import time

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery import public
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.http import Transport
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError, ValidationError

from discovery_fixtures import PUBLIC_URL, TOKEN, FakeDiscovery, Sleeps, ok, refused_url, status


def create_public_token(service, size, **transport):
    """Mint a token as state=present does; returns the token URL."""
    return public.PublicBackend(Transport(**transport), service=service).create(size)[0]


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
    assert public.parse_public_token_url(service, body) == expected


def test_public_good_answer():
    with FakeDiscovery([ok()]) as service:
        sleeps = Sleeps()
        url = create_public_token(service.url, 5, timeout=5, sleep=sleeps)
    assert url == f"{service.url}/{TOKEN}"
    assert service.requests == ["/new?size=5"]
    assert sleeps == []


def test_public_503_then_good():
    with FakeDiscovery([status(503), status(502), ok()]) as service:
        sleeps = Sleeps()
        url = create_public_token(service.url, 3, timeout=5, retries=5, sleep=sleeps)
    assert url == f"{service.url}/{TOKEN}"
    assert len(service.requests) == 3
    assert len(sleeps) == 2 and all(0 <= s <= 8 for s in sleeps)


def test_public_429_honours_retry_after():
    with FakeDiscovery([status(429, headers={"Retry-After": "7"}), ok()]) as service:
        sleeps = Sleeps()
        create_public_token(service.url, 3, timeout=5, sleep=sleeps)
    assert sleeps == [7.0]


def test_public_503_gives_up_with_service_and_status():
    with FakeDiscovery([status(503)]) as service:
        sleeps = Sleeps()
        with pytest.raises(ClusterError) as info:
            create_public_token(service.url, 3, timeout=5, retries=2, sleep=sleeps)
    assert info.value.msg == (
        f"Failed to create discovery token at {service.url}: HTTP 503 Service Unavailable; gave up after 3 attempts"
    )
    assert len(service.requests) == 3 and len(sleeps) == 2


def test_public_404_is_not_retried():
    with FakeDiscovery([status(404, "not here")]) as service:
        sleeps = Sleeps()
        with pytest.raises(ClusterError, match=r"^Failed to create discovery token at http://127\.0\.0\.1:\d+: HTTP 404 Not Found$"):
            create_public_token(service.url + "/", 3, timeout=5, sleep=sleeps)
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
            create_public_token(service.url, 3, timeout=5, sleep=Sleeps())
    assert info.value.msg.startswith(f"Failed to create discovery token at {service.url}: expected a token URL")
    assert info.value.msg.endswith("got " + shown)
    assert len(service.requests) == 1  # a garbage answer is not retried


def test_public_connection_refused():
    url = refused_url()
    sleeps = Sleeps()
    with pytest.raises(ClusterError) as info:
        create_public_token(url, 3, timeout=2, retries=2, sleep=sleeps)
    assert info.value.msg.startswith(f"Failed to create discovery token at {url}: connection failed:")
    assert "Connection refused" in info.value.msg
    assert info.value.msg.endswith("gave up after 3 attempts")
    assert len(sleeps) == 2


def test_public_slow_answer_times_out():
    with FakeDiscovery([status(200, "{base}/" + TOKEN, delay=2)]) as service:
        sleeps = Sleeps()
        started = time.monotonic()
        with pytest.raises(ClusterError) as info:
            create_public_token(service.url, 3, timeout=0.3, retries=1, sleep=sleeps)
        elapsed = time.monotonic() - started
    assert info.value.msg == f"Failed to create discovery token at {service.url}: timed out after 0.3 s; gave up after 2 attempts"
    assert len(service.requests) == 2
    assert elapsed < 1.8  # two 0.3 s timeouts, not the server's 2 s delays


def test_public_validation_happens_before_any_request():
    with FakeDiscovery([ok()]) as service:
        with pytest.raises(ValidationError, match="size must be at most 99"):
            create_public_token(service.url, 100)
    assert service.requests == []


# ---------------------------------------------------------------------------------------------------
# Reading a token back (discovery_token_info), with answers captured from Debian's discovery.etcd.io server

LISTING = ('{"action":"get","node":{"key":"/_etcd/registry/' + TOKEN + '","dir":true,"nodes":[{"key":"/_etcd/registry/'
           + TOKEN + '/8e9e05c52164694d","value":"m0=http://10.0.0.11:2380","modifiedIndex":5,"createdIndex":5}],'
           '"modifiedIndex":4,"createdIndex":4}}')
SIZE = '{"action":"get","node":{"key":"/_etcd/registry/' + TOKEN + '/_config/size","value":"3","modifiedIndex":4,"createdIndex":4}}'
NOT_FOUND = '{"errorCode":100,"message":"Key not found","cause":"/_etcd/registry/' + TOKEN + '","index":4}'
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "url, expected",
    [
        (PUBLIC_URL, ("https://discovery.etcd.io", PUBLIC_URL)),
        (PUBLIC_URL + "/", ("https://discovery.etcd.io", PUBLIC_URL)),
        (f"http://127.0.0.1:4003/{TOKEN[:32]}", ("http://127.0.0.1:4003", f"http://127.0.0.1:4003/{TOKEN[:32]}")),
        (f"https://example.com/disc/{TOKEN}", ("https://example.com/disc", f"https://example.com/disc/{TOKEN}")),
        ("https://discovery.etcd.io", None),
        ("https://discovery.etcd.io/new", None),
        (f"{PUBLIC_URL}?size=3", None),
        (None, None),
    ],
)
def test_validate_public_url(url, expected):
    if expected is None:
        with pytest.raises(ValidationError, match="^url must be a discovery URL like https://discovery.etcd.io/TOKEN"):
            public.validate_public_url(url)
    else:
        assert public.validate_public_url(url) == expected


def read(url, **transport):
    return public.PublicBackend(Transport(**transport), url=url).read()


def test_public_read_token():
    with FakeDiscovery([(200, LISTING, JSON, 0), (200, SIZE, JSON, 0)]) as service:
        registry = read(f"{service.url}/{TOKEN}", timeout=5)
    assert service.requests == [f"/{TOKEN}", f"/{TOKEN}/_config/size"]
    assert registry.exists is True and registry.size == 3
    assert registry.members == [{"id": "8e9e05c52164694d", "name": "m0", "peer_urls": ["http://10.0.0.11:2380"], "ip": "10.0.0.11"}]


def test_public_read_unknown_token():
    with FakeDiscovery([(404, NOT_FOUND, JSON, 0)]) as service:
        registry = read(f"{service.url}/{TOKEN}", timeout=5)
    assert service.requests == [f"/{TOKEN}"]  # no size asked for a token that does not exist
    assert tuple(registry) == (False, None, [])


def test_public_read_plain_404_names_the_service_without_v2_hint():
    with FakeDiscovery([status(404, "404 page not found")]) as service:
        with pytest.raises(ClusterError) as info:
            read(f"{service.url}/{TOKEN}", timeout=5)
    assert info.value.msg == f"Failed to read discovery token at {service.url}: HTTP 404 Not Found"
    assert TOKEN not in info.value.msg


def test_public_has_no_delete():
    backend = public.PublicBackend(Transport(), url=PUBLIC_URL)
    assert backend.deletable is False and backend.token == TOKEN and backend.service == "https://discovery.etcd.io"
    with pytest.raises(ValidationError, match="the public discovery service offers no way to delete one"):
        backend.delete()
