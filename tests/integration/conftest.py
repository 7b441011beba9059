"""Integration tests: the `integration` marker, and imports of the collection and of the helpers here.

`tools/setup.sh` links this checkout into .build/collections/ansible_collections/coreos_ec2/cluster;
helpers such as etcd_procs.py sit beside the tests and are imported by their plain names.
"""

import os
import sys

_HERE = os.path.abspath(os.path.dirname(__file__))
_COLLECTIONS = os.path.abspath(os.path.join(_HERE, "..", "..", ".build", "collections"))
for _path in (_COLLECTIONS, _HERE):
    if os.path.isdir(_path) and _path not in sys.path:
        sys.path.insert(0, _path)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "integration: starts real processes (etcd, moto, ansible-playbook) on loopback; slower"
    )


# One private sandbox for the whole session, shared by every test module that asks for it.
from harness import sandbox  # noqa: E402,F401
