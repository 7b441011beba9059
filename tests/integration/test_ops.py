"""Cluster operations end to end: real ansible-playbook runs, checked against the emulator with boto3."""

from __future__ import annotations

import re

import pytest

from support.ec2_proxy import EC2Proxy, Fault
from support.sandbox import TAG, cluster_instances, discovery_url_of, run_playbook, user_data

pytestmark = pytest.mark.integration


def ops(sb, name, action, *args, **extra):
    return run_playbook("ops.yml", sb.vars(cluster_name=name, ops_action=action, **extra), *args)


def states(ec2, name):
    return sorted(m["State"]["Name"] for m in cluster_instances(ec2, name))


@pytest.fixture(scope="module")
def clusters(sandbox):
    """Two clusters side by side, and an untagged machine inside cluster ops-a's security group."""
    for name, size in (("ops-a", 3), ("ops-b", 2)):
        # A self-hosted token (etcd v2), which cleanup can delete: the public protocol's tokens stay.
        run = run_playbook("launch.yml", sandbox.vars(cluster_name=name, cluster_size=size, instance_type="c4.large",
                                                      discovery_protocol="etcd_v2"))
        assert run.rc == 0, run.out[-4000:]
    ec2 = sandbox.client()
    group = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["coreos-ec2-ops-a"]}])
    stranger = ec2.run_instances(ImageId=cluster_instances(ec2, "ops-a")[0]["ImageId"], MinCount=1, MaxCount=1,
                                 InstanceType="t3.micro", SecurityGroupIds=[group["SecurityGroups"][0]["GroupId"]])
    return {"stranger": stranger["Instances"][0]["InstanceId"]}


def stranger_state(ec2, clusters):
    return ec2.describe_instances(InstanceIds=[clusters["stranger"]])["Reservations"][0]["Instances"][0]["State"]["Name"]


def test_status_and_dns(sandbox, clusters):
    ec2 = sandbox.client()
    run = ops(sandbox, "ops-a", "status")
    assert run.rc == 0, run.out[-4000:]
    assert '"running": 3' in run.out and run.out.count('"running"') >= 3
    run = ops(sandbox, "ops-a", "dns")
    assert run.rc == 0, run.out[-4000:]
    for m in cluster_instances(ec2, "ops-a"):
        assert f'{m["PublicDnsName"]}  {m["PrivateIpAddress"]}' in run.out
    assert run.recap["changed"] == 0


def test_unknown_cluster_and_action_are_explained(sandbox, clusters):
    run = ops(sandbox, "nope", "status")
    assert run.rc != 0 and "No machine carries the tag coreos-ec2-cluster=nope in us-east-1" in run.out
    for action in ("stop", "terminate"):
        run = ops(sandbox, "nope", action, confirm="yes")
        assert run.rc != 0 and "No machine carries the tag coreos-ec2-cluster=nope in us-east-1" in run.out, run.out[-3000:]
    run = ops(sandbox, "ops-a", "status", ops_actoin="dns")
    assert run.rc != 0 and "unknown variable ops_actoin: did you mean ops_action?" in run.out, run.out[-3000:]
    run = ops(sandbox, "ops-a", "explode")
    assert run.rc != 0
    assert "status, dns, inspect, start, stop, terminate, cleanup, scale" in run.out, run.out[-3000:]


def test_inspect_shows_machines_volumes_rules_and_masked_discovery(sandbox, clusters):
    ec2 = sandbox.client()
    run = ops(sandbox, "ops-a", "inspect")
    assert run.rc == 0, run.out[-4000:]
    machines = cluster_instances(ec2, "ops-a")
    for m in machines:
        volume = [b for b in m["BlockDeviceMappings"] if b["DeviceName"] == "/dev/sdb"][0]["Ebs"]["VolumeId"]
        assert m["InstanceId"] in run.out and volume in run.out
    assert "100 GiB" in run.out
    assert "tcp 2379-2380 from sg-" in run.out and "(this group)" in run.out
    url = discovery_url_of(user_data(ec2, machines[0]["InstanceId"]))
    assert "Discovery: " + url.rsplit("/", 1)[0] in run.out and "(masked)" in run.out
    assert url not in run.out
    # SSH probes are on by default. This sandbox is API only: no node holds the machines' addresses, so nothing is
    # connected to, each machine says why, and the action succeeds.
    for m in machines:
        assert re.search(rf'"  {m["InstanceId"]}\s+unreachable: no node behind it on the sandbox \(the sandbox runs '
                         r'API only: nodes are turned off', run.out), run.out[-4000:]
    assert "Fleet: not read (no machine answered over SSH)" in run.out
    quiet = ops(sandbox, "ops-a", "inspect", ops_probe_ssh=False)
    assert quiet.rc == 0 and "not probed" in quiet.out and "SSH probes are off" in quiet.out, quiet.out[-4000:]


