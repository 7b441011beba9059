# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Discovery tokens on a real etcd, and real etcd members bootstrapping through one.

Every assertion about a token reads etcd's own state over HTTP (tests/support/etcd.py's readers), not what our
code reports. The etcd servers are shared per module to keep the file within a few seconds.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import socket
import subprocess

import pytest

from support.etcd import EtcdServer, etcd_available, http_json, start_members

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.base import backend_for
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.http import Transport
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not etcd_available(), reason="etcd is not installed"),
]

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NO_SLEEP = {"sleep": lambda seconds: None}


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def etcd_v2(tmp_path_factory):
    """etcd 3.4 with the v2 keys API, as the sandbox runs it for discovery."""
    with EtcdServer(tmp_path_factory.mktemp("etcd-v2"), enable_v2=True) as server:
        yield server


@pytest.fixture(scope="module")
def etcd_v3(tmp_path_factory):
    """etcd without --enable-v2: only the v3 API (and its JSON gateway) is served."""
    with EtcdServer(tmp_path_factory.mktemp("etcd-v3"), enable_v2=False) as server:
        yield server


def refused_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def registry_dirs(etcd) -> list[str]:
    """The token directories under /_etcd/registry in a v2 etcd."""
    status, body = etcd.v2_get("/_etcd/registry")
    if status == 404:
        return []
    assert status == 200, body
    return sorted(node["key"] for node in body["node"].get("nodes", []))


# ---------------------------------------------------------------------------------------------------
# v2 keys API


def test_v2_create_read_delete(etcd_v2):
    url = backend_for("etcd_v2", etcd_v2.client_url, transport=Transport(timeout=5, **NO_SLEEP)).create(3)[0]
    prefix = f"{etcd_v2.client_url}/v2/keys/_etcd/registry/"
    assert url.startswith(prefix)
    token = url[len(prefix):]
    assert len(token) == 32 and int(token, 16) >= 0

    status, body = etcd_v2.v2_get(f"/_etcd/registry/{token}/_config/size")
    assert status == 200 and body["node"]["value"] == "3"
    assert backend_for("etcd_v2", url=url, transport=Transport(timeout=5)).read_size() == 3
    assert backend_for("etcd_v2", url=url, transport=Transport(timeout=5)).exists() is True

    assert backend_for("etcd_v2", url=url, transport=Transport(timeout=5, **NO_SLEEP)).delete() is True
    status, body = etcd_v2.v2_get(f"/_etcd/registry/{token}")
    assert status == 404 and body["errorCode"] == 100
    # Deleting again is no change, and reading a missing token is None / False, not an error.
    assert backend_for("etcd_v2", url=url, transport=Transport(timeout=5)).delete() is False
    assert backend_for("etcd_v2", url=url, transport=Transport(timeout=5)).read_size() is None
    assert backend_for("etcd_v2", url=url, transport=Transport(timeout=5)).exists() is False


def test_v2_tokens_are_distinct(etcd_v2):
    first = backend_for("etcd_v2", etcd_v2.client_url, transport=Transport(timeout=5)).create(1)[0]
    second = backend_for("etcd_v2", etcd_v2.client_url + "/", transport=Transport(timeout=5)).create(99)[0]
    assert first != second
    assert backend_for("etcd_v2", url=first).read_size() == 1
    assert backend_for("etcd_v2", url=second).read_size() == 99


def test_v2_delete_refuses_a_directory_that_is_not_a_token(etcd_v2):
    status, _body = http_json("PUT", f"{etcd_v2.client_url}/v2/keys/app/settings/color?value=blue")
    # http_json sends JSON; the v2 API takes the value from the query string here.
    assert status in (200, 201)
    url = f"{etcd_v2.client_url}/v2/keys/app"
    with pytest.raises(ClusterError, match=r"^Refusing to delete at http://127\.0\.0\.1:\d+: .*no _config/size"):
        backend_for("etcd_v2", url=url, transport=Transport(timeout=5)).delete()
    status, body = etcd_v2.v2_get("/app/settings/color")
    assert status == 200 and body["node"]["value"] == "blue"


def test_v2_api_disabled_gives_a_hint(etcd_v3):
    with pytest.raises(ClusterError) as info:
        backend_for("etcd_v2", etcd_v3.client_url, transport=Transport(timeout=5, **NO_SLEEP)).create(3)[0]
    assert info.value.msg.startswith(f"Failed to create discovery token at {etcd_v3.client_url}: HTTP 404")
    assert "--enable-v2" in info.value.msg


def test_v2_unreachable_names_endpoint_not_token(etcd_v2):
    url = refused_url()
    token_url = f"{url}/v2/keys/_etcd/registry/0123456789abcdef0123456789abcdef"
    with pytest.raises(ClusterError) as info:
        backend_for("etcd_v2", url=token_url, transport=Transport(timeout=2, retries=1, **NO_SLEEP)).delete()
    assert info.value.msg.startswith(f"Failed to delete discovery token at {url}: connection failed:")
    assert "0123456789abcdef" not in info.value.msg


