"""What ships with the collection agrees with itself: the execution environment with the requirement files, the
system packages with tools/setup.sh, galaxy.yml with requirements.yml and the amazon.aws the tests run, the dynamic
inventories with the tag the collection sets.

The execution environment is checked offline with ansible-builder itself (requirements-dev.txt pins it): its build
context is created, and its introspection (what an image build runs to merge the collections' requirements with
ours) is run over the amazon.aws the tests use.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV_BIN = os.path.dirname(sys.executable)
AMAZON_AWS = os.path.join(ROOT, ".build", "collections", "ansible_collections", "amazon", "aws")


def read(name: str) -> str:
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def load(name: str):
    return yaml.safe_load(read(name))


def pins(name: str) -> dict[str, str]:
    """name (lower case) -> version of every `name==version` line of a requirements file; other lines fail."""
    result = {}
    for line in read(name).splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier  # exactly one specifier ...
        assert spec.operator == "==", f"{name}: {line} is not pinned with =="  # ... and a pin
        result[req.name.lower()] = spec.version
    return result


def amazon_aws_version() -> str:
    manifest = os.path.join(AMAZON_AWS, "MANIFEST.json")
    assert os.path.exists(manifest), f"{manifest} missing: run tools/setup.sh first"
    with open(manifest, encoding="utf-8") as f:
        return json.load(f)["collection_info"]["version"]


def ansible_builder() -> str:
    path = os.path.join(VENV_BIN, "ansible-builder")
    assert os.path.exists(path), "ansible-builder missing: tools/setup.sh dev installs requirements-dev.txt"
    return path


# The execution environment


def test_ee_takes_its_requirements_from_the_checkouts_files():
    ee = load("execution-environment.yml")
    assert ee["version"] == 3
    deps = ee["dependencies"]
    # The files themselves, not copies: nothing to keep in step by hand.
    assert (deps["python"], deps["galaxy"], deps["system"]) == ("requirements.txt", "requirements.yml", "bindep.txt")
    # The sandbox's emulator and the test tools are not part of it.
    assert "moto" not in read(deps["python"])


def test_ee_pins_the_same_ansible_core_and_python_as_a_checkout():
    ee = load("execution-environment.yml")["dependencies"]
    runtime = pins("requirements.txt")
    assert ee["ansible_core"]["package_pip"] == f"ansible-core=={runtime['ansible-core']}"
    runner = Requirement(ee["ansible_runner"]["package_pip"])
    assert runner.name == "ansible-runner" and [s.operator for s in runner.specifier] == ["=="]
    # tools/setup.sh makes the venv with python3.11 unless told otherwise; the image uses the same version.
    setup_python = re.search(r"PYTHON=\$\{PYTHON:-(python[\d.]+)\}", read("tools/setup.sh")).group(1)
    assert ee["python_interpreter"]["python_path"] == f"/usr/bin/{setup_python}"
    assert ee["python_interpreter"]["package_system"] == setup_python
    # Every requirement file the venv installs from is pinned (pins() fails on anything else).
    for name in ("requirements.txt", "requirements-sandbox.txt", "requirements-dev.txt"):
        assert pins(name)


def test_ansible_builder_creates_the_build_context_offline(tmp_path):
    context = tmp_path / "context"
    run = subprocess.run([ansible_builder(), "create", "-f", os.path.join(ROOT, "execution-environment.yml"),
                          "-c", str(context), "--output-filename", "Containerfile"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout
    containerfile = (context / "Containerfile").read_text()
    ee = load("execution-environment.yml")
    assert f'ARG EE_BASE_IMAGE="{ee["images"]["base_image"]["name"]}"' in containerfile
    refs = re.search(r'ARG ANSIBLE_INSTALL_REFS="([^"]*)"', containerfile).group(1).split()
    assert refs == [ee["dependencies"]["ansible_core"]["package_pip"], ee["dependencies"]["ansible_runner"]["package_pip"]]
    # The image installs exactly the checkout's requirement files.
    for name in ("requirements.txt", "requirements.yml", "bindep.txt"):
        assert (context / "_build" / name).read_text() == read(name), name
    assert "ansible-galaxy collection install" in containerfile and "-r requirements.yml" in containerfile


def test_image_requirements_merged_with_amazon_aws_agree_with_the_pins(tmp_path):
    """An image build merges every installed collection's Python requirements with ours (introspect.py, run here
    offline over the amazon.aws the tests use): each must be met by our pin, or pip would fail in the build."""
    import ansible_builder

    introspect = os.path.join(os.path.dirname(ansible_builder.__file__), "_target_scripts", "introspect.py")
    colls = tmp_path / "collections" / "ansible_collections" / "amazon"
    colls.mkdir(parents=True)
    amazon_aws_version()  # fails with the reason when setup has not run
    (colls / "aws").symlink_to(AMAZON_AWS)
    pip_out, bindep_out = tmp_path / "requirements.txt", tmp_path / "bindep.txt"
    run = subprocess.run([sys.executable, introspect, "introspect", "--user-pip", os.path.join(ROOT, "requirements.txt"),
                          "--user-bindep", os.path.join(ROOT, "bindep.txt"), "--write-pip", str(pip_out),
                          "--write-bindep", str(bindep_out), str(tmp_path / "collections")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout
    runtime = pins("requirements.txt")
    merged = [Requirement(line.split("#", 1)[0]) for line in pip_out.read_text().splitlines()
              if line.split("#", 1)[0].strip()]
    from_amazon_aws = [line for line in pip_out.read_text().splitlines() if "amazon.aws" in line]
    assert from_amazon_aws, pip_out.read_text()  # boto3 and botocore at least: the check below saw them
    for req in merged:
        assert req.name.lower() in runtime, f"{req} (merged into the image) has no pin in requirements.txt"
        assert req.specifier.contains(runtime[req.name.lower()], prereleases=True), \
            f"requirements.txt pins {req.name}=={runtime[req.name.lower()]}, the image also needs {req}"


# System packages


@functools.lru_cache(maxsize=1)
def bindep():
    from bindep.depends import Depends

    return Depends(read("bindep.txt"))  # bindep's own parser (about a second: its grammar is compiled each time)


def bindep_packages(*profiles: str) -> list[str]:
    return [rule[0] for rule in bindep().active_rules(list(profiles))]


def test_bindep_gives_the_image_only_the_ssh_client():
    assert bindep_packages("default", "platform:rpm", "platform:redhat", "platform:centos") == ["openssh-clients"]
    assert bindep_packages("default", "platform:dpkg", "platform:debian") == ["openssh-client"]


def test_bindep_and_setup_name_the_same_debian_packages():
    setup = read("tools/setup.sh")
    runtime = re.search(r"^apt_pkgs=\(([^)]*)\)", setup, re.M).group(1).split()
    dev = re.search(r'^\[ "\$profile" = dev \] && apt_pkgs\+=\(([^)]*)\)', setup, re.M).group(1).split()
    debian = ("platform:dpkg", "platform:debian")
    assert sorted(bindep_packages("default", "sandbox", *debian)) == sorted(runtime)
    assert sorted(bindep_packages("default", "sandbox", "test", *debian)) == sorted(runtime + dev)


# Galaxy


def test_galaxy_and_requirements_agree_on_amazon_aws_and_include_the_tested_version():
    from ansible.galaxy.dependency_resolution.versioning import meets_requirements

    galaxy_range = load("galaxy.yml")["dependencies"]["amazon.aws"]
    (entry,) = [c for c in load("requirements.yml")["collections"] if c["name"] == "amazon.aws"]
    assert entry["version"] == galaxy_range
    tested = amazon_aws_version()
    assert meets_requirements(tested, galaxy_range), f"amazon.aws {tested} (the tests') is outside {galaxy_range}"


def test_pinned_ansible_core_meets_requires_ansible():
    requires = load("meta/runtime.yml")["requires_ansible"]
    assert SpecifierSet(requires).contains(pins("requirements.txt")["ansible-core"])


def test_every_ec2_module_is_in_both_action_groups():
    # module_defaults group/coreos_ec2.cluster.ec2 is how the roles give every EC2 action of ours its connection;
    # group aws, for users, is the same plus amazon.aws's modules.
    groups = load("meta/runtime.yml")["action_groups"]
    public = [m for m in groups["aws"] if isinstance(m, str)]
    assert [m for m in groups["aws"] if not isinstance(m, str)] == [{"metadata": {"extend_group": ["amazon.aws.aws"]}}]
    assert groups["ec2"] == public
    modules = os.path.join(ROOT, "plugins", "modules")
    ec2 = {name[:-3] for name in os.listdir(modules) if name.endswith(".py")
           and "amazon.aws.common.modules" in read(os.path.join("plugins", "modules", name))}
    assert "cluster_group_rules" in ec2
    assert ec2 <= set(public), sorted(ec2 - set(public))


def test_roles_name_amazon_aws_modules_not_its_group():
    # Resolving amazon.aws's group (directly or through extend_group) costs every run that reads the block.
    for dirpath, dummy, files in os.walk(os.path.join(ROOT, "roles")):
        for name in files:
            if name.endswith(".yml"):
                text = read(os.path.relpath(os.path.join(dirpath, name), ROOT))
                assert "group/coreos_ec2.cluster.aws" not in text and "group/amazon.aws.aws" not in text, name


def test_build_ignore_keeps_what_users_need():
    ignore = load("galaxy.yml")["build_ignore"]
    for needed in ("plugins", "roles", "playbooks", "meta", "config", "docs", "README.md", "COPYING", "CHANGELOG.rst",
                   "requirements.txt", "requirements.yml", "bindep.txt", "execution-environment.yml"):
        assert not any(pattern == needed or needed.startswith(pattern.rstrip("/") + "/") for pattern in ignore), needed
    for harness in ("tests", "tools", "Makefile", "ansible.cfg", ".venv", ".build", ".sandbox", "changelogs/fragments"):
        assert harness in ignore, harness


# Dynamic inventories


@pytest.mark.parametrize("name", ["aws_ec2.yml", "sandbox.aws_ec2.yml"])
def test_inventories_group_by_the_tag_the_collection_sets(name):
    from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import CLUSTER_TAG_KEY

    inv = load(os.path.join("playbooks", "inventory", name))
    assert inv["plugin"] == "amazon.aws.aws_ec2"
    assert inv["filters"] == {"tag-key": CLUSTER_TAG_KEY, "instance-state-name": "running"}
    assert inv["hostnames"] == ["instance-id"]  # the names launch gives them in its in-memory group
    assert inv["keyed_groups"] == [{"key": f"{inv['hostvars_prefix']}tags['{CLUSTER_TAG_KEY}']", "prefix": "cluster"}]
    assert inv["compose"]["ansible_user"] == "'core'"
