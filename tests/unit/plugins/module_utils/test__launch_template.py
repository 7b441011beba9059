# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster's launch template against moto's EC2: created, left alone, versioned, refused, deleted; check mode."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._launch_template import run_launch_template

TAGS = {"coreos-ec2-cluster": "p-1", "managed-by": "coreos_ec2.cluster"}


def params(**kw):
    p = {"cluster_name": "p-1", "name": "coreos-ec2-p-1", "market": "spot", "spot_max_price": "", "tags": TAGS,
         "state": "present"}
    p.update(kw)
    return p


@pytest.fixture(name="ec2")
def fixture_ec2():
    with mock_aws():
        yield boto3.client("ec2", region_name="us-east-1")


def default_data(ec2):
    return ec2.describe_launch_template_versions(LaunchTemplateName="coreos-ec2-p-1", Versions=["$Default"])[
        "LaunchTemplateVersions"][0]["LaunchTemplateData"]


def test_created_once_then_left_alone(ec2):
    result, warnings = run_launch_template(ec2, params(spot_max_price="0.05"))
    assert warnings == [] and result["changed"] and result["created"]
    assert result["launch_template"]["name"] == "coreos-ec2-p-1" and result["launch_template"]["version"] == "1"
    assert default_data(ec2)["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "0.05"
    tags = ec2.describe_launch_templates()["LaunchTemplates"][0]["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == TAGS
    again, dummy = run_launch_template(ec2, params(spot_max_price="0.050"))
    assert not again["changed"] and not again["created"]


def test_another_price_is_a_new_default_version(ec2):
    run_launch_template(ec2, params(spot_max_price="0.05"))
    checked, dummy = run_launch_template(ec2, params(spot_max_price="0.07"), check_mode=True)
    assert checked["changed"] and checked["diff"]["after"]["data"]["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "0.07"
    assert default_data(ec2)["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "0.05"
    result, dummy = run_launch_template(ec2, params(spot_max_price="0.07"))
    assert result["changed"] and result["launch_template"]["version"] == "2"
    assert default_data(ec2)["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "0.07"


def test_check_mode_creates_nothing(ec2):
    result, dummy = run_launch_template(ec2, params(), check_mode=True)
    assert result["changed"] and result["created"]
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []


def test_a_template_of_another_owner_is_refused(ec2):
    ec2.create_launch_template(LaunchTemplateName="coreos-ec2-p-1", LaunchTemplateData={})
    with pytest.raises(ClusterError, match="launch template coreos-ec2-p-1 exists but does not belong to cluster p-1"):
        run_launch_template(ec2, params())
    with pytest.raises(ClusterError, match="refusing to use or delete it"):
        run_launch_template(ec2, params(state="absent"))
    assert len(ec2.describe_launch_templates()["LaunchTemplates"]) == 1


def test_deleted_and_gone(ec2):
    run_launch_template(ec2, params())
    checked, dummy = run_launch_template(ec2, params(state="absent"), check_mode=True)
    assert checked["changed"] and len(ec2.describe_launch_templates()["LaunchTemplates"]) == 1
    result, dummy = run_launch_template(ec2, params(state="absent"))
    assert result["changed"] and ec2.describe_launch_templates()["LaunchTemplates"] == []
    again, dummy = run_launch_template(ec2, params(state="absent"))
    assert not again["changed"]


def test_bad_price_is_refused_before_any_call(ec2):
    with pytest.raises(ClusterError, match="spot_max_price 'x' is not a price"):
        run_launch_template(ec2, params(spot_max_price="x"))