# ---------------------------------------------------------------------------------------------------
# v3 API through the JSON gateway


def test_v3_create_read_delete(etcd_v3):
    # The first endpoint is down: the gateway request fails over to the second.
    endpoints = [refused_url(), etcd_v3.client_url]
    token = backend_for("etcd_v3", endpoints=endpoints, transport=Transport(timeout=5, retries=0)).create(5)[1]
    assert etcd_v3.v3_get(f"/_etcd/registry/{token}/_config/size") == "5"
    assert backend_for("etcd_v3", endpoints=endpoints, token=token, transport=Transport(timeout=5)).read_size() == 5

    # A member registration under the token, and a neighbour that merely shares the prefix string.
    for key in (f"/_etcd/registry/{token}/members/8e9e05c52164694d", f"/_etcd/registry/{token}x/_config/size"):
        status, _body = http_json("POST", etcd_v3.client_url + "/v3/kv/put",
                                  {"key": base64.b64encode(key.encode()).decode(), "value": "eA=="})
        assert status == 200
    assert etcd_v3.v3_count_prefix(f"/_etcd/registry/{token}/") == 2

    assert backend_for("etcd_v3", endpoints=endpoints, token=token, transport=Transport(timeout=5, retries=0)).delete() is True
    assert etcd_v3.v3_count_prefix(f"/_etcd/registry/{token}/") == 0
    assert etcd_v3.v3_get(f"/_etcd/registry/{token}x/_config/size") == "x"
    assert backend_for("etcd_v3", endpoints=endpoints, token=token, transport=Transport(timeout=5, retries=0)).delete() is False
    assert backend_for("etcd_v3", endpoints=endpoints, token=token, transport=Transport(timeout=5, retries=0)).exists() is False
    assert backend_for("etcd_v3", endpoints=endpoints, token=token, transport=Transport(timeout=5, retries=0)).read_size() is None


def test_v3_all_endpoints_down():
    endpoints = [refused_url(), refused_url()]
    with pytest.raises(ClusterError) as info:
        backend_for("etcd_v3", endpoints=endpoints, transport=Transport(timeout=2, retries=1, **NO_SLEEP)).create(3)[1]
    assert info.value.msg.startswith(f"Failed to create discovery token at {', '.join(endpoints)}: connection failed:")
    assert info.value.msg.endswith("gave up after 2 attempts")


# ---------------------------------------------------------------------------------------------------
# The module, run as Ansible runs it


def run_module(args: dict, check: bool = False, diff: bool = False) -> dict:
    """Run the module's main() in this process, as AnsiballZ would with these arguments; returns its result."""
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.coreos_ec2.cluster.plugins.modules import discovery_token

    out = io.StringIO()
    with patch_module_args(dict(args, _ansible_check_mode=check, _ansible_diff=diff)), contextlib.redirect_stdout(out):
        with pytest.raises(SystemExit):
            discovery_token.main()
    return json.loads(out.getvalue())


def run_ansible(args: dict, check: bool = False, diff: bool = False) -> tuple[str, dict]:
    """Run discovery_token through `ansible localhost -m`, as a playbook task would.

    Returns the status word (CHANGED, SUCCESS, FAILED!) and the result the minimal callback prints;
    the diff text it printed before the result is in `_diff_text`.
    """
    cmd = [
        os.path.join(REPO, ".venv", "bin", "ansible"), "localhost", "-m", "coreos_ec2.cluster.discovery_token",
        "-a", json.dumps(args),
    ]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="minimal", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"^localhost \| ([A-Z!]+) => ", proc.stdout, re.M)
    assert match, f"no result in ansible output:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(proc.stdout[match.end():])
    result["_diff_text"] = proc.stdout[:match.start()]
    result["_output"] = proc.stdout + proc.stderr
    return match.group(1), result


