"""Nothing lost, nothing orphaned: concurrent launches, rollbacks that meet a dead endpoint, interrupted launches,
orphaned tokens, existing CoreOS cloud-configs. Real ansible-playbook runs against the sandbox, through a proxy
that delays or cuts the EC2 API the way AWS and networks do."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from support.ec2_proxy import EC2Proxy, Fault
from support.sandbox import REPO, VENV_BIN, cluster_instances, run_playbook, user_data

pytestmark = pytest.mark.integration
FIXTURES = os.path.join(REPO, "tests", "fixtures")
LOCK_TAG = "coreos-ec2-cluster-lock"
PENDING_TAG = "coreos-ec2-cluster-discovery"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "sandbox-access-key", "AWS_SECRET_ACCESS_KEY": "sandbox-secret-key"}


def aws_vars(sb, proxy, name, **extra):
    """target=aws against the proxy: the code path a real account takes, with a self-hosted token we can count."""
    v = sb.vars(cluster_name=name, cluster_size=2, instance_type="c4.large", key_name="coreos-sandbox", target="aws",
                aws_endpoint_url=proxy.url, discovery_protocol="etcd_v2", discovery_service=sb.etcd_url)
    v.update(extra)
    return v


def tokens(sb) -> set[str]:
    node = sb.etcd_get("/_etcd/registry") or {}
    return {n["key"].rsplit("/", 1)[1] for n in node.get("node", {}).get("nodes", [])}


def group_of(ec2, name) -> dict:
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"coreos-ec2-{name}"]}])["SecurityGroups"]
    return groups[0] if groups else {}


def tags_of(group) -> dict:
    return {t["Key"]: t["Value"] for t in group.get("Tags", [])}


def start_playbook(playbook, extra_vars, tmp_path, env):
    """ansible-playbook in the background (its own process group, so that it can be interrupted like Ctrl-C)."""
    import json

    vars_file = tmp_path / f"vars-{time.monotonic_ns()}.json"
    vars_file.write_text(json.dumps(extra_vars))
    full_env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                    PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""), **env)
    return subprocess.Popen([os.path.join(VENV_BIN, "ansible-playbook"), os.path.join("playbooks", playbook),
                             "-e", f"@{vars_file}"], cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_concurrent_launches_make_exactly_n_machines(sandbox, tmp_path):
    ec2 = sandbox.client()
    name = "race"
    with EC2Proxy(sandbox.ec2_url) as proxy:
        proxy.delay("RunInstances", 20)  # AWS can take seconds; the second run starts and looks meanwhile
        first = start_playbook("launch.yml", aws_vars(sandbox, proxy, name), tmp_path, AWS_ENV)
        wait_until(lambda: proxy.counts().get("RunInstances", 0) > 0 or first.poll() is not None, 120, "RunInstances")
        second = run_playbook("launch.yml", aws_vars(sandbox, proxy, name), env=AWS_ENV)
        out = first.communicate(timeout=600)[0]
        again = run_playbook("launch.yml", aws_vars(sandbox, proxy, name), env=AWS_ENV)
    assert first.returncode == 0, out[-4000:]
    assert second.rc != 0
    assert re.search(r"cluster race is being launched or scaled by another run: run [0-9a-f]{16} by \S+@\S+:\d+",
                     second.out), second.out[-4000:]
    assert "Nothing had been created." in second.out, second.out[-3000:]
    assert proxy.counts()["RunInstances"] == 1
    machines = cluster_instances(ec2, name)
    assert len(machines) == 2 and {m["State"]["Name"] for m in machines} == {"running"}
    # The lock went with the first run; a later run takes it at once.
    assert LOCK_TAG not in tags_of(group_of(ec2, name)) and PENDING_TAG not in tags_of(group_of(ec2, name))
    assert again.rc == 0 and again.recap["changed"] == 0, again.out[-3000:]


def test_a_run_that_waits_for_the_lock_finds_the_cluster_made(sandbox, tmp_path):
    ec2 = sandbox.client()
    name = "patient"
    before = tokens(sandbox)
    with EC2Proxy(sandbox.ec2_url) as proxy:
        proxy.delay("RunInstances", 20)
        first = start_playbook("launch.yml", aws_vars(sandbox, proxy, name), tmp_path, AWS_ENV)
        wait_until(lambda: proxy.counts().get("RunInstances", 0) > 0 or first.poll() is not None, 120, "RunInstances")
        second = run_playbook("launch.yml", aws_vars(sandbox, proxy, name, lock_timeout=300), env=AWS_ENV)
        out = first.communicate(timeout=600)[0]
    assert first.returncode == 0, out[-4000:]
    assert second.rc == 0, second.out[-4000:]
    assert proxy.counts()["RunInstances"] == 1 and len(cluster_instances(ec2, name)) == 2
    # One token for the one cluster: the waiting run minted none.
    assert len(tokens(sandbox) - before) == 1


def test_rollback_against_a_dead_endpoint_lists_what_is_left_and_a_rerun_converges(sandbox):
    ec2 = sandbox.client()
    name = "cut"
    with EC2Proxy(sandbox.ec2_url) as proxy:
        proxy.die_after("RunInstances")  # the endpoint goes away right after the machines were asked for
        run = run_playbook("launch.yml", aws_vars(sandbox, proxy, name), env=dict(AWS_ENV, AWS_MAX_ATTEMPTS="2"))
        assert run.rc != 0
        message = run.out[run.out.index(f"Launch of cluster {name} failed at"):]
        assert "Nothing was rolled back." in message, message[:3000]
        assert "Left: any machine this run started (the cluster could not be listed:" in message, message[:3000]
        assert re.search(r"security group sg-\w+ \(", message), message[:3000]
        # The machines may be alive with the token: it must stay.
        assert "the new discovery token (not deleted" in message or "the new discovery token" in message
        assert "the cluster's lock (not released" in message
        assert f"-e cluster_name={name} -e ops_action=cleanup" in message
        assert len(cluster_instances(ec2, name)) == 2

        proxy.revive()
        again = run_playbook("launch.yml", aws_vars(sandbox, proxy, name), env=AWS_ENV)
    assert again.rc == 0, again.out[-4000:]
    assert len(cluster_instances(ec2, name)) == 2
    # The dead run's lock (a process of this host that is gone) did not stand in the way, and is gone now.
    assert LOCK_TAG not in tags_of(group_of(ec2, name)) and PENDING_TAG not in tags_of(group_of(ec2, name))


def test_an_interrupted_launch_is_resumed_with_its_own_token(sandbox, tmp_path):
    ec2 = sandbox.client()
    name = "ctrl-c"
    before = tokens(sandbox)
    with EC2Proxy(sandbox.ec2_url) as proxy:
        # RunInstances hangs, the user presses Ctrl-C; the hung call then fails, so no machine exists.
        proxy.delay("RunInstances", 15)
        proxy.add_fault(Fault("RunInstances", "InternalError", status=500, times=1))
        run = start_playbook("launch.yml", aws_vars(sandbox, proxy, name), tmp_path, AWS_ENV)
        wait_until(lambda: proxy.counts().get("RunInstances", 0) > 0 or run.poll() is not None, 120, "RunInstances")
        os.killpg(run.pid, signal.SIGINT)
        run.communicate(timeout=120)
        pending = tags_of(group_of(ec2, name)).get(PENDING_TAG)
        assert pending and pending.rsplit("/", 1)[1] in tokens(sandbox) - before
        time.sleep(16)  # the hung call ends (with the injected error)
        proxy.delay("RunInstances", 0)
        again = run_playbook("launch.yml", aws_vars(sandbox, proxy, name), env=AWS_ENV)
    assert again.rc == 0, again.out[-4000:]
    machines = cluster_instances(ec2, name)
    assert len(machines) == 2
    assert pending in user_data(ec2, machines[0]["InstanceId"])
    assert len(tokens(sandbox) - before) == 1, "the re-run minted no second token"
    assert PENDING_TAG not in tags_of(group_of(ec2, name))


def test_a_failed_launch_deletes_its_self_hosted_token(sandbox):
    before = tokens(sandbox)
    with EC2Proxy(sandbox.ec2_url) as proxy:
        proxy.add_fault(Fault("RunInstances", "UnauthorizedOperation", status=403, times=1000))
        run = run_playbook("launch.yml", aws_vars(sandbox, proxy, "no-capacity"), env=AWS_ENV)
    assert run.rc != 0
    # ec2_instance's own failure is hidden (no_log: its arguments carry the user data); its message is repeated.
    assert re.search(r"failed at Start the machines: subnet-\w+: Failed to run instances: An error occurred "
                     r"\(UnauthorizedOperation\) when calling the RunInstances operation", run.out), run.out[-3000:]
    assert "Rolled back: security group sg-" in run.out and "the new discovery token." in run.out, run.out[-3000:]
    assert ".. " not in run.out
    assert tokens(sandbox) == before


def test_cleanup_on_the_sandbox_removes_orphaned_tokens_only(sandbox):
    ec2 = sandbox.client()
    live = run_playbook("launch.yml", sandbox.vars(cluster_name="keeps-token", cluster_size=1, instance_type="c4.large",
                                                   discovery_protocol="etcd_v2"))
    assert live.rc == 0, live.out[-3000:]
    live_token = re.search(r"/_etcd/registry/(\w+)", user_data(ec2, cluster_instances(ec2, "keeps-token")[0]["InstanceId"])).group(1)
    for orphan in ("0rphan0000000000000000000000000a", "0rphan0000000000000000000000000b"):
        request = urllib.request.Request(f"{sandbox.etcd_url}/v2/keys/_etcd/registry/{orphan}/_config/size", data=b"value=3",
                                         method="PUT", headers={"Content-Type": "application/x-www-form-urlencoded"})
        urllib.request.urlopen(request, timeout=5).close()
    run = run_playbook("ops.yml", sandbox.vars(cluster_name="never-was", ops_action="cleanup", confirm="yes"))
    assert run.rc == 0, run.out[-3000:]
    count = int(re.search(r"deleted (\d+) orphaned discovery tokens? of clusters that no longer exist", run.out).group(1))
    assert count >= 2
    left = tokens(sandbox)
    assert live_token in left and not {"0rphan0000000000000000000000000a", "0rphan0000000000000000000000000b"} & left
    again = run_playbook("ops.yml", sandbox.vars(cluster_name="never-was", ops_action="cleanup", confirm="yes"))
    assert again.rc == 0 and again.recap["changed"] == 0 and "orphaned" not in again.out, again.out[-3000:]


def test_a_coreos_seed_config_is_translated_for_flatcar(sandbox):
    ec2 = sandbox.client()
    run = run_playbook("launch.yml", sandbox.vars(
        cluster_name="seed", cluster_size=1, instance_type="c4.large", ssh_allowed_cidrs=["0.0.0.0/0"],
        cloud_config=os.path.join(FIXTURES, "coreos-seed-noformat.cloud-config")))
    assert run.rc == 0, run.out[-4000:]
    assert "coreos.etcd2" in run.out and "ssh_allowed_cidrs entry 0.0.0.0/0 opens SSH to the whole internet" in run.out
    data = user_data(ec2, cluster_instances(ec2, "seed")[0]["InstanceId"])
    assert "<token>" not in data and "etcd2.service" not in data and "\n  etcd2:" not in data
    urls = set(re.findall(r"https?://[^\s\"']+/(?:v2/keys/_etcd/registry/)?[0-9a-f]{32}", data))
    assert len(urls) == 1, urls
    # The root volume is encrypted too, not only the data volume.
    volumes = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id",
                                             "Values": [cluster_instances(ec2, "seed")[0]["InstanceId"]]}])["Volumes"]
    assert len(volumes) == 2 and all(v["Encrypted"] for v in volumes), volumes
    other = run_playbook("launch.yml", sandbox.vars(
        cluster_name="seed", cluster_size=1, instance_type="m5.large", ssh_allowed_cidrs=["0.0.0.0/0"],
        cloud_config=os.path.join(FIXTURES, "coreos-seed-noformat.cloud-config")))
    assert other.rc == 0 and "machines are of type c4.large, not m5.large" in other.out, other.out[-3000:]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
