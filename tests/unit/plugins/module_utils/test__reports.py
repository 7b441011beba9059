# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the launch and deploy roles print at the end of a run."""

from __future__ import annotations

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _reports as r

CLUSTER = {"name": "p-1", "target": "sandbox", "region": "us-east-1", "image_id": "ami-1", "security_group_id": "sg-1",
           "instances": [{"public_dns_name": "ec2-a", "state": "running", "id": "i-1", "availability_zone": "us-east-1a",
                          "lifecycle": "on-demand"},
                         {"public_dns_name": "", "state": "pending", "id": "i-2", "availability_zone": "us-east-1b",
                          "lifecycle": "spot"},
                         {"public_dns_name": "ec2-c", "state": "running", "id": "i-3"}]}


def test_launch_summary():
    assert r.launch_summary(CLUSTER, False, 3, ["203.0.113.0/24"]) == [
        "Cluster p-1 (sandbox, us-east-1): 3 machines, image ami-1, security group sg-1",
        "ec2-a  running  i-1  us-east-1a",
        "  pending  i-2  us-east-1b  spot",
        "ec2-c  running  i-3",
    ]


def test_launch_summary_in_check_mode_and_without_ssh():
    lines = r.launch_summary(dict(CLUSTER, instances=[]), True, 3, [])
    assert lines == ["Check mode: cluster p-1 (sandbox, us-east-1) would have 3 machines from image ami-1; nothing was "
                     "created", "Note: ssh_allowed_cidrs is empty, so the security group admits no SSH."]


FAILURE = "Start the machines: denied."
CLEANUP = "ansible-playbook playbooks/ops.yml -e cluster_name=p-1 -e ops_action=cleanup"
HEAD = "Launch of cluster p-1 failed at Start the machines: denied."


@pytest.mark.parametrize("keep, report, expected", [
    (False, {"locked": True, "listed": True, "machines": ["i-1", "i-2"], "machines_removed": True,
             "security_group": "sg-1", "security_group_removed": True, "token": True, "token_protocol": "etcd_v2",
             "token_removed": True},
     f"{HEAD} Rolled back: 2 machines (i-1, i-2); security group sg-1; the new discovery token."),
    (True, {"locked": True, "listed": True, "machines": ["i-1"], "token": True, "token_protocol": "etcd_v2",
            "cleanup": CLEANUP},
     f"{HEAD} Kept for inspection (keep_on_failure=true): 1 machine (i-1); the new discovery token. "
     f"Remove the rest with: {CLEANUP}"),
    (False, {"locked": True, "listed": True, "machines": ["i-1"], "machines_removed": True,
             "launch_template": "coreos-ec2-p-1", "launch_template_removed": True},
     f"{HEAD} Rolled back: 1 machine (i-1); launch template coreos-ec2-p-1."),
    (False, {"locked": True, "listed": True, "launch_template": "coreos-ec2-p-1",
             "launch_template_error": "UnauthorizedOperation: not allowed", "cleanup": CLEANUP},
     f"{HEAD} Nothing was rolled back. Left: launch template coreos-ec2-p-1 (UnauthorizedOperation: not allowed)."
     f" Remove the rest with: {CLEANUP}"),
    (False, {}, f"{HEAD} Nothing had been created."),
    (False, {"checked": True}, f"{HEAD} Check mode: nothing had been created."),
    # The endpoint died half way: everything is tried, and what is left is listed with the command.
    (False, {"locked": True, "listed": False, "list_error": "Could not connect to the endpoint URL",
             "security_group": "sg-1", "security_group_error": "Could not connect", "token": True,
             "token_protocol": "public", "lock_error": "Could not connect", "cleanup": CLEANUP},
     f"{HEAD} Nothing was rolled back. Left: any machine this run started (the cluster could not be listed: Could not"
     " connect to the endpoint URL); security group sg-1 (Could not connect); the new discovery token (the public"
     " discovery service cannot delete tokens; it is unused); the cluster's lock (not released: Could not"
     " connect; a later run may take it over with -e break_lock=true)."
     f" Remove the rest with: {CLEANUP}"),
    (False, {"locked": True, "listed": True, "machines": ["i-1"], "machines_removed": True, "token": True,
             "token_protocol": "public"},
     f"{HEAD} Rolled back: 1 machine (i-1). Left: the new discovery token (the public discovery service cannot"
     " delete tokens; it is unused)."),
])
def test_rollback_message(keep, report, expected):
    assert r.rollback_message("p-1", FAILURE, keep, report) == expected


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
