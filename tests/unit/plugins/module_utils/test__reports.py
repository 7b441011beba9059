# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the launch and deploy roles print at the end of a run."""

from __future__ import annotations

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _reports as r

CLUSTER = {"name": "p-1", "target": "sandbox", "region": "us-east-1", "image_id": "ami-1", "security_group_id": "sg-1",
           "instances": [{"public_dns_name": "ec2-a", "state": "running", "id": "i-1"},
                         {"public_dns_name": "", "state": "pending", "id": "i-2"}]}


def test_launch_summary():
    assert r.launch_summary(CLUSTER, False, 2, ["203.0.113.0/24"]) == [
        "Cluster p-1 (sandbox, us-east-1): 2 machines, image ami-1, security group sg-1",
        "ec2-a  running  i-1",
        "  pending  i-2",
    ]


def test_launch_summary_in_check_mode_and_without_ssh():
    lines = r.launch_summary(dict(CLUSTER, instances=[]), True, 3, [])
    assert lines == ["Check mode: cluster p-1 (sandbox, us-east-1) would have 3 machines from image ami-1; nothing was "
                     "created", "Note: ssh_allowed_cidrs is empty, so the security group admits no SSH."]


@pytest.mark.parametrize("keep, tag, group, token, expected", [
    (False, "coreos-ec2-cluster=p-1", "sg-1", True,
     "Launch of cluster p-1 failed at Start the machines: denied. Rolled back: machines tagged coreos-ec2-cluster=p-1;"
     " security group sg-1; the new discovery token."),
    (True, "coreos-ec2-cluster=p-1", "", False,
     "Launch of cluster p-1 failed at Start the machines: denied. Kept for inspection (keep_on_failure=true): machines"
     " tagged coreos-ec2-cluster=p-1."),
    (False, "", "", False, "Launch of cluster p-1 failed at Start the machines: denied. Rolled back: nothing had been"
                           " created."),
])
def test_rollback_message(keep, tag, group, token, expected):
    assert r.rollback_message("p-1", "Start the machines: denied", keep, tag, group, token) == expected


OUTCOME = {"machine": "i-1", "changed": True, "summary": "3 submitted", "plan": {}, "remote_commands": 2}


def test_deploy_result_and_message():
    done = r.deploy_result(OUTCOME)
    assert done == {"skipped": False, "machine": "i-1", "changed": True, "summary": "3 submitted", "plan": {},
                    "remote_commands": 2}
    assert r.deploy_message(done) == "Deployed through i-1: 3 submitted (2 remote commands)"
    assert r.deploy_message(done, check_mode=True) == (
        "Check mode, nothing was changed; planned through i-1: 3 submitted (2 remote commands)")
    skipped = r.deploy_result({}, "skipped: no fleet")
    assert skipped == {"skipped": True, "reason": "skipped: no fleet"}
    assert r.deploy_message(skipped) == "skipped: no fleet"
