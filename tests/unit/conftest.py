"""Make `ansible_collections.coreos_ec2.cluster` importable when pytest runs from the checkout.

`tools/setup.sh` links this checkout into .build/collections/ansible_collections/coreos_ec2/cluster.
"""

import os
import sys

_COLLECTIONS = os.path.join(os.path.dirname(__file__), "..", "..", ".build", "collections")
if os.path.isdir(_COLLECTIONS) and os.path.abspath(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, os.path.abspath(_COLLECTIONS))

# The helpers shared by the tests (tests/support): `from support.etcd import EtcdServer`.
_TESTS = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
