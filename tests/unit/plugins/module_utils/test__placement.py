# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Subnets and market: the inputs' checks, the round-robin spread, the spread-keeping removal, the template data."""

from __future__ import annotations

import pytest

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _placement as pl
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError

A, B, C = "subnet-0000000a", "subnet-0000000b", "subnet-0123456789abcdef0"
SUBNETS = [{"subnet_id": A, "availability_zone": "us-east-1a", "vpc_id": "vpc-1", "state": "available"},
           {"subnet_id": B, "availability_zone": "us-east-1b", "vpc_id": "vpc-1", "state": "available"}]


def row(i, subnet, state="running", minute=0):
    return {"id": f"i-{i}", "subnet_id": subnet, "state": state, "launch_time": f"2026-11-30T10:{minute:02d}:00",
            "availability_zone": {A: "us-east-1a", B: "us-east-1b"}.get(subnet, "us-east-1c")}


def test_subnet_ids_are_checked_for_form_and_repeats():
    assert pl.validate_subnet_ids(None) == [] and pl.validate_subnet_ids([]) == []
    assert pl.validate_subnet_ids([A, C]) == [A, C]
    with pytest.raises(ValidationError, match="subnet_ids item 'sub-1' is not a subnet id"):
        pl.validate_subnet_ids(["sub-1"])
    with pytest.raises(ValidationError, match=f"subnet_ids names {A} twice"):
        pl.validate_subnet_ids([A, A])
    with pytest.raises(ValidationError, match="is not a list"):
        pl.validate_subnet_ids(A)


@pytest.mark.parametrize("market, price, expected", [
    ("on-demand", "", ("on-demand", "")),
    ("spot", None, ("spot", "")),
    ("spot", "0.0500", ("spot", "0.05")),
    ("spot", 1, ("spot", "1")),
])
def test_market_and_price(market, price, expected):
    assert pl.validate_market(market, price) == expected


@pytest.mark.parametrize("market, price, message", [
    ("reserved", "", "market 'reserved' is not allowed: choose one of on-demand, spot"),
    ("on-demand", "0.05", "spot_max_price '0.05' is only for market=spot"),
    ("spot", "cheap", "spot_max_price 'cheap' is not a price"),
    ("spot", "-1", "spot_max_price '-1' is not a price"),
    ("spot", "0", "spot_max_price '0' is not a price"),
    ("spot", "nan", "spot_max_price 'nan' is not a price"),
])
def test_bad_market_or_price(market, price, message):
    with pytest.raises(ValidationError, match=message):
        pl.validate_market(market, price)


def test_template_data_asks_for_one_time_spot_machines():
    assert pl.launch_template_data("on-demand") == {}
    assert pl.launch_template_data("spot", "0.05") == {"InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {
        "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate", "MaxPrice": "0.05"}}}
    assert "MaxPrice" not in pl.launch_template_data("spot")["InstanceMarketOptions"]["SpotOptions"]


def test_market_options_compare_prices_as_numbers():
    wanted = pl.launch_template_data("spot", "0.05")
    current = {"InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {
        "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate", "MaxPrice": "0.050000"}}}
    assert pl.market_options_current(current, wanted)
    assert not pl.market_options_current(current, pl.launch_template_data("spot", "0.06"))
    assert not pl.market_options_current(current, pl.launch_template_data("spot"))
    assert not pl.market_options_current({}, wanted)


def test_new_machines_go_round_robin():
    plan = pl.spread([], SUBNETS, 3)
    assert [(p["subnet_id"], p["count"], p["new"]) for p in plan] == [(A, 2, 2), (B, 1, 1)]
    assert [p["count"] for p in pl.spread([], SUBNETS, 4)] == [2, 2]


def test_existing_machines_stay_and_new_ones_fill_the_emptiest_subnet():
    rows = [row(1, A), row(2, A), row(3, A, state="terminated")]
    plan = pl.spread(rows, SUBNETS, 4)
    assert [(p["count"], p["new"]) for p in plan] == [(2, 0), (2, 2)]
    # Complete: nothing new anywhere, every subnet keeps what it has.
    assert [(p["count"], p["new"]) for p in pl.spread(rows, SUBNETS, 2)] == [(2, 0), (0, 0)]


def test_subnet_problems_name_each_input():
    problems = pl.subnet_problems([A, B, C], SUBNETS, "us-east-1", [row(1, "subnet-0000000f")])
    assert problems == [
        f"subnet_ids {C} does not exist in us-east-1: give subnets of that region (aws ec2 describe-subnets)",
        "the cluster has machines in subnet-0000000f, which subnet_ids does not name: launch does not move machines; "
        "add those subnets to subnet_ids, or scale or terminate the cluster first",
    ]
    other_vpc = [SUBNETS[0], dict(SUBNETS[1], vpc_id="vpc-2")]
    assert "in different VPCs (vpc-1: subnet-0000000a; vpc-2: subnet-0000000b)" in pl.subnet_problems(
        [A, B], other_vpc, "us-east-1", [])[0]
    assert "the cluster's security group is in vpc-9" in pl.subnet_problems([A, B], SUBNETS, "us-east-1", [], "vpc-9")[0]
    assert pl.subnet_problems([A, B], SUBNETS, "us-east-1", [row(1, A)], "vpc-1") == []


def test_subnet_rows_keep_the_given_order():
    answer = [{"SubnetId": B, "AvailabilityZone": "us-east-1b", "VpcId": "vpc-1", "State": "available"},
              {"SubnetId": A, "AvailabilityZone": "us-east-1a", "VpcId": "vpc-1", "State": "pending"}]
    assert [s["subnet_id"] for s in pl.subnet_rows(answer, [A, B])] == [A, B]
    assert pl.subnet_rows(answer, [A])[0]["state"] == "pending"


def test_cluster_subnets_oldest_machine_first():
    rows = [row(3, B, minute=2), row(1, A, minute=0), row(2, B, minute=1), row(4, C, state="terminated")]
    assert [s["subnet_id"] for s in pl.cluster_subnets(rows)] == [A, B]


def test_removal_keeps_the_spread():
    rows = [row(1, A, minute=1), row(2, B, minute=2), row(3, A, minute=3), row(4, B, minute=4), row(5, A, minute=5)]
    newest_first = sorted(rows, key=lambda r: r["launch_time"], reverse=True)
    # A has 3, B 2: first from A (its newest, i-5), then the newest of the now even subnets (i-4 in B).
    assert pl.spread_removal(rows, newest_first, 2) == ["i-5", "i-4"]
    # Only machines of B may go (the others are etcd members): B gives them up.
    assert pl.spread_removal(rows, [r for r in newest_first if r["subnet_id"] == B], 2) == ["i-4", "i-2"]
    # One subnet: newest first, as before.
    single = [row(1, A, minute=1), row(2, A, minute=2)]
    assert pl.spread_removal(single, list(reversed(single)), 1) == ["i-2"]
