# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a cluster's machines go: subnets (so zones) and market (on-demand or spot).

A cluster given several subnets spreads its machines round-robin over them, so over their zones: one zone going
away takes a share of the machines, not all of them. The plan is per subnet, so that amazon.aws.ec2_instance's
exact_count (filtered by the cluster tag and the subnet) keeps each subnet's share idempotent. A launch only adds
machines, to the subnets with the fewest; a scale grows the same way and shrinks from the subnets with the most.

Spot machines are started through a launch template whose market options ask for one-time spot machines that
terminate when interrupted (ec2_instance has no market option of its own); a re-run of the launch replaces an
interrupted machine. One-time spot machines cannot be stopped, only terminated.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping, Sequence

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError

MARKETS = ("on-demand", "spot")
SUBNET_ID_RE = re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$")
LIVE_STATES = ("pending", "running", "stopping", "stopped")


def validate_subnet_ids(value: Any) -> list[str]:
    """subnet_ids: a list of distinct EC2 subnet ids (subnet-xxxxxxxx or subnet-xxxxxxxxxxxxxxxxx); [] for none."""
    if value in (None, ""):
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValidationError(f"subnet_ids {value!r} is not a list: give a list of subnet ids, e.g. [subnet-0a1b2c3d]")
    ids = []
    for item in value:
        if not isinstance(item, str) or not SUBNET_ID_RE.match(item):
            raise ValidationError(
                f"subnet_ids item {item!r} is not a subnet id: allowed is subnet- and 8 or 17 hexadecimal digits")
        if item in ids:
            raise ValidationError(f"subnet_ids names {item} twice: give each subnet once")
        ids.append(item)
    return ids


def validate_market(market: Any, spot_max_price: Any = None) -> tuple[str, str]:
    """market (on-demand or spot) and spot_max_price (a positive price in USD per hour, as EC2 takes it: a
    decimal string; empty for the on-demand price as the cap). Returns both, the price normalised."""
    if market not in MARKETS:
        raise ValidationError(f"market {market!r} is not allowed: choose one of {', '.join(MARKETS)}")
    if spot_max_price in (None, ""):
        return market, ""
    if market != "spot":
        raise ValidationError(f"spot_max_price {spot_max_price!r} is only for market=spot (market is {market})")
    try:
        price = Decimal(str(spot_max_price).strip())
    except InvalidOperation:
        price = Decimal(-1)
    if isinstance(spot_max_price, bool) or not price.is_finite() or price <= 0:
        raise ValidationError(
            f"spot_max_price {spot_max_price!r} is not a price: give USD per machine-hour above 0, e.g. 0.05")
    return market, format(price.normalize(), "f")


def launch_template_data(market: str, spot_max_price: str = "") -> dict[str, Any]:
    """The launch template data that makes RunInstances start the cluster's machines in `market`."""
    if market != "spot":
        return {}
    options: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
    if spot_max_price:
        options["MaxPrice"] = spot_max_price
    return {"InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": options}}


