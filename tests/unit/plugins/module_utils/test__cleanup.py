# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cleanup's reads against moto's EC2: the cluster's group and its outside users, and the region's discovery URLs."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cleanup import run_cleanup_info

URL_A = "https://discovery.etcd.io/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
URL_B = "https://discovery.etcd.io/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
URL_C = "https://discovery.etcd.io/cccccccccccccccccccccccccccccccc"


def user_data(url):
    return f"#cloud-config\ncoreos:\n  etcd2:\n    discovery: {url}\n"


def tag(key, value):
    return {"Key": key, "Value": value}


@pytest.fixture(name="ec2")
def fixture_ec2():
    with mock_aws():
        client = boto3.client("ec2", region_name="us-east-1")
        group = client.create_security_group(GroupName="coreos-ec2-p-1", Description="d", TagSpecifications=[
            {"ResourceType": "security-group", "Tags": [tag("coreos-ec2-cluster", "p-1")]}])["GroupId"]
        client.create_security_group(GroupName="coreos-ec2-q", Description="d", TagSpecifications=[
            {"ResourceType": "security-group", "Tags": [tag("coreos-ec2-cluster", "q"),
                                                        tag("coreos-ec2-cluster-discovery", URL_C)]}])
        for name, url in (("p-1", URL_A), ("q", URL_B)):
            client.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SecurityGroupIds=[group],
                                 UserData=user_data(url), TagSpecifications=[
                                     {"ResourceType": "instance", "Tags": [tag("coreos-ec2-cluster", name)]}])
        yield client


def test_group_and_its_users_outside_the_cluster(ec2):
    found, dummy = run_cleanup_info(ec2, {"cluster_name": "p-1", "security_group_name": "coreos-ec2-p-1", "sweep": False})
    assert [g["group_name"] for g in found["security_groups"]] == ["coreos-ec2-p-1"]
    assert found["security_groups"][0]["tags"] == {"coreos-ec2-cluster": "p-1"}
    assert len(found["foreign"]) == 1 and found["referenced"] == [] and found["sweep_blocked"] == ""


def test_sweep_names_every_other_url_and_sees_locks(ec2):
    found, dummy = run_cleanup_info(ec2, {"cluster_name": "p-1", "security_group_name": "coreos-ec2-p-1", "sweep": True})
    # Not p-1's own URL: the cleanup removes p-1 before it sweeps.
    assert sorted(found["referenced"]) == [URL_B, URL_C] and not found["locked"]
    (group,) = ec2.describe_security_groups(GroupNames=["coreos-ec2-q"])["SecurityGroups"]
    ec2.create_tags(Resources=[group["GroupId"]], Tags=[tag("coreos-ec2-cluster-lock", "run x@y:1 since now")])
    found, dummy = run_cleanup_info(ec2, {"cluster_name": "p-1", "security_group_name": "coreos-ec2-p-1", "sweep": True})
    assert found["locked"] and found["sweep_blocked"] == "a launch or scale holds a lock (coreos-ec2-q)"


def test_another_clusters_group_of_the_same_name_is_not_the_clusters(ec2):
    found, dummy = run_cleanup_info(ec2, {"cluster_name": "q", "security_group_name": "coreos-ec2-p-1", "sweep": False})
    assert found["security_groups"] == [] and found["foreign"] == []


class StillInUse:
    """A client whose group AWS still counts as used for the first `busy` tries."""

    def __init__(self, real, busy, code="DependencyViolation"):
        self.real, self.busy, self.code, self.tries = real, busy, code, 0

    def delete_security_group(self, **kwargs):
        from botocore.exceptions import ClientError  # pylint: disable=import-outside-toplevel

        self.tries += 1
        if self.tries <= self.busy:
            raise ClientError({"Error": {"Code": self.code, "Message": "resource has a dependent object"}},
                              "DeleteSecurityGroup")
        return self.real.delete_security_group(**kwargs)

    def describe_security_groups(self, **kwargs):
        return self.real.describe_security_groups(**kwargs)


def group_id(ec2):
    return ec2.describe_security_groups(GroupNames=["coreos-ec2-q"])["SecurityGroups"][0]["GroupId"]


def test_group_delete_waits_out_dependency_violation(ec2):
    from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cleanup import run_group_delete

    gid, slept = group_id(ec2), []
    checked, dummy = run_group_delete(ec2, {"group_id": gid, "timeout": 150, "delay": 5.0}, check_mode=True)
    assert checked["changed"] and group_id(ec2) == gid
    result, dummy = run_group_delete(StillInUse(ec2, 3), {"group_id": gid, "timeout": 150, "delay": 5.0},
                                     sleep=slept.append)
    assert result["changed"] and result["waited"] == 15.0 and slept == [5.0] * 3
    again, dummy = run_group_delete(ec2, {"group_id": gid, "timeout": 150, "delay": 5.0})
    assert not again["changed"]


def test_group_delete_gives_up_with_aws_message(ec2):
    from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cleanup import run_group_delete
    from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError

    gid = group_id(ec2)
    with pytest.raises(ClusterError, match="after 10 s of DependencyViolation: .*dependent object"):
        run_group_delete(StillInUse(ec2, 99), {"group_id": gid, "timeout": 10, "delay": 5.0}, sleep=lambda s: None)
    slept = []
    with pytest.raises(ClusterError, match=f"Failed to delete security group {gid}: .*UnauthorizedOperation"):
        run_group_delete(StillInUse(ec2, 1, "UnauthorizedOperation"), {"group_id": gid, "timeout": 150, "delay": 5.0},
                         sleep=slept.append)
    assert slept == []