def test_stop_start_round_trip_touches_only_this_cluster(sandbox, clusters):
    ec2 = sandbox.client()
    volumes_before = {m["InstanceId"]: m["BlockDeviceMappings"] for m in cluster_instances(ec2, "ops-a")}
    run = ops(sandbox, "ops-a", "stop")
    assert run.rc == 0 and run.recap["changed"] >= 1, run.out[-4000:]
    assert states(ec2, "ops-a") == ["stopped"] * 3
    assert states(ec2, "ops-b") == ["running"] * 2
    assert stranger_state(ec2, clusters) == "running"
    # Stopped machines keep their data volumes attached.
    assert {m["InstanceId"]: m["BlockDeviceMappings"] for m in cluster_instances(ec2, "ops-a")} == volumes_before
    again = ops(sandbox, "ops-a", "stop")
    assert again.rc == 0 and again.recap["changed"] == 0 and "nothing to do" in again.out
    check = ops(sandbox, "ops-a", "start", "--check")
    assert check.rc == 0 and check.recap["changed"] >= 1
    assert states(ec2, "ops-a") == ["stopped"] * 3
    run = ops(sandbox, "ops-a", "start")
    assert run.rc == 0 and states(ec2, "ops-a") == ["running"] * 3
    assert ops(sandbox, "ops-a", "start").recap["changed"] == 0


def test_scale_grows_with_the_same_settings_and_shrinks_only_proxies(sandbox, clusters):
    ec2 = sandbox.client()
    original = sorted(cluster_instances(ec2, "ops-a"), key=lambda m: m["LaunchTime"])
    text = user_data(ec2, original[0]["InstanceId"])
    run = ops(sandbox, "ops-a", "scale", cluster_size=5)
    assert run.rc == 0, run.out[-4000:]
    grown = cluster_instances(ec2, "ops-a")
    assert len(grown) == 5
    new = [m for m in grown if m["InstanceId"] not in {o["InstanceId"] for o in original}]
    for m in new:
        assert user_data(ec2, m["InstanceId"]) == text  # same cloud-config, same discovery URL
        assert (m["ImageId"], m["InstanceType"], m["KeyName"]) == (
            original[0]["ImageId"], original[0]["InstanceType"], original[0]["KeyName"])
        assert [g["GroupId"] for g in m["SecurityGroups"]] == [g["GroupId"] for g in original[0]["SecurityGroups"]]
        assert {t["Key"]: t["Value"] for t in m["Tags"]}[TAG] == "ops-a"
        assert any(b["DeviceName"] == "/dev/sdb" for b in m["BlockDeviceMappings"])
    assert ops(sandbox, "ops-a", "scale", cluster_size=5).recap["changed"] == 0
    refused = ops(sandbox, "ops-a", "scale", cluster_size=2)
    assert refused.rc != 0 and "Refusing to scale cluster down to 2" in refused.out
    assert len(cluster_instances(ec2, "ops-a")) == 5
    run = ops(sandbox, "ops-a", "scale", cluster_size=3)
    assert run.rc == 0, run.out[-4000:]
    # The two machines added last (proxies, not etcd members) are the ones removed.
    assert sorted(m["InstanceId"] for m in cluster_instances(ec2, "ops-a")) == sorted(o["InstanceId"] for o in original)
    assert ops(sandbox, "ops-a", "scale", cluster_size=3).recap["changed"] == 0


@pytest.mark.parametrize("answer", [None, "no", "YES please"])
def test_cleanup_without_yes_changes_nothing(sandbox, clusters, answer):
    ec2 = sandbox.client()
    extra = {} if answer is None else {"confirm": answer}
    run = ops(sandbox, "ops-b", "cleanup", **extra)
    assert run.rc != 0 and "aborted" in run.out and "nothing was changed" in run.out, run.out[-3000:]
    assert "You are about to terminate and remove the whole cluster ops-b" in run.out
    assert states(ec2, "ops-b") == ["running"] * 2


