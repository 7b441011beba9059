# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # How the fleet actions reach fleetctl on a cluster machine (plugins/module_utils/_fleet/spec.py).
    # List it before coreos_ec2.cluster.attributes: the first fragment to describe the platform wins.
    DOCUMENTATION = r"""
attributes:
  platform:
    description: Needs C(sh) and C(fleetctl) on the machine, and no Python.
options:
  fleetctl:
    description:
      - The fleetctl command on the machine. Looked up in the machine's PATH and then in C(/opt/bin), where the
        cluster's cloud-config installs it on Flatcar.
    type: str
    default: fleetctl
  fleetctl_flags:
    description:
      - "fleetctl's global flags, without dashes, for example C({endpoint: 'http://10.0.0.5:2379', driver: etcd,
        request-timeout: 10}) to reach fleet's registry through the etcd at C(10.0.0.5)."
      - Without them fleetctl talks to the local fleetd on C(unix:///var/run/fleet.sock), through the fleet API.
      - "fleetctl 1.0 speaks the fleet API to its endpoint unless C(driver: etcd) is given, and etcd answers that
        with HTTP 404. So an C(http://) or C(https://) endpoint (here or as C(FLEETCTL_ENDPOINT)) with no driver
        given (neither C(driver) here nor C(FLEETCTL_DRIVER)) gets C(--driver=etcd); give C(driver: API) for a fleet
        API served over http(s)."
    type: dict
  fleetctl_env:
    description:
      - "C(FLEETCTL_*) environment variables for fleetctl, which reads them for every flag not given on its command
        line, for example C({FLEETCTL_ENDPOINT: 'http://10.0.0.5:2379', FLEETCTL_DRIVER: etcd})."
      - An endpoint given in O(fleetctl_flags) wins over C(FLEETCTL_ENDPOINT); give the driver next to the endpoint
        that is used.
    type: dict
notes:
  - Needs no Python on the machine; runs C(fleetctl) with the task's own connection (SSH to a machine of the
    cluster as C(core), the inventory's user, key and jump host settings apply).
"""
