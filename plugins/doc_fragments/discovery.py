# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # How the discovery modules reach the discovery service or etcd (plugins/module_utils/_discovery/http.py,
    # transport_argument_spec()). List it before coreos_ec2.cluster.attributes: the first fragment to
    # describe the platform wins.
    DOCUMENTATION = r"""
attributes:
  platform:
    support: N/A
    description: Runs on the host it is delegated to, usually the controller; needs network access to the service.
options:
  timeout:
    description: Seconds to wait for each HTTP request.
    type: float
    default: 10
  retries:
    description: How many times a request that failed transiently is tried again (0 tries once).
    type: int
    default: 5
  validate_certs:
    description: Whether to verify the TLS certificate of an https service or endpoint.
    type: bool
    default: true
notes:
  - Transient failures (connection errors, timeouts, HTTP 429, 500, 502, 503, 504) are retried with a capped,
    jittered exponential backoff that honours the service's C(Retry-After).
"""