def test_terminate_then_cleanup_removes_only_this_cluster(sandbox, clusters):
    ec2 = sandbox.client()
    url = discovery_url_of(user_data(ec2, cluster_instances(ec2, "ops-b")[0]["InstanceId"]))
    key = url.split("/v2/keys", 1)[1]
    # terminate deletes the data volumes: it asks like cleanup, and anything but yes aborts.
    refused = ops(sandbox, "ops-b", "terminate")
    assert refused.rc != 0 and "terminate aborted and nothing was changed" in refused.out, refused.out[-3000:]
    assert "Terminating 2 machines of cluster ops-b, with their data volumes" in refused.out, refused.out[-3000:]
    assert states(ec2, "ops-b") == ["running"] * 2
    run = ops(sandbox, "ops-b", "terminate", confirm="yes")
    assert run.rc == 0 and "Terminating 2 machines of cluster ops-b, with their data volumes" in run.out, run.out[-4000:]
    assert cluster_instances(ec2, "ops-b") == []
    again = ops(sandbox, "ops-b", "terminate", confirm="yes")
    assert again.rc == 0 and again.recap["changed"] == 0
    check = ops(sandbox, "ops-b", "cleanup", "--check")
    assert check.rc == 0
    assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["coreos-ec2-ops-b"]}])["SecurityGroups"]
    run = ops(sandbox, "ops-b", "cleanup", confirm="yes")
    assert run.rc == 0, run.out[-4000:]
    assert "security group sg-" in run.out and "the self-hosted discovery token" in run.out
    assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["coreos-ec2-ops-b"]}])["SecurityGroups"] == []
    assert sandbox.etcd_get(key) is None
    # The other cluster and the untagged machine in its group are untouched.
    assert states(ec2, "ops-a") == ["running"] * 3 and stranger_state(ec2, clusters) == "running"
    assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["coreos-ec2-ops-a"]}])["SecurityGroups"]
    final = ops(sandbox, "ops-b", "cleanup", confirm="yes")
    assert final.rc == 0 and final.recap["changed"] == 0 and "Nothing to clean up" in final.out


def test_cleanup_keeps_a_group_that_a_machine_outside_the_cluster_uses(sandbox, clusters):
    ec2 = sandbox.client()
    run = ops(sandbox, "ops-a", "cleanup", confirm="yes")
    assert run.rc == 0, run.out[-4000:]
    assert "It keeps security group sg-" in run.out and clusters["stranger"] in run.out
    assert "still used by " + clusters["stranger"] in run.out and "run cleanup again" in run.out
    assert cluster_instances(ec2, "ops-a") == []
    assert stranger_state(ec2, clusters) == "running"
    assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["coreos-ec2-ops-a"]}])["SecurityGroups"]
    # Once the stranger is gone, cleanup finishes the job.
    ec2.terminate_instances(InstanceIds=[clusters["stranger"]])
    run = ops(sandbox, "ops-a", "cleanup", confirm="yes")
    assert run.rc == 0 and run.recap["changed"] >= 1, run.out[-4000:]
    assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["coreos-ec2-ops-a"]}])["SecurityGroups"] == []


def test_state_changes_batch_all_machines_into_one_call_and_ride_out_aws_answers(sandbox):
    """On AWS: throttling, and new ids unknown for a while after a change. Through the proxy, target=aws."""
    ec2 = sandbox.client()
    run = run_playbook("launch.yml", sandbox.vars(cluster_name="ops-c", cluster_size=4, instance_type="c4.large"))
    assert run.rc == 0, run.out[-4000:]
    env = {"AWS_ACCESS_KEY_ID": "sandbox-access-key", "AWS_SECRET_ACCESS_KEY": "sandbox-secret-key"}
    with EC2Proxy(sandbox.ec2_url) as proxy:
        def on_aws(action, **extra):
            return run_playbook("ops.yml", sandbox.vars(cluster_name="ops-c", ops_action=action, target="aws",
                                                        aws_endpoint_url=proxy.url, **extra), env=env)
        proxy.add_fault(Fault("StopInstances", "RequestLimitExceeded", status=503, times=2))
        proxy.add_fault(Fault("DescribeInstances", "InvalidInstanceID.NotFound", times=1, after="StopInstances"))
        run = on_aws("stop")
        assert run.rc == 0, run.out[-4000:]
        assert proxy.counts()["StopInstances"] == 3, "two throttled answers, then one call for all four machines"
        assert states(ec2, "ops-c") == ["stopped"] * 4
        proxy.reset_counts()
        run = on_aws("cleanup", confirm="yes")
        assert run.rc == 0, run.out[-4000:]
        assert proxy.counts()["TerminateInstances"] == 1
        assert cluster_instances(ec2, "ops-c") == []


def test_ops_action_is_the_name_and_action_still_works(sandbox):
    launched = run_playbook("launch.yml", sandbox.vars(cluster_name="ops-n", cluster_size=1, instance_type="c4.large"))
    assert launched.rc == 0, launched.out[-3000:]
    new = run_playbook("ops.yml", sandbox.vars(cluster_name="ops-n", ops_action="status"))
    assert new.rc == 0 and "reserved name" not in new.out, new.out[-3000:]
    old = run_playbook("ops.yml", sandbox.vars(cluster_name="ops-n", action="status"))
    assert old.rc == 0 and "Found variable using reserved name 'action'" in old.out, old.out[-3000:]
    assert new.out.count("running") == old.out.count("running")
    missing = run_playbook("ops.yml", sandbox.vars(cluster_name="ops-n"))
    assert missing.rc != 0 and "ops_action is required: allowed are status, dns, inspect" in missing.out, missing.out[-3000:]
