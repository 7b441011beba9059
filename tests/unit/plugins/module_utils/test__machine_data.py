# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One machine with its user data, in ec2_instance_info's shape, against moto's EC2."""

from __future__ import annotations

import base64

import boto3
import pytest
from moto import mock_aws

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._machine_data import run_user_data_info


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
