# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sandbox's EC2 API: moto's server, with three settings AWS has and moto lacks.

    python -m sandbox_host.ec2_emulator -H 127.0.0.1 -p PORT      (moto.server's own options)

1. The default VPC's address range (COREOS_EC2_SANDBOX_NETWORK, e.g. 10.131.0.0/16; moto fixes it at
   172.31.0.0/16, the range real hosts on AWS sit in). Instances get their private IPs from it, and the
   sandbox host puts each instance's node at that address on its bridge.
2. An instance launched without a subnet goes into the default subnet of its zone, as on AWS; moto gives it
   a random 10.x.x.x address outside every subnet instead ("EC2-Classic"), which no node could hold.
3. RunInstances with a launch template applies the template's market options (spot), as AWS does; moto applies
   them only when the request itself carries them.

And one change of speed, not of behaviour: moto finds a resource's own tags by scanning every tag in the region
(TagBackend.describe_tags with a resource-id filter), once per resource it describes, so describing 100 machines
took seconds once a few hundred machines, volumes and interfaces carried tags. A lookup of one literal id reads
that resource's tags directly, with the same answer.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any

NETWORK_ENV = "COREOS_EC2_SANDBOX_NETWORK"


def patch_moto(network: str | None) -> None:
    """Apply these settings to moto's EC2 backend classes (before the server creates any backend)."""
    from moto.ec2.models.instances import InstanceBackend  # pylint: disable=import-outside-toplevel
    from moto.ec2.models.vpcs import VPCBackend  # pylint: disable=import-outside-toplevel

    if network:
        cidr = str(ipaddress.ip_network(network))
        original_create_vpc = VPCBackend.create_vpc

        def create_default_vpc(self: Any) -> Any:
            # Same steps as moto's own create_default_vpc, with our range instead of 172.31.0.0/16.
            if self.describe_vpcs(filters={"is-default": ["true"]}):
                return original_create_default_vpc(self)  # raises DefaultVpcAlreadyExists, as moto does
            vpc = original_create_vpc(self, cidr_block=cidr, is_default=True)
            for zone in self.describe_availability_zones():
                self.create_default_subnet(zone.name)
            return vpc

        original_create_default_vpc = VPCBackend.create_default_vpc
        VPCBackend.create_default_vpc = create_default_vpc  # type: ignore[method-assign]

    from moto.ec2.models.subnets import SubnetBackend  # pylint: disable=import-outside-toplevel

    original_create_default_subnet = SubnetBackend.create_default_subnet

    def create_default_subnet(self: Any, availability_zone: str) -> Any:
        # moto cuts one /20 per zone, which a /24 range has none of and a /18 too few for six zones: cut as many
        # equal blocks as the region has zones (/20 where the range allows, as AWS's default subnets are).
        vpc = self.get_default_vpc()
        existing = self.get_default_subnets()
        if vpc is None or availability_zone in existing:
            return original_create_default_subnet(self, availability_zone)  # moto's own errors
        net = ipaddress.ip_network(vpc.cidr_block)
        zones = len(self.describe_availability_zones())
        prefix = max(20, net.prefixlen + max(1, (zones - 1).bit_length()))
        blocks = list(net.subnets(new_prefix=prefix))
        return self.create_subnet(vpc_id=vpc.id, cidr_block=str(blocks[len(existing)]),
                                  availability_zone=availability_zone)

    SubnetBackend.create_default_subnet = create_default_subnet  # type: ignore[method-assign]

    original_run_instances = InstanceBackend.run_instances

    def run_instances(self: Any, image_id: str, count: int, user_data: Any, security_group_names: list[str],
                      **kwargs: Any) -> Any:
        nics = kwargs.get("nics") or {}
        nic_subnet = any("SubnetId" in nic for nic in (nics.values() if isinstance(nics, dict) else nics))
        template = self._get_template_from_args(kwargs["launch_template"]).data if kwargs.get("launch_template") else {}
        template_nics = template.get("NetworkInterfaces") or []
        nic_subnet = nic_subnet or any("SubnetId" in nic for nic in template_nics)
        # 3. A launch template's market options apply as on AWS (moto reads them only from the request itself).
        market = (template.get("InstanceMarketOptions") or {}).get("MarketType")
        if market and not kwargs.get("instance_market_options"):
            kwargs["instance_market_options"] = market
        if not kwargs.get("subnet_id") and not nic_subnet:
            subnets = self.get_default_subnets()
            zone = kwargs.get("placement") or (sorted(subnets)[0] if subnets else None)
            if zone in subnets:
                kwargs["subnet_id"] = subnets[zone].id
        return original_run_instances(self, image_id, count, user_data, security_group_names, **kwargs)

    InstanceBackend.run_instances = run_instances  # type: ignore[method-assign]

    from moto.ec2.models.tags import TagBackend  # pylint: disable=import-outside-toplevel
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix  # pylint: disable=import-outside-toplevel

    original_describe_tags = TagBackend.describe_tags

    def describe_tags(self: Any, filters: dict[str, list[str]] | None = None) -> list[dict[str, str]]:
        ids = (filters or {}).get("resource-id") or []
        if filters is None or set(filters) != {"resource-id"} or len(ids) != 1 or any(c in ids[0] for c in "*?[\\"):
            return original_describe_tags(self, filters)
        # moto's own answer for one literal id, without the scan of every other resource's tags.
        resource_id = ids[0]
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        return [{"resource_id": resource_id, "key": key, "value": value, "resource_type": kind}
                for key, value in self.tags.get(resource_id, {}).copy().items()]

    TagBackend.describe_tags = describe_tags  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    patch_moto(os.environ.get(NETWORK_ENV) or None)
    from moto.server import main as moto_main  # pylint: disable=import-outside-toplevel

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
