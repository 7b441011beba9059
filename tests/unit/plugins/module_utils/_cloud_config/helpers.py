# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared by the _cloud_config tests: build from module-style parameters, pick units and drop-ins."""

from __future__ import annotations

import os

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.build import build_user_data
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.settings import settings_from_params


URL = "https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579"
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "..", "config", "cloud-config.example")
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "fixtures")
# The seed project's CoreOS cloud-config, with its format-xvdb.service (wipefs + mkfs.ext4 at every boot),
# and the same without that unit.
SEED = os.path.join(FIXTURES, "coreos-seed.cloud-config")
SEED_NOFORMAT = os.path.join(FIXTURES, "coreos-seed-noformat.cloud-config")

FLATCAR_UNITS = [
    "format-ebs.service", "media-ebs.mount", "etcd-member.service", "flanneld.service",
    "fleet-install.service", "fleet.socket", "fleet.service",
]
COREOS_UNITS = ["format-ebs.service", "media-ebs.mount", "etcd2.service", "flanneld.service", "fleet.service"]

V3 = {"discovery_url": None, "discovery_token": "cluster-7f3a", "discovery_endpoints": ["http://10.0.0.5:2379", "http://10.0.0.6:2379"]}


def settings(**params):
    params.setdefault("discovery_url", URL)
    return settings_from_params(params)


def build(base=None, source="base.yml", **params):
    return build_user_data(settings(**params), base, source)


def units_by_name(result):
    return {u["name"]: u for u in result.cloud_config["coreos"]["units"]}


def dropin(unit, name):
    key = "drop_ins" if "drop_ins" in unit else "drop-ins"
    return next(d["content"] for d in unit[key] if d["name"] == name)


def env_lines(text):
    return [line for line in text.splitlines() if line.startswith("Environment=")]


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()
