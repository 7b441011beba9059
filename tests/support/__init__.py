# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers the tests and the benchmarks share (import with the `tests` directory on sys.path):

- sandbox: a private sandbox on free ports, ansible-playbook runs, EC2 and etcd look-ups;
- ec2_proxy: a counting, fault-injecting HTTP proxy in front of the EC2 emulator;
- etcd: real etcd processes (a discovery etcd, members joining through a token) with bounded waits;
- fleet_nodes: test nodes running the fleetctl double, for deployments.
"""