def market_options_current(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    """Whether a launch template version's data (DescribeLaunchTemplateVersions' shape) has the wanted market
    options; EC2 may return prices with trailing zeros (0.050), so prices compare as numbers."""
    have = dict((current or {}).get("InstanceMarketOptions") or {})
    want = dict(wanted.get("InstanceMarketOptions") or {})
    if have.get("MarketType") != want.get("MarketType"):
        return False
    have_spot, want_spot = dict(have.get("SpotOptions") or {}), dict(want.get("SpotOptions") or {})
    have_price, want_price = have_spot.pop("MaxPrice", ""), want_spot.pop("MaxPrice", "")
    if bool(have_price) != bool(want_price) or have_price and Decimal(have_price) != Decimal(want_price):
        return False
    return all(have_spot.get(key) == value for key, value in want_spot.items())


def subnet_rows(subnets: Iterable[Mapping[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """DescribeSubnets answers as {subnet_id, availability_zone, vpc_id, state}, in the order the user gave."""
    by_id = {s.get("SubnetId"): s for s in subnets}
    return [{"subnet_id": i, "availability_zone": by_id[i].get("AvailabilityZone", ""),
             "vpc_id": by_id[i].get("VpcId", ""), "state": by_id[i].get("State", "available")}
            for i in order if i in by_id]


def subnet_problems(wanted: Sequence[str], subnets: Sequence[Mapping[str, Any]], region: str,
                    rows: Iterable[Mapping[str, Any]], group_vpc_id: str = "") -> list[str]:
    """Why the cluster cannot go into the subnets `wanted` (subnets: subnet_rows of them), one message each."""
    problems = []
    found = {s["subnet_id"] for s in subnets}
    missing = [i for i in wanted if i not in found]
    if missing:
        problems.append(f"subnet_ids {', '.join(missing)} {'does' if len(missing) == 1 else 'do'} not exist in "
                        f"{region}: give subnets of that region (aws ec2 describe-subnets)")
    vpcs = sorted({s["vpc_id"] for s in subnets})
    if len(vpcs) > 1:
        problems.append("subnet_ids are in different VPCs (" + "; ".join(
            f"{v}: {', '.join(s['subnet_id'] for s in subnets if s['vpc_id'] == v)}" for v in vpcs)
            + "): a cluster's machines share one security group, so give subnets of one VPC")
    elif vpcs and group_vpc_id and vpcs[0] != group_vpc_id:
        problems.append(f"subnet_ids are in {vpcs[0]}, but the cluster's security group is in {group_vpc_id}: "
                        "give subnets of the cluster's VPC (or terminate and clean up the cluster first)")
    unavailable = [s["subnet_id"] for s in subnets if s["state"] != "available"]
    if unavailable:
        problems.append(f"subnet_ids {', '.join(unavailable)} not available (still being created?): try again later")
    if subnets:
        outside = sorted({r.get("subnet_id") or "(none)" for r in rows if r.get("subnet_id") not in found})
        if outside:
            problems.append(
                f"the cluster has machines in {', '.join(outside)}, which subnet_ids does not name: launch does not move "
                "machines; add those subnets to subnet_ids, or scale or terminate the cluster first")
    return problems


def spread(rows: Iterable[Mapping[str, Any]], subnets: Sequence[Mapping[str, Any]], size: int) -> list[dict[str, Any]]:
    """How many machines each subnet should have for `size` machines: the live machines stay where they are, new
    ones go one by one to the subnet with the fewest (the earlier listed on a tie), so N machines over k subnets
    are round-robin. Never fewer than a subnet has now (launch and growth never remove machines).

    Returns [{subnet_id, availability_zone, count, new}], one per subnet, in the given order.
    """
    counts = {s["subnet_id"]: 0 for s in subnets}
    live = [r for r in rows if r.get("state", "running") in LIVE_STATES]
    for row in live:
        if row.get("subnet_id") in counts:
            counts[row["subnet_id"]] += 1
    new = {i: 0 for i in counts}
    order = list(counts)
    for dummy in range(max(size - len(live), 0)):
        target = min(order, key=lambda i: (counts[i] + new[i], order.index(i)))
        new[target] += 1
    return [{"subnet_id": s["subnet_id"], "availability_zone": s.get("availability_zone", ""),
             "count": counts[s["subnet_id"]] + new[s["subnet_id"]], "new": new[s["subnet_id"]]} for s in subnets]


def cluster_subnets(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The subnets a cluster's live machines are in (oldest machine's first), as spread() takes them."""
    seen: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (str(r.get("launch_time", "")), str(r.get("id", "")))):
        if row.get("state", "running") in LIVE_STATES and row.get("subnet_id") and row["subnet_id"] not in seen:
            seen[row["subnet_id"]] = {"subnet_id": row["subnet_id"], "availability_zone": row.get("availability_zone", "")}
    return list(seen.values())


def spread_removal(rows: Iterable[Mapping[str, Any]], removable: Sequence[Mapping[str, Any]], excess: int) -> list[str]:
    """Which `excess` of the `removable` machines (newest first) to remove so the spread stays even: each time
    from the subnet that has the most machines left, the newest removable machine there."""
    left: dict[str, int] = {}
    for row in rows:
        if row.get("state", "running") in LIVE_STATES:
            left[row.get("subnet_id") or ""] = left.get(row.get("subnet_id") or "", 0) + 1
    pool = list(removable)
    chosen: list[str] = []
    while pool and len(chosen) < excess:
        # The subnet with the most machines left among those with a removable machine; newest first within it.
        fullest = max(pool, key=lambda r: (left.get(r.get("subnet_id") or "", 0), -pool.index(r)))
        subnet = fullest.get("subnet_id") or ""
        pick = next(r for r in pool if (r.get("subnet_id") or "") == subnet)
        chosen.append(pick["id"])
        left[subnet] -= 1
        pool.remove(pick)
    return chosen
