"""The EC2 client of the controller-side actions: made from the models parsed once in Ansible's main process."""

from __future__ import annotations

import importlib

import botocore.exceptions
import pytest


@pytest.fixture(name="ec2_controller")
def fixture_ec2_controller():
    # Imported when the tests run, not when pytest collects them: the module imports Ansible's controller side
    # (ansible.errors), after which AnsibleModule no longer returns its warnings, which module tests read.
    return importlib.import_module("ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._ec2_controller")


def _args(**extra):
    args = {"region": "eu-west-1", "endpoint_url": None, "access_key": "a", "secret_key": "b", "session_token": None,
            "profile": None}
    args.update(extra)
    return args


def test_the_models_are_parsed_when_the_module_is_imported(ec2_controller):
    loader = ec2_controller._LOADER
    assert loader is not None
    # botocore's loader caches what it parsed: the EC2 model is in it before any client is made.
    assert any(key[0] == "load_service_model" and "ec2" in key[1:] for key in loader._cache)


def test_a_client_reads_no_botocore_file_after_the_preload(ec2_controller, monkeypatch):
    """What the main process parsed is all a worker's client and paginator need: none of them opens a file."""

    class NoFiles:
        def exists(self, path):
            raise AssertionError(f"botocore looked for {path}")

        def load_file(self, path):
            raise AssertionError(f"botocore read {path}")

    monkeypatch.setattr(ec2_controller._LOADER, "file_loader", NoFiles())
    for region in ("eu-west-1", "us-east-1", "cn-north-1"):
        client = ec2_controller.ec2_client(_args(region=region))
        client.get_paginator("describe_instances")
        assert region in client.meta.endpoint_url


@pytest.mark.parametrize("endpoint_url, expected", [
    (None, "https://ec2.eu-west-1.amazonaws.com"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
])
def test_each_client_has_its_own_region_endpoint_and_credentials_and_shares_the_models(
        ec2_controller, endpoint_url, expected):
    client = ec2_controller.ec2_client(_args(endpoint_url=endpoint_url, access_key="key-" + str(endpoint_url)))
    assert client.meta.endpoint_url == expected
    assert client.meta.region_name == "eu-west-1"
    assert client._request_signer._credentials.access_key == "key-" + str(endpoint_url)
    assert client._loader is ec2_controller._LOADER
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 11}  # 10 retries


def test_an_unknown_profile_is_refused_as_before(ec2_controller):
    with pytest.raises(botocore.exceptions.ProfileNotFound):
        ec2_controller.ec2_client(_args(profile="no-such-profile-here"))
