"""Bad input fails clearly before anything is created; a failure half way rolls back what the run created."""

from __future__ import annotations

import http.server
import os
import re
import threading

import pytest

from support.ec2_proxy import EC2Proxy, Fault
from support.sandbox import cluster_instances, discovery_url_of, free_port, run_playbook, user_data, world

pytestmark = pytest.mark.integration
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")


def base_vars(sb, name, **extra):
    v = sb.vars(cluster_name=name, cluster_size=2, instance_type="c4.large", key_name="coreos-sandbox",
                cloud_config="./config/cloud-config.example")
    v.update(extra)
    return v


def registry_tokens(sb) -> int:
    node = sb.etcd_get("/_etcd/registry")
    return len((node or {}).get("node", {}).get("nodes", []))


@pytest.fixture
def garbage_service():
    """A 'discovery service' that answers 200 with something that is not a token URL."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html>maintenance</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _big_cloud_config(tmp_path):
    path = tmp_path / "big.yml"
    blob = "x" * 20000
    path.write_text(f"#cloud-config\nwrite_files:\n  - path: /etc/big\n    content: {blob}\n")
    return str(path)


def _broken_cloud_config(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("#cloud-config\ncoreos:\n  units:\n    - name: a.service\n     command: start\n")
    return str(path)


CASES = [
    ("size-zero", {"cluster_size": 0}, "cluster_size 0 is out of range"),
    ("size-negative", {"cluster_size": -2}, "cluster_size -2 is out of range"),
    ("size-not-int", {"cluster_size": "three"}, "cluster_size 'three' is not an integer"),
    ("size-huge", {"cluster_size": 1000}, "cluster_size 1000 is out of range: allowed is 1 to 200"),
    ("name-empty", {"cluster_name": ""}, "cluster_name is empty"),
    ("name-bad", {"cluster_name": "p 1!"}, "cluster_name 'p 1!' is not usable"),
    ("region", {"region": "mars-east-1"}, "region 'mars-east-1' is not a known EC2 region"),
    ("key-missing", {"key_name": "no-such-key"}, "key pair no-such-key does not exist"),
    ("image-missing", {"image_id": "ami-00000000000000dead"}, "image_id ami-00000000000000dead does not exist in us-east-1"),
    ("cloud-config-missing", {"cloud_config": "./config/no-such-file.yml"}, "no-such-file.yml"),
    ("cloud-config-broken", {"cloud_config": _broken_cloud_config}, "broken.yml"),
    ("user-data-too-big", {"cloud_config": _big_cloud_config}, "16384"),
    ("discovery-unreachable", {"discovery_service": "closed-port"}, "127.0.0.1"),
    ("discovery-garbage", {"discovery_protocol": "public", "discovery_service": "garbage"}, "expected a token URL"),
    # Everything checkable is checked before the lock, the token or the security group exist.
    ("type-not-offered", {"instance_type": "x9.huge"}, "instance_type x9.huge is not offered in us-east-1"),
    ("services-missing-src", {"services": [{"name": "web.service", "src": "/nonexistent/web.service"}]},
     "services[0] (web.service): cannot read src /nonexistent/web.service"),
    ("services-bad-count", {"services": [{"name": "web.service", "content": "[Service]\nExecStart=/bin/true\n",
                                          "count": 3}]},
     "services[0] (web.service): count and instances apply to template units"),
    ("typo", {"cluster_sise": 1}, "unknown variable cluster_sise: did you mean cluster_size?"),
    ("seed-cloud-config-wipes-volume", {"cloud_config": os.path.join(FIXTURES, "coreos-seed.cloud-config")},
     "format-xvdb.service"),
]


@pytest.mark.parametrize("case,overrides,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_clearly_and_creates_nothing(sandbox, tmp_path, garbage_service, case, overrides, message):
    ec2 = sandbox.client()
    before, tokens_before = world(ec2), registry_tokens(sandbox)
    overrides = {k: (v(tmp_path) if callable(v) else v) for k, v in overrides.items()}
    if overrides.get("discovery_service") == "closed-port":
        overrides["discovery_service"] = f"http://127.0.0.1:{free_port()}"
    elif overrides.get("discovery_service") == "garbage":
        overrides["discovery_service"] = garbage_service
    run = run_playbook("launch.yml", base_vars(sandbox, f"bad-{case}", **overrides))
    assert run.rc != 0, run.out[-3000:]
    assert message in run.out, run.out[-3000:]
    assert world(ec2) == before
    assert registry_tokens(sandbox) == tokens_before
    if case == "cloud-config-broken":
        assert "line 5" in run.out, run.out[-3000:]


def _aws_through_proxy(sandbox, proxy, name, **extra):
    """target=aws against a custom endpoint: the same code path a real account takes."""
    v = base_vars(sandbox, name, target="aws", aws_endpoint_url=proxy.url, discovery_protocol="etcd_v2",
                  discovery_service=sandbox.etcd_url, **extra)
    env = {"AWS_ACCESS_KEY_ID": "sandbox-access-key", "AWS_SECRET_ACCESS_KEY": "sandbox-secret-key"}
    return v, env


@pytest.mark.parametrize("keep", [False, True])
def test_failure_after_machines_started_rolls_back(sandbox, keep):
    ec2 = sandbox.client()
    name = f"fail-{'keep' if keep else 'undo'}"
    tokens_before = registry_tokens(sandbox)
    with EC2Proxy(sandbox.ec2_url) as proxy:
        # The machines exist, then a permission turns out to be missing: a step failing half way.
        proxy.add_fault(Fault("DescribeInstanceStatus", "UnauthorizedOperation", status=403, times=1000, after="RunInstances"))
        v, env = _aws_through_proxy(sandbox, proxy, name, keep_on_failure=keep)
        run = run_playbook("launch.yml", v, env=env)
        assert proxy.counts().get("RunInstances") == 1
    assert run.rc != 0, run.out[-4000:]
    assert f"Launch of cluster {name} failed at Start the machines" in run.out, run.out[-4000:]
    # Why, from ec2_instance (whose own output no_log hides: it carries the user data), without the user data.
    failed_at = run.out.split("failed at Start the machines", 1)[1].split("\n", 1)[0]
    assert "Failed to fetch status of new EC2 instance" in failed_at and "One or more items" not in failed_at, failed_at
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"coreos-ec2-{name}"]}])
    if keep:
        assert "Kept for inspection" in run.out
        assert len(cluster_instances(ec2, name)) == 2
        url = discovery_url_of(user_data(ec2, cluster_instances(ec2, name)[0]["InstanceId"]))
        assert url not in run.out
        assert len(groups["SecurityGroups"]) == 1
        assert registry_tokens(sandbox) == tokens_before + 1
        ec2.terminate_instances(InstanceIds=[i["InstanceId"] for i in cluster_instances(ec2, name)])
    else:
        ids = re.search(r"Rolled back: 2 machines \((i-\w+), (i-\w+)\)", run.out)
        assert ids, run.out[-4000:]
        assert "security group sg-" in run.out and "the new discovery token" in run.out
        assert ".." not in run.out.split("failed at", 1)[1].split("\n", 1)[0]
        assert cluster_instances(ec2, name) == []
        assert groups["SecurityGroups"] == []
        assert registry_tokens(sandbox) == tokens_before


def test_throttling_is_retried(sandbox):
    ec2 = sandbox.client()
    with EC2Proxy(sandbox.ec2_url) as proxy:
        proxy.add_fault(Fault("DescribeInstances", "RequestLimitExceeded", status=503, times=3))
        v, env = _aws_through_proxy(sandbox, proxy, "throttled", cluster_size=1)
        run = run_playbook("launch.yml", v, env=env)
    assert run.rc == 0, run.out[-4000:]
    first = next(line for line in run.out.splitlines() if line.strip())
    assert "on target aws" in first, first
    assert proxy.counts()["DescribeInstances"] > 3, "the throttled calls were retried"
    assert len(cluster_instances(ec2, "throttled")) == 1