def test_module_lifecycle(etcd_v2):
    """Check mode, apply, reuse (check and apply), delete (check, apply, again), as the style guide asks."""
    before = registry_dirs(etcd_v2)
    base = {"protocol": "etcd_v2", "service": etcd_v2.client_url, "size": 3, "timeout": 5}

    planned = run_module(base, check=True, diff=True)
    assert planned["changed"] is True and planned["discovery_url"] == "" and planned["reused"] is False
    assert planned["diff"] == {"before": {"token_exists": False}, "after": {"token_exists": True}}
    assert registry_dirs(etcd_v2) == before  # check mode minted nothing

    minted = run_module(base)
    assert minted["changed"] is True and minted["reused"] is False and minted["size"] == 3
    assert "diff" not in minted
    url = minted["discovery_url"]
    assert minted["token"] == url.rsplit("/", 1)[1]
    assert registry_dirs(etcd_v2) == sorted(before + [f"/_etcd/registry/{minted['token']}"])

    # The cluster's instances carry the URL: the next run reuses it, in check mode and for real.
    user_data = base64.b64encode(f'[Service]\nEnvironment="ETCD_DISCOVERY={url}"\n'.encode()).decode()
    for check in (True, False):
        reused = run_module(dict(base, existing_user_data=["", user_data]), check=check)
        assert reused["changed"] is False and reused["reused"] is True and reused["discovery_url"] == url
    assert len(registry_dirs(etcd_v2)) == len(before) + 1

    absent = {"protocol": "etcd_v2", "state": "absent", "url": url, "timeout": 5}
    would = run_module(absent, check=True, diff=True)
    assert would["changed"] is True and would["diff"]["before"] == {"token_exists": True} and would["size"] == 3
    assert backend_for("etcd_v2", url=url).read_size() == 3  # still there after check mode
    assert run_module(absent)["changed"] is True
    assert registry_dirs(etcd_v2) == before
    assert run_module(absent, check=True)["changed"] is False
    assert run_module(absent)["changed"] is False


def test_module_v3_lifecycle(etcd_v3):
    base = {"protocol": "etcd_v3", "endpoints": [etcd_v3.client_url], "size": 5, "timeout": 5}
    minted = run_module(base)
    assert minted["changed"] is True and minted["discovery_url"] == "" and minted["endpoints"] == [etcd_v3.client_url]
    token = minted["token"]
    assert etcd_v3.v3_get(f"/_etcd/registry/{token}/_config/size") == "5"
    absent = {"protocol": "etcd_v3", "state": "absent", "service": etcd_v3.client_url, "token": token}
    assert run_module(absent)["changed"] is True
    assert etcd_v3.v3_count_prefix(f"/_etcd/registry/{token}/") == 0
    assert run_module(absent)["changed"] is False


@pytest.mark.parametrize(
    "args, msg",
    [
        ({"protocol": "etcd_v2", "size": 3}, "service is required with protocol=etcd_v2"),
        ({"size": 100}, "size must be at most 99"),
        ({"size": 3, "url": "http://x/v2/keys/a"}, "url and token are only used with state=absent"),
        ({"state": "absent", "url": "https://discovery.etcd.io/abc"}, "state=absent needs protocol=etcd_v2 or etcd_v3"),
        ({}, "state is present but all of the following are missing: size"),
        ({"protocol": "etcd_v3", "size": 3, "service": "http://a:1", "endpoints": ["http://b:1"]}, "parameters are mutually exclusive"),
    ],
)
def test_module_rejects(args, msg):
    result = run_module(args)
    assert result["failed"] is True and msg in result["msg"]


@pytest.mark.skipif(not os.access(os.path.join(REPO, ".venv", "bin", "ansible"), os.X_OK), reason="no .venv/bin/ansible")
def test_module_through_ansible(etcd_v2):
    """The packaged module as Ansible runs it: check mode with a diff mints nothing, and a secret url stays out."""
    before = registry_dirs(etcd_v2)
    status, planned = run_ansible({"protocol": "etcd_v2", "service": etcd_v2.client_url, "size": 3}, check=True, diff=True)
    assert status == "CHANGED" and planned["discovery_url"] == ""
    assert '-    "token_exists": false' in planned["_diff_text"] and '+    "token_exists": true' in planned["_diff_text"]
    assert registry_dirs(etcd_v2) == before

    url = backend_for("etcd_v2", etcd_v2.client_url).create(3)[0]
    status, deleted = run_ansible({"protocol": "etcd_v2", "state": "absent", "url": url, "timeout": 5})
    assert status == "CHANGED" and deleted["size"] == 3
    assert registry_dirs(etcd_v2) == before
    assert url not in deleted["_output"]  # url is no_log: not echoed in the result, the invocation or errors


# ---------------------------------------------------------------------------------------------------
# Real members bootstrapping through a minted token


def test_three_members_form_a_cluster(etcd_v2, tmp_path):
    url = backend_for("etcd_v2", etcd_v2.client_url, transport=Transport(timeout=5)).create(3)[0]
    token = url.rsplit("/", 1)[1]
    names = ["m0", "m1", "m2"]
    with start_members(url, names, tmp_path, timeout=25) as members:
        listed = members.member_list()
        assert sorted(m["name"] for m in listed) == names
        peer_urls = sorted(u for m in listed for u in m["peerURLs"])
        assert peer_urls == sorted(m.peer_url for m in members)
        # Each member registered itself under the token in the discovery etcd.
        status, body = etcd_v2.v2_get(f"/_etcd/registry/{token}")
        assert status == 200
        registered = [n for n in body["node"]["nodes"] if not n["key"].endswith("/_config")]
        assert len(registered) == 3
        assert sorted(n["value"].split("=", 1)[0] for n in registered) == names
    assert not any(m.running() for m in members)
    backend_for("etcd_v2", url=url).delete()
