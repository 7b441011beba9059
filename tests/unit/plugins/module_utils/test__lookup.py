# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a launch reads first, and the refusals that follow."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _lookup as lu

IMAGES = [
    {"ImageId": "ami-old", "Name": "Flatcar-stable-1-hvm", "CreationDate": "2026-01-01T00:00:00.000Z", "State": "available",
     "RootDeviceName": "/dev/xvda", "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}]},
    {"ImageId": "ami-new", "Name": "Flatcar-stable-2-hvm", "CreationDate": "2026-06-01T00:00:00.000Z", "State": "available",
     "RootDeviceName": "/dev/xvda", "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 9}}],
     "Architecture": "x86_64"},
    {"ImageId": "ami-pending", "Name": "Flatcar-stable-3-hvm", "CreationDate": "2026-09-01T00:00:00.000Z", "State": "pending"},
]


def test_newest_available_image_with_its_root_volume():
    assert lu.newest_image(IMAGES) == {"image_id": "ami-new", "name": "Flatcar-stable-2-hvm",
                                       "creation_date": "2026-06-01T00:00:00.000Z", "root_device_name": "/dev/xvda",
                                       "root_volume_size": 9, "architecture": "x86_64"}
    assert lu.newest_image([]) == {}


def problems(**overrides):
    args = dict(cluster_name="p-1", region="us-east-1", key_name="ops", key_found=True, image={"image_id": "ami-1"},
                image_id=None, channel="stable", architecture="x86_64", ami_owner="075585003325",
                instance_type="c4.large", type_offered=True, offered_similar=[], existing_count=0, size=3)
    args.update(overrides)
    return lu.preflight_problems(**args)


def test_no_problems():
    assert problems() == [] and problems(existing_count=3) == [] and problems(type_offered=None) == []


def test_every_problem_is_named_at_once():
    found = problems(key_found=False, image={}, type_offered=False, offered_similar=["c4.xlarge"], existing_count=2)
    assert found == [
        "key pair ops does not exist in us-east-1: create or import it first (key_name must name an existing EC2 key pair)",
        "no available Flatcar stable image for x86_64 owned by 075585003325 in us-east-1",
        "instance_type c4.large is not offered in us-east-1 (similar types offered there: c4.xlarge): give a type the"
        " region offers (aws ec2 describe-instance-type-offerings)",
        "cluster p-1 already has 2 machines, not 3: launch never resizes a cluster (use the scale operation)",
    ]
    assert problems(image={}, image_id="ami-x") == ["image_id ami-x does not exist in us-east-1"]


def test_similar_types():
    offered = ["c5.large", "c4.xlarge", "c4.2xlarge", "m5.huge"]
    assert lu.similar_types("c4.huge", offered) == ["c4.2xlarge", "c4.xlarge"]
    assert lu.similar_types("x9.huge", offered) == ["m5.huge"]
    assert lu.similar_types("x9.tiny", offered) == []


def _lookup_params(**kw):
    p = {"cluster_name": "p-1", "size": 3, "key_name": "", "image_id": None, "ami_owner": "075585003325",
         "ami_name_pattern": "Flatcar-stable-*", "architecture": "x86_64", "channel": "stable",
         "instance_type": "c4.large", "check_offering": True, "security_group_name": "coreos-ec2-p-1",
         "security_group_rules": None, "tags": {}, "subnet_ids": []}
    p.update(kw)
    return p


@pytest.fixture(name="ec2")
def fixture_ec2():
    with mock_aws():
        yield boto3.client("ec2", region_name="us-east-1")


def _zone_subnets(ec2):
    subnets = {s["AvailabilityZone"]: s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s.get("DefaultForAz")}
    return subnets["us-east-1a"], subnets["us-east-1b"]


def test_lookup_spreads_over_the_given_subnets(ec2):
    a, b = _zone_subnets(ec2)
    found = lu.lookup_cluster(ec2, _lookup_params(subnet_ids=[b, a]), "us-east-1")
    assert found["error"] == ""
    assert [(s["subnet_id"], s["availability_zone"]) for s in found["subnets"]] == [(b, "us-east-1b"), (a, "us-east-1a")]
    assert [(p["subnet_id"], p["count"], p["new"]) for p in found["placement"]] == [(b, 2, 2), (a, 1, 1)]
    assert not [p for p in found["problems"] if "subnet" in p or "zone" in p]


def test_lookup_without_subnets_names_the_default_subnet_ec2_instance_would_pick(ec2):
    a, dummy = _zone_subnets(ec2)
    found = lu.lookup_cluster(ec2, _lookup_params(), "us-east-1")
    assert found["placement"] == [{"subnet_id": a, "availability_zone": "us-east-1a", "count": 3, "new": 3}]
    assert [s["subnet_id"] for s in found["subnets"]] == [a]


def test_lookup_without_subnets_completes_a_cluster_where_its_machines_are(ec2):
    dummy, b = _zone_subnets(ec2)
    ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=b, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "coreos-ec2-cluster", "Value": "p-1"}]}])
    found = lu.lookup_cluster(ec2, _lookup_params(), "us-east-1")
    assert found["placement"] == [{"subnet_id": b, "availability_zone": "us-east-1b", "count": 3, "new": 2}]


def test_lookup_in_a_region_without_default_vpc_asks_for_subnets(ec2):
    for subnet in ec2.describe_subnets()["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    found = lu.lookup_cluster(ec2, _lookup_params(), "us-east-1")
    assert "us-east-1 has no default VPC with a default subnet: give subnet_ids" in " ".join(found["problems"])


def test_lookup_names_unknown_subnets_and_other_vpcs(ec2):
    a, dummy = _zone_subnets(ec2)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    other = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24", AvailabilityZone="us-east-1c")["Subnet"]["SubnetId"]
    found = lu.lookup_cluster(ec2, _lookup_params(subnet_ids=[a, other, "subnet-0000000f"]), "us-east-1")
    text = " | ".join(found["problems"])
    assert "subnet_ids subnet-0000000f does not exist in us-east-1" in text
    assert "subnet_ids are in different VPCs" in text and other in text


def test_lookup_checks_the_type_in_each_zone(ec2):
    a, b = _zone_subnets(ec2)
    found = lu.lookup_cluster(ec2, _lookup_params(subnet_ids=[a, b], instance_type="c4.nonsense"), "us-east-1")
    assert any(p.startswith("instance_type c4.nonsense is not offered in zone us-east-1a (subnet " + a)
               for p in found["problems"])


def test_complete_cluster_with_machines_elsewhere_gets_a_note(ec2):
    a, b = _zone_subnets(ec2)
    ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=a, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "coreos-ec2-cluster", "Value": "p-1"}]}])
    found = lu.lookup_cluster(ec2, _lookup_params(size=1, subnet_ids=[b]), "us-east-1")
    assert found["problems"] == [] and found["notes"] == [
        f"cluster p-1 has machines in {a}, which subnet_ids does not name; launch does not move machines"]
