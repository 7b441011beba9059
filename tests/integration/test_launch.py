"""The launch path end to end: real ansible-playbook runs against the sandbox, checked with boto3 and etcd."""

from __future__ import annotations

import json
import re

import pytest

from support.etcd import start_members
from support.sandbox import TAG, cluster_instances, discovery_url_of, registry_key, run_playbook, user_data

pytestmark = pytest.mark.integration


def launch_vars(sb, name, **extra):
    v = sb.vars(cluster_name=name, cluster_size=3, instance_type="c4.large", key_name="coreos-sandbox",
                cloud_config="./config/cloud-config.example", ssh_allowed_cidrs=["203.0.113.0/24"])
    v.update(extra)
    return v


@pytest.fixture(scope="module")
def launched(sandbox):
    """One 3-machine cluster launched once; several tests look at it."""
    run = run_playbook("launch.yml", launch_vars(sandbox, "it-main"))
    assert run.rc == 0, run.out[-6000:]
    return run


def test_first_line_names_the_target(launched):
    first = next(line for line in launched.out.splitlines() if line.strip())
    assert "on target sandbox" in first, first


def test_machines_are_tagged_running_and_configured(sandbox, launched):
    ec2 = sandbox.client()
    machines = cluster_instances(ec2, "it-main")
    assert len(machines) == 3
    assert {m["State"]["Name"] for m in machines} == {"running"}
    assert {m["InstanceType"] for m in machines} == {"c4.large"}
    assert {m["KeyName"] for m in machines} == {"coreos-sandbox"}
    assert {m["MetadataOptions"]["HttpTokens"] for m in machines} == {"required"}
    # The newest stable amd64 Flatcar image of the sandbox catalogue, found by owner and name as on AWS.
    image = ec2.describe_images(ImageIds=[machines[0]["ImageId"]])["Images"][0]
    assert image["Name"] == "Flatcar-stable-4230.2.4-hvm" and image["OwnerId"] == "075585003325"
    for m in machines:
        tags = {t["Key"]: t["Value"] for t in m["Tags"]}
        assert tags[TAG] == "it-main" and tags["Name"] == "it-main"
    assert "ec2-" in launched.out  # the summary prints public DNS names


def test_each_machine_has_its_encrypted_data_volume(sandbox, launched):
    ec2 = sandbox.client()
    machines = cluster_instances(ec2, "it-main")
    for m in machines:
        sdb = [b for b in m["BlockDeviceMappings"] if b["DeviceName"] == "/dev/sdb"]
        assert len(sdb) == 1 and sdb[0]["Ebs"]["DeleteOnTermination"] is True
        vol = ec2.describe_volumes(VolumeIds=[sdb[0]["Ebs"]["VolumeId"]])["Volumes"][0]
        assert (vol["Size"], vol["VolumeType"], vol["Encrypted"]) == (100, "gp2", True)


def test_security_group_admits_ssh_only_from_the_given_cidr(sandbox, launched):
    ec2 = sandbox.client()
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["coreos-ec2-it-main"]}])
    (group,) = groups["SecurityGroups"]
    assert {t["Key"]: t["Value"] for t in group["Tags"]}[TAG] == "it-main"
    rules = {(p["IpProtocol"], p.get("FromPort"), p.get("ToPort")): p for p in group["IpPermissions"]}
    ssh = rules[("tcp", 22, 22)]
    assert [r["CidrIp"] for r in ssh["IpRanges"]] == ["203.0.113.0/24"] and not ssh["UserIdGroupPairs"]
    for key in [("tcp", 2379, 2380), ("udp", 8285, 8285), ("udp", 8472, 8472)]:
        rule = rules[key]
        assert not rule["IpRanges"], f"{key} must not be open to any CIDR"
        assert [g["GroupId"] for g in rule["UserIdGroupPairs"]] == [group["GroupId"]]
    members = {g["GroupId"] for m in cluster_instances(ec2, "it-main") for g in m["SecurityGroups"]}
    assert members == {group["GroupId"]}


