# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster's security group rules: the plan from a described group, and the calls against moto's EC2."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _group_rules as gr
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import security_group_rules
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError

RULES = security_group_rules("coreos-ec2-p-1", ["203.0.113.0/24"])
TAGS = {"coreos-ec2-cluster": "p-1"}


def _pair(desc):
    return {"GroupId": "sg-1", "Description": desc}


GROUP = {
    "GroupId": "sg-1", "Tags": [{"Key": "coreos-ec2-cluster", "Value": "p-1"}],
    "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "203.0.113.0/24", "Description": "SSH"}]},
        {"IpProtocol": "tcp", "FromPort": 2379, "ToPort": 2380, "UserIdGroupPairs": [_pair("etcd clients and peers")]},
        {"IpProtocol": "tcp", "FromPort": 4001, "ToPort": 4001, "UserIdGroupPairs": [_pair("etcd legacy ports")]},
        {"IpProtocol": "tcp", "FromPort": 7001, "ToPort": 7001, "UserIdGroupPairs": [_pair("etcd legacy ports")]},
        {"IpProtocol": "udp", "FromPort": 8285, "ToPort": 8285, "UserIdGroupPairs": [_pair("flannel udp backend")]},
        {"IpProtocol": "udp", "FromPort": 8472, "ToPort": 8472, "UserIdGroupPairs": [_pair("flannel vxlan backend")]},
    ],
    "IpPermissionsEgress": [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
}


def test_group_is_current_compares_rules_egress_and_tags():
    assert gr.group_is_current(GROUP, RULES, TAGS)
    assert not gr.group_is_current(GROUP, security_group_rules("coreos-ec2-p-1", ["198.51.100.0/24"]), TAGS)
    assert not gr.group_is_current(GROUP, RULES, {"coreos-ec2-cluster": "p-1", "team": "a"})
    assert not gr.group_is_current(dict(GROUP, IpPermissionsEgress=[]), RULES, TAGS)
    # A description on the all-traffic egress rule is still that rule.
    described = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "all"}]}]
    assert gr.group_is_current(dict(GROUP, IpPermissionsEgress=described), RULES, TAGS)


def test_rules_plan_names_each_difference():
    group = dict(GROUP, IpPermissions=GROUP["IpPermissions"][1:] + [  # no SSH rule; an old one and a renamed one
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    ], IpPermissionsEgress=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    group["IpPermissions"][0] = {"IpProtocol": "tcp", "FromPort": 2379, "ToPort": 2380, "UserIdGroupPairs": [_pair("old")]}
    plan = gr.rules_plan(group, RULES, dict(TAGS, team="a"))
    assert plan["revoke"] == [("tcp", 80, 80, "cidr", "0.0.0.0/0", "")]
    assert plan["authorize"] == [("tcp", 22, 22, "cidr", "203.0.113.0/24", "SSH")]
    assert plan["describe"] == [("tcp", 2379, 2380, "group", "sg-1", "etcd clients and peers")]
    assert plan["revoke_egress"] == [("tcp", 443, 443, "cidr", "10.0.0.0/8", "")]
    assert plan["authorize_egress"] == [gr.ALL_EGRESS]
    assert plan["tags"] == {"team": "a"}
    assert not any(gr.rules_plan(GROUP, RULES, TAGS).values())


@pytest.mark.parametrize(("permission", "item", "text"), [
    (("tcp", 22, 22, "cidr", "203.0.113.0/24", "SSH"),
     {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "203.0.113.0/24", "Description": "SSH"}]},
     "tcp 22 203.0.113.0/24 (SSH)"),
    (("tcp", 22, 22, "cidr6", "2001:db8::/32", ""),
     {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "Ipv6Ranges": [{"CidrIpv6": "2001:db8::/32"}]},
     "tcp 22 2001:db8::/32"),
    (("udp", 2379, 2380, "group", "sg-1", "etcd"),
     {"IpProtocol": "udp", "FromPort": 2379, "ToPort": 2380, "UserIdGroupPairs": [{"GroupId": "sg-1", "Description": "etcd"}]},
     "udp 2379-2380 the group itself (etcd)"),
    (gr.ALL_EGRESS, {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, "all 0.0.0.0/0"),
])
def test_ip_permission_and_text(permission, item, text):
    assert gr.ip_permission(permission) == item
    assert gr.rule_text(permission) == text
    # What AWS describes back reads as the same tuple.
    assert gr.current_permissions([item]) == {permission}


@pytest.fixture
def ec2():
    with mock_aws():
        yield boto3.client("ec2", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")


def _params(**kw):
    return dict({"cluster_name": "p-1", "security_group_name": "coreos-ec2-p-1", "vpc_id": None, "rules": RULES,
                 "tags": TAGS}, **kw)


def _create(ec2, tags=None):
    return ec2.create_security_group(GroupName="coreos-ec2-p-1", Description="CoreOS cluster p-1", TagSpecifications=[
        {"ResourceType": "security-group", "Tags": [{"Key": k, "Value": v} for k, v in (tags or TAGS).items()]}])["GroupId"]


def _described(ec2, group_id):
    return ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]


