# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_instance_state's work against moto's EC2, and against a client that answers as AWS does right after
a launch (InvalidInstanceID.NotFound) or when throttled."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._instance_state import run_instance_state


def params(**kw):
    p = {"cluster_name": None, "instance_ids": None, "state": "stopped", "wait": True, "wait_timeout": 60}
    p.update(kw)
    return p


@pytest.fixture(name="ec2")
def fixture_ec2():
    with mock_aws():
        client = boto3.client("ec2", region_name="us-east-1")
        for name, count in (("p-1", 3), ("other", 1)):
            client.run_instances(ImageId="ami-12c6146b", MinCount=count, MaxCount=count, TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "coreos-ec2-cluster", "Value": name}]}])
        yield client


def states(ec2):
    return sorted((t["Value"], i["State"]["Name"]) for r in ec2.describe_instances()["Reservations"]
                  for i in r["Instances"] for t in i.get("Tags", []) if t["Key"] == "coreos-ec2-cluster")


def test_check_mode_changes_nothing_then_the_cluster_stops_and_only_it(ec2):
    checked, dummy = run_instance_state(ec2, params(cluster_name="p-1"), check_mode=True, sleep=lambda s: None)
    assert checked["changed"] and len(checked["changed_ids"]) == 3
    assert set(checked["diff"]["after"].values()) == {"stopped"}
    assert ("p-1", "stopped") not in states(ec2)
    result, dummy = run_instance_state(ec2, params(cluster_name="p-1"), sleep=lambda s: None)
    assert result["changed"] and {r["state"] for r in result["instances"]} == {"stopped"}
    assert states(ec2) == [("other", "running")] + [("p-1", "stopped")] * 3
    again, dummy = run_instance_state(ec2, params(cluster_name="p-1"), sleep=lambda s: None)
    assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"]


def test_terminated_machines_cannot_be_started(ec2):
    ids = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]][:1]
    run_instance_state(ec2, params(instance_ids=ids, state="terminated"), sleep=lambda s: None)
    with pytest.raises(ClusterError, match="terminated"):
        run_instance_state(ec2, params(instance_ids=ids, state="running"), sleep=lambda s: None)


def test_empty_id_list_changes_nothing(ec2):
    assert run_instance_state(ec2, params(instance_ids=[]))[0] == {"changed": False, "changed_ids": [], "instances": []}


class NotYetKnown:
    """A client that, like EC2 right after RunInstances, does not know the ids for the first calls."""

    def __init__(self, real, failures):
        self.real, self.failures, self.calls = real, failures, 0

    def _maybe_fail(self, name):
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise ClientError({"Error": {"Code": "InvalidInstanceID.NotFound", "Message": "not yet"}}, name)

    def get_paginator(self, name):
        self._maybe_fail(name)
        return self.real.get_paginator(name)

    def stop_instances(self, **kwargs):
        self._maybe_fail("StopInstances")
        return self.real.stop_instances(**kwargs)


def test_ids_eventually_known_are_retried(ec2):
    ids = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    client = NotYetKnown(ec2, 3)
    slept = []
    result, dummy = run_instance_state(client, params(instance_ids=ids), sleep=slept.append)
    assert result["changed"] and len(slept) >= 3


def test_a_bad_request_fails_at_once_naming_the_step(ec2):
    class Denied(NotYetKnown):
        def stop_instances(self, **kwargs):
            raise ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "no"}}, "StopInstances")

    slept = []
    with pytest.raises(ClusterError, match="Failed to bring .* to stopped: UnauthorizedOperation: no"):
        run_instance_state(Denied(ec2, 0), params(cluster_name="p-1"), sleep=slept.append)
    assert slept == []