def test_user_data_carries_a_fresh_token_of_the_cluster_size(sandbox, launched):
    ec2 = sandbox.client()
    texts = {user_data(ec2, m["InstanceId"]) for m in cluster_instances(ec2, "it-main")}
    assert len(texts) == 1, "every machine gets the same cloud-config"
    text = texts.pop()
    assert text.startswith("#cloud-config")
    assert "/media/ebs" in text and "10.1.0.0/16" in text
    url = discovery_url_of(text)
    # The public protocol, served on the sandbox by Debian's discovery.etcd.io server in front of its etcd.
    assert re.fullmatch(rf"http://127\.0\.0\.1:{sandbox.discovery_port}/[0-9a-f]{{32}}", url), url
    key = registry_key(url)
    size = sandbox.etcd_get(key + "/_config/size")
    assert size and size["node"]["value"] == "3"
    # The discovery URL is a secret: it must not be printed.
    assert url not in launched.out


def test_rerun_changes_nothing_and_reuses_the_token(sandbox, launched):
    ec2 = sandbox.client()
    before = sorted(m["InstanceId"] for m in cluster_instances(ec2, "it-main"))
    url_before = discovery_url_of(user_data(ec2, before[0]))
    for args in ([], ["--check"]):
        run = run_playbook("launch.yml", launch_vars(sandbox, "it-main"), *args)
        assert run.rc == 0, run.out[-6000:]
        assert run.recap["changed"] == 0, run.out[-6000:]
    after = sorted(m["InstanceId"] for m in cluster_instances(ec2, "it-main"))
    assert after == before
    assert discovery_url_of(user_data(ec2, after[0])) == url_before


@pytest.mark.parametrize("inventory", [True, False])
def test_role_adds_the_machines_to_the_inventory_group_unless_told_not_to(sandbox, launched, inventory):
    run = run_playbook("../tests/integration/playbooks/launch_inventory.yml",
                       launch_vars(sandbox, "it-main", launch_inventory=inventory))
    assert run.rc == 0, run.out[-6000:]
    [line] = [ln for ln in run.out.splitlines() if "INVENTORY " in ln]
    # The debug line is `"msg": "INVENTORY {...}"`, the JSON escaped inside a JSON string.
    seen = json.loads(json.loads("{" + line.strip().rstrip(",") + "}")["msg"].split("INVENTORY ", 1)[1])
    machines = cluster_instances(sandbox.client(), "it-main")
    if inventory:
        assert sorted(seen["hosts"]) == sorted(m["InstanceId"] for m in machines)
        assert seen["users"] == ["core"]
        # On the sandbox, the private addresses its nodes hold.
        assert sorted(seen["addresses"]) == sorted(m["PrivateIpAddress"] for m in machines)
    else:
        assert seen == {"hosts": None, "users": [], "addresses": []}


def test_launched_token_forms_a_real_etcd_cluster(sandbox, launched, tmp_path):
    """Three real etcd members started with the cluster's discovery URL find each other through it."""
    ec2 = sandbox.client()
    url = discovery_url_of(user_data(ec2, cluster_instances(ec2, "it-main")[0]["InstanceId"]))
    with start_members(url, ["m1", "m2", "m3"], str(tmp_path), timeout=30) as members:
        assert len(members.member_list()) == 3


def test_large_cluster_gets_a_token_for_its_etcd_members_and_is_never_resized(sandbox):
    ec2 = sandbox.client()
    run = run_playbook("launch.yml", launch_vars(sandbox, "it-big", cluster_size=7))
    assert run.rc == 0, run.out[-6000:]
    machines = cluster_instances(ec2, "it-big")
    assert len(machines) == 7
    key = registry_key(discovery_url_of(user_data(ec2, machines[0]["InstanceId"])))
    # Five voting members; the other two machines join etcd as proxies.
    assert sandbox.etcd_get(key + "/_config/size")["node"]["value"] == "5"
    shrink = run_playbook("launch.yml", launch_vars(sandbox, "it-big", cluster_size=4))
    assert shrink.rc != 0
    assert "cluster it-big already has 7 machines, not 4: launch never resizes a cluster" in shrink.out
    assert sorted(m["InstanceId"] for m in cluster_instances(ec2, "it-big")) == sorted(m["InstanceId"] for m in machines)


def test_explicit_image_id_is_used(sandbox):
    ec2 = sandbox.client()
    older = ec2.describe_images(Owners=["075585003325"], Filters=[{"Name": "name", "Values": ["Flatcar-stable-4152.2.3-hvm"]}])
    image_id = older["Images"][0]["ImageId"]
    run = run_playbook("launch.yml", launch_vars(sandbox, "it-image", cluster_size=1, image_id=image_id))
    assert run.rc == 0, run.out[-6000:]
    assert [m["ImageId"] for m in cluster_instances(ec2, "it-image")] == [image_id]