def test_sets_the_rules_then_changes_nothing(ec2):
    group_id = _create(ec2)
    # Something a person added by hand, which the cluster does not ask for.
    ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    checked, dummy = gr.run_group_rules(ec2, _params(tags=dict(TAGS, team="a")), check_mode=True)
    assert checked["changed"] and checked["revoked"] == ["tcp 80 0.0.0.0/0"]
    assert "tcp 80 0.0.0.0/0" in checked["diff"]["before"]["ingress"]
    assert not gr.group_is_current(_described(ec2, group_id), RULES, TAGS)  # check mode changed nothing

    result, dummy = gr.run_group_rules(ec2, _params(tags=dict(TAGS, team="a")))
    assert result["changed"] and result["group_id"] == group_id
    assert sorted(result["authorized"]) == sorted(gr.rule_text(p) for p in gr.wanted_permissions(RULES, group_id))
    assert result["revoked"] == ["tcp 80 0.0.0.0/0"]
    group = _described(ec2, group_id)
    assert gr.group_is_current(group, RULES, dict(TAGS, team="a"))
    assert result["diff"]["after"] == gr._state(group)  # pylint: disable=protected-access

    again, dummy = gr.run_group_rules(ec2, _params(tags=dict(TAGS, team="a")))
    assert not again["changed"] and again["authorized"] == again["revoked"] == [] and "diff" not in again


def test_new_ssh_range_replaces_the_old_and_keeps_other_tags(ec2):
    group_id = _create(ec2, dict(TAGS, **{"coreos-ec2-cluster-lock": "run"}))
    gr.run_group_rules(ec2, _params())
    wider = security_group_rules("coreos-ec2-p-1", ["198.51.100.0/24", "2001:db8::/32"])
    result, dummy = gr.run_group_rules(ec2, _params(rules=wider))
    assert result["revoked"] == ["tcp 22 203.0.113.0/24 (SSH)"]
    assert sorted(result["authorized"]) == ["tcp 22 198.51.100.0/24 (SSH)", "tcp 22 2001:db8::/32 (SSH)"]
    group = _described(ec2, group_id)
    assert gr.group_is_current(group, wider, TAGS)
    assert {t["Key"] for t in group["Tags"]} == {"coreos-ec2-cluster", "coreos-ec2-cluster-lock"}


def test_missing_group(ec2):
    with pytest.raises(ClusterError, match="security group coreos-ec2-p-1 does not exist"):
        gr.run_group_rules(ec2, _params())
    result, dummy = gr.run_group_rules(ec2, _params(), check_mode=True)
    assert result["changed"] and result["group_id"] == ""
    assert result["diff"]["before"] == {} and "tcp 22 203.0.113.0/24 (SSH)" in result["diff"]["after"]["ingress"]
    assert result["diff"]["after"]["egress"] == ["all 0.0.0.0/0"]


def test_refuses_a_group_of_another_cluster(ec2):
    group_id = _create(ec2, {"coreos-ec2-cluster": "other"})
    with pytest.raises(ClusterError, match="does not belong to cluster p-1"):
        gr.run_group_rules(ec2, _params())
    assert _described(ec2, group_id)["IpPermissions"] == []


class _Flaky:
    """An EC2 client whose calls fail with `code` the first `times` times (AWS right after CreateSecurityGroup)."""

    def __init__(self, client, method, code, times):
        self.client, self.method, self.code, self.left = client, method, code, times

    def __getattr__(self, name):
        call = getattr(self.client, name)
        if name != self.method:
            return call

        def flaky(**kwargs):
            if self.left:
                self.left -= 1
                raise ClientError({"Error": {"Code": self.code, "Message": "not yet"}}, name)
            return call(**kwargs)
        return flaky


def test_waits_out_a_group_aws_does_not_know_yet(ec2):
    group_id = _create(ec2)
    sleeps = []
    flaky = _Flaky(ec2, "authorize_security_group_ingress", "InvalidGroup.NotFound", 2)
    result, dummy = gr.run_group_rules(flaky, _params(), sleep=sleeps.append)
    assert result["changed"] and len(sleeps) == 2
    assert gr.group_is_current(_described(ec2, group_id), RULES, TAGS)


def test_other_errors_fail_at_once_with_aws_s_message(ec2):
    _create(ec2)
    flaky = _Flaky(ec2, "authorize_security_group_ingress", "UnauthorizedOperation", 1)
    with pytest.raises(ClusterError, match=r"Failed to authorize ingress rules on security group coreos-ec2-p-1 "
                                           r"\(sg-[0-9a-f]+\): UnauthorizedOperation: not yet \(the calls before"):
        gr.run_group_rules(flaky, _params(), sleep=pytest.fail)
