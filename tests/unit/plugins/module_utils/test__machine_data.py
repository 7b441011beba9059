# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One machine with its user data, in ec2_instance_info's shape, against moto's EC2."""

from __future__ import annotations

import base64

import boto3
import pytest
from moto import mock_aws

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._machine_data import run_user_data_info, run_volumes_info


@pytest.fixture(name="ec2")
def fixture_ec2():
    with mock_aws():
        yield boto3.client("ec2", region_name="us-east-1")


def test_first_given_machine_or_any_tagged_one(ec2):
    ids = [i["InstanceId"] for i in ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=2, MaxCount=2, UserData="#cloud-config\n", TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "coreos-ec2-cluster", "Value": "p-1"}]}])["Instances"]]
    found, dummy = run_user_data_info(ec2, {"cluster_name": "p-1", "instance_ids": ids[::-1]})
    (machine,) = found["instances"]
    assert machine["instance_id"] == ids[1] and machine["tags"] == {"coreos-ec2-cluster": "p-1"}
    assert base64.b64decode(machine["attributes"]["user_data"]["value"]) == b"#cloud-config\n"
    assert machine["image_id"] == "ami-12c6146b" and "security_groups" in machine
    ec2.terminate_instances(InstanceIds=ids)
    found, dummy = run_user_data_info(ec2, {"cluster_name": "p-1", "instance_ids": []})
    assert found["instances"][0]["instance_id"] in ids  # terminated machines still carry it
    assert run_user_data_info(ec2, {"cluster_name": "none", "instance_ids": []})[0]["instances"] == []


def test_volumes_info_reads_every_given_volume_with_one_call(ec2):
    made = [ec2.create_volume(AvailabilityZone="us-east-1a", Size=size, VolumeType="gp2", Encrypted=True,
                              TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "coreos-ec2-cluster", "Value": "p-1"}]}])
            for size in (10, 20)]
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2.attach_volume(VolumeId=made[1]["VolumeId"], InstanceId=instance, Device="/dev/sdb")
    found, dummy = run_volumes_info(ec2, {"volume_ids": [v["VolumeId"] for v in made]})
    rows = {v["id"]: v for v in found["volumes"]}
    assert found["changed"] is False and len(rows) == 2
    first, second = rows[made[0]["VolumeId"]], rows[made[1]["VolumeId"]]
    assert (first["size"], first["type"], first["encrypted"], first["instance_id"]) == (10, "gp2", True, "")
    assert first["tags"] == {"coreos-ec2-cluster": "p-1"}
    assert (second["size"], second["instance_id"], second["device"]) == (20, instance, "/dev/sdb")


def test_volumes_info_without_ids_makes_no_call():
    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError(f"called {name}")

    assert run_volumes_info(NoCalls(), {"volume_ids": []}) == ({"changed": False, "volumes": []}, [])


def test_volumes_info_names_the_volumes_it_could_not_read(ec2):
    with pytest.raises(ClusterError, match=r"Failed to describe volumes vol-0123456789abcdef0: InvalidVolume.NotFound: "):
        run_volumes_info(ec2, {"volume_ids": ["vol-0123456789abcdef0"]})
