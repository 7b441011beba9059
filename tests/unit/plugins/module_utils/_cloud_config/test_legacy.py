# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An existing CoreOS cloud-config as the base: volume wipes refused, etcd2/fleet translated for Flatcar,
the fresh discovery URL everywhere (legacy.py, through build_user_data)."""

from __future__ import annotations

import re

import pytest
import yaml

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.entries import (
    unit_names,
    validate_cloud_config,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cloud_config.user_data import (
    parse_cloud_config,
    validate_user_data,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._discovery.user_data import (
    find_discovery_in_user_data,
)
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError
from ansible_collections.coreos_ec2.cluster.tests.unit.plugins.module_utils._cloud_config.helpers import (
    COREOS_UNITS,
    FLATCAR_UNITS,
    SEED,
    SEED_NOFORMAT,
    URL,
    V3,
    build,
    dropin,
    env_lines,
    read,
    units_by_name,
)

PLACEHOLDER = "https://discovery.etcd.io/<token>"
OLD = "https://discovery.etcd.io/0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld0l"
SELF_HOSTED = "http://10.0.0.5:2379/v2/keys/_etcd/registry/0123456789abcdef"
METADATA = {"cluster": "p-1", "region": "eu-west-1", "role": "web"}


def seed_warnings(source, flavor):
    """What building the seed (without its format unit) warns, one line per key or unit."""
    base = f"from the base file {source}"
    if flavor == "coreos":
        return [
            f"coreos.etcd2.discovery {base} is replaced by the generated setting",
            f"coreos.etcd2.advertise-client-urls {base} is replaced by the generated setting",
            f"coreos.etcd2.listen-client-urls {base} is replaced by the generated setting",
            f"coreos.etcd2.listen-peer-urls {base} is replaced by the generated setting",
            f"coreos.fleet.metadata {base} is replaced by the generated setting",
            f"unit media-ebs.mount content {base} is replaced by the generated setting",
        ]
    etcd = "in etcd-member.service's drop-in 10-clct-coreos-etcd2.conf (Flatcar has no etcd2)"
    return [
        f"coreos.etcd2.discovery {base} is replaced by the generated setting (the cluster's fresh discovery setting)",
        f"coreos.etcd2.advertise-client-urls {base} is replaced by the generated setting (ETCD_ADVERTISE_CLIENT_URLS)",
        f"coreos.etcd2.initial-advertise-peer-urls {base} is replaced by the generated setting "
        "(ETCD_INITIAL_ADVERTISE_PEER_URLS)",
        f"coreos.etcd2.listen-client-urls {base} is replaced by the generated setting (ETCD_LISTEN_CLIENT_URLS)",
        f"coreos.etcd2.listen-peer-urls {base} is replaced by the generated setting (ETCD_LISTEN_PEER_URLS)",
        f"coreos.etcd2.heartbeat-interval {base} is translated to ETCD_HEARTBEAT_INTERVAL {etcd}",
        f"coreos.etcd2.election-timeout {base} is translated to ETCD_ELECTION_TIMEOUT {etcd}",
        f"coreos.fleet.public-ip {base} is replaced by the generated setting (FLEET_PUBLIC_IP)",
        f"coreos.fleet.metadata {base} is merged into the generated FLEET_METADATA of fleet.service "
        "(the generated keys win: role)",
        f"coreos.fleet.etcd_request_timeout {base} is translated to FLEET_ETCD_REQUEST_TIMEOUT in fleet.service's "
        "drop-in 10-clct-coreos-fleet.conf (Flatcar has no fleet)",
        f"unit etcd2.service {base} is dropped: Flatcar has no etcd2.service (the collection starts etcd-member.service)",
        f"unit fleet.service {base} is dropped: Flatcar has no fleet (the collection installs fleetd and starts its "
        "own fleet.service)",
        f"unit media-ebs.mount content {base} is replaced by the generated setting",
    ]


def unit_base(*units, extra=""):
    """A base cloud-config with the given units (each a YAML list item, indented by 4)."""
    return "#cloud-config\n" + extra + "coreos:\n  units:\n" + "".join(units)


def service(name, *lines, dropin_lines=None):
    text = f"    - name: {name}\n      command: start\n"
    if lines:
        text += "      content: |\n        [Service]\n        Type=oneshot\n" + "".join(f"        {line}\n" for line in lines)
    if dropin_lines:
        text += ("      drop-ins:\n        - name: 50-prepare.conf\n          content: |\n            [Service]\n"
                 + "".join(f"            {line}\n" for line in dropin_lines))
    return text


# ------------------------------------------------------------------------------------------
# The seed project's cloud-config
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flavor", ["flatcar", "coreos"])
def test_seed_is_refused_for_its_format_unit(flavor):
    with pytest.raises(ValidationError) as err:
        build(read(SEED), source="config/cloud-config.example", flavor=flavor, fleet_metadata=METADATA)
    msg = err.value.msg
    assert msg.startswith("config/cloud-config.example: a unit would wipe or format the data volume "
                          "(/dev/sdb, /dev/xvdb or its NVMe name) whenever it starts: ")
    assert ("unit format-xvdb.service, line 9: ExecStart=/usr/sbin/wipefs -f /dev/xvdb; "
            "unit format-xvdb.service, line 10: ExecStart=/usr/sbin/mkfs.ext4 /dev/xvdb.") in msg
    assert "The collection formats the volume once by itself" in msg
    assert "format-ebs.service gives it a filesystem (ext4) only when it has none" in msg
    assert "discovery.etcd.io" not in msg


def test_seed_line_numbers_are_those_of_the_unit():
    content = units_by_name_raw(read(SEED))["format-xvdb.service"]["content"].splitlines()
    assert content[8] == "ExecStart=/usr/sbin/wipefs -f /dev/xvdb"
    assert content[9] == "ExecStart=/usr/sbin/mkfs.ext4 /dev/xvdb"


def units_by_name_raw(text):
    return {u["name"]: u for u in yaml.safe_load(text)["coreos"]["units"]}


def test_seed_without_format_unit_is_translated_for_flatcar():
    result = build(read(SEED_NOFORMAT), source="seed.yml", fleet_metadata=METADATA)
    cfg = result.cloud_config
    units = units_by_name(result)

    # Nothing Flatcar lacks is left: no etcd2/fleet sections (coreos-cloudinit -validate's deprecated keys),
    # no etcd2.service, and fleet.service is the collection's.
    assert "etcd2" not in cfg["coreos"] and "fleet" not in cfg["coreos"]
    assert cfg["coreos"]["update"] == {"reboot-strategy": "etcd-lock"}
    assert unit_names(cfg) == FLATCAR_UNITS + ["app-dirs.service"]
    assert "ExecStart=/opt/bin/fleetd" in units["fleet.service"]["content"]

    # etcd2 settings without a generated counterpart go to etcd-member's drop-in; the generated ones stay.
    etcd = units["etcd-member.service"]
    assert [d["name"] for d in etcd["drop_ins"]] == ["20-clct-etcd-member.conf", "10-clct-coreos-etcd2.conf"]
    assert env_lines(dropin(etcd, "10-clct-coreos-etcd2.conf")) == [
        'Environment="ETCD_HEARTBEAT_INTERVAL=200"',
        'Environment="ETCD_ELECTION_TIMEOUT=2000"',
    ]
    generated = env_lines(dropin(etcd, "20-clct-etcd-member.conf"))
    assert 'Environment="ETCD_ADVERTISE_CLIENT_URLS=http://$private_ipv4:2379"' in generated
    assert 'Environment="ETCD_LISTEN_PEER_URLS=http://$private_ipv4:2380"' in generated
    assert f'Environment="ETCD_DISCOVERY={URL}"' in generated

    # fleet: the request timeout in a drop-in, the base's metadata merged (generated keys win).
    fleet = units["fleet.service"]
    assert env_lines(dropin(fleet, "10-clct-coreos-fleet.conf")) == ['Environment="FLEET_ETCD_REQUEST_TIMEOUT=3.0"']
    assert 'Environment="FLEET_METADATA=cluster=p-1,disk=ebs,region=eu-west-1,role=web"' in fleet["content"]
    assert 'Environment="FLEET_PUBLIC_IP=$private_ipv4"' in fleet["content"]

    # The mount is the collection's (by label, after format-ebs.service), not the seed's /dev/xvdb one.
    assert "What=/dev/disk/by-label/coreos-ebs" in units["media-ebs.mount"]["content"]

    assert result.warnings == seed_warnings("seed.yml", "flatcar")


@pytest.mark.parametrize("flavor", ["flatcar", "coreos"])
def test_seed_output_passes_validation_and_carries_the_fresh_token_only(flavor):
    result = build(read(SEED_NOFORMAT), source="seed.yml", flavor=flavor, fleet_metadata=METADATA)
    parsed = parse_cloud_config(result.user_data, "user data")
    validate_cloud_config(parsed)
    assert validate_user_data(result.user_data, parsed) == result.size
    assert "<token>" not in result.user_data and "discovery.etcd.io/<" not in result.user_data
    # What a re-run reads back from the running machines' user data: this URL and no other.
    assert find_discovery_in_user_data(result.user_data) == {"protocol": "v2", "url": URL}
    urls = re.findall(r"https?://discovery\.etcd\.io/[^\s\"']+", result.user_data)
    assert urls == [URL]
    assert not any("discovery.etcd.io" in w for w in result.warnings)


def test_seed_on_coreos_keeps_etcd2_and_fleet():
    result = build(read(SEED_NOFORMAT), source="seed.yml", flavor="coreos", fleet_metadata=METADATA)
    cfg = result.cloud_config
    assert unit_names(cfg) == COREOS_UNITS + ["app-dirs.service"]
    etcd2 = cfg["coreos"]["etcd2"]
    assert etcd2["discovery"] == URL
    assert etcd2["heartbeat-interval"] == 200 and etcd2["election-timeout"] == 2000
    assert etcd2["advertise-client-urls"] == "http://$private_ipv4:2379"
    assert cfg["coreos"]["fleet"] == {
        "etcd_request_timeout": 3.0, "metadata": "cluster=p-1,region=eu-west-1,role=web", "public-ip": "$private_ipv4",
    }
    assert units_by_name(result)["etcd2.service"] == {"name": "etcd2.service", "command": "start"}
    assert result.warnings == seed_warnings("seed.yml", "coreos")


# ------------------------------------------------------------------------------------------
# Units that would wipe the data volume
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "ExecStart=/usr/bin/dd if=/dev/zero of=/dev/nvme1n1 bs=1M count=10",
    "ExecStart=/usr/sbin/mkfs.xfs -f /dev/nvme1n1",
    "ExecStart=/usr/sbin/wipefs -a /dev/nvme1n1",
    "ExecStartPre=-/usr/sbin/wipefs --all --force /dev/sdb",
    "ExecStart=/usr/sbin/mkfs.ext4 -L data /dev/xvdb1",
    "ExecStart=/usr/sbin/mkfs -t btrfs /dev/xvdb",
    "ExecStart=/usr/sbin/mke2fs -t ext4 /dev/sdb",
    "ExecStart=/usr/sbin/mkswap /dev/disk/by-label/coreos-ebs",
    "ExecStart=/usr/sbin/blkdiscard /dev/nvme2n1",
    'ExecStart=/bin/sh -c "blkid /dev/xvdb || mkfs.ext4 /dev/xvdb"',
    "ExecStart=/bin/sh -c 'wipefs -f /dev/xvdb; mkfs.ext4 /dev/xvdb'",
    "ExecStartPost=/usr/bin/docker run --privileged debian mkfs.ext4 /dev/xvdb",
])
def test_wiping_lines_are_refused(line):
    with pytest.raises(ValidationError) as err:
        build(unit_base(service("prep.service", line)), source="base.yml")
    assert f"unit prep.service, line 3: {line}." in err.value.msg


@pytest.mark.parametrize("line", [
    "ExecStart=/usr/sbin/mkfs.ext4 /dev/xvdc",
    "ExecStart=/usr/sbin/wipefs -a /dev/sdc",
    "ExecStart=/usr/sbin/blkid /dev/xvdb",
    "ExecStart=/usr/bin/dd if=/dev/xvdb of=/dev/null bs=4096 count=1",
    "ExecStart=/usr/bin/mount /dev/xvdb /mnt",
    "ExecStart=/usr/sbin/mkfs.ext4 /dev/xvdba",
    "# ExecStart=/usr/sbin/wipefs -a /dev/xvdb",
    "Description=never run wipefs on /dev/xvdb",
])
def test_harmless_lines_are_kept(line):
    result = build(unit_base(service("other.service", line)))
    assert line in units_by_name(result)["other.service"]["content"]


def test_wipe_in_a_drop_in_and_across_continued_lines_names_each():
    base = unit_base(
        service("a.service", "ExecStart=/usr/sbin/mkfs.ext4 \\", "    /dev/xvdb"),
        service("docker.service", dropin_lines=["ExecStartPre=/usr/sbin/wipefs -a /dev/nvme1n1"]),
    )
    with pytest.raises(ValidationError) as err:
        build(base, source="base.yml")
    msg = err.value.msg
    assert msg.startswith("base.yml: units would wipe or format the data volume")
    assert "unit a.service, line 3: ExecStart=/usr/sbin/mkfs.ext4 /dev/xvdb;" in msg
    assert "unit docker.service drop-in 50-prepare.conf, line 2: ExecStartPre=/usr/sbin/wipefs -a /dev/nvme1n1." in msg
    assert "Remove those units" in msg


def test_wipe_follows_the_ebs_device_and_is_off_without_ebs():
    sdf = unit_base(service("prep.service", "ExecStart=/usr/sbin/mkfs.ext4 /dev/xvdf"))
    assert "prep.service" in unit_names(build(sdf).cloud_config)  # /dev/xvdf is not the volume by default
    with pytest.raises(ValidationError, match=r"\(/dev/sdf, /dev/xvdf or its NVMe name\)"):
        build(sdf, ebs={"device": "/dev/sdf"})
    xvdb = unit_base(service("prep.service", "ExecStart=/usr/sbin/mkfs.ext4 /dev/xvdb"))
    assert "prep.service" in unit_names(build(xvdb, ebs={"enabled": False}).cloud_config)


def test_wipe_in_the_units_option_is_refused():
    with pytest.raises(ValidationError, match=r"^units: a unit would wipe .* unit prep\.service, line 2: "):
        build(units=[{"name": "prep.service", "content": "[Service]\nExecStart=/usr/sbin/wipefs -a /dev/sdb\n"}])


# ------------------------------------------------------------------------------------------
# coreos.etcd2 and coreos.fleet on Flatcar
# ------------------------------------------------------------------------------------------

def test_etcd2_keys_in_either_spelling_renamed_dropped_and_escaped():
    base = (
        "#cloud-config\ncoreos:\n  etcd2:\n"
        "    snapshot_count: 5000\n"
        "    strict-reconfig-check: true\n"
        "    name: node-a\n"
        "    ca-file: /etc/ssl/etcd/ca.pem\n"
        "    initial-cluster: a=http://10.0.0.1:2380\n"
        "    data_dir: /var/lib/etcd2\n"
        "    cors: '\"*\" 100%'\n"
        "    discovery: https://discovery.etcd.io/<token>\n"
    )
    result = build(base, source="b.yml")
    etcd = units_by_name(result)["etcd-member.service"]
    assert env_lines(dropin(etcd, "10-clct-coreos-etcd2.conf")) == [
        'Environment="ETCD_SNAPSHOT_COUNT=5000"',
        'Environment="ETCD_STRICT_RECONFIG_CHECK=true"',
        'Environment="ETCD_TRUSTED_CA_FILE=/etc/ssl/etcd/ca.pem"',
        'Environment="ETCD_CLIENT_CERT_AUTH=true"',
        'Environment="ETCD_CORS=\\"*\\" 100%%"',
    ]
    assert 'Environment="ETCD_NAME=%m"' in dropin(etcd, "20-clct-etcd-member.conf")
    base_of = "from the base file b.yml"
    assert result.warnings == [
        f"coreos.etcd2.snapshot_count {base_of} is translated to ETCD_SNAPSHOT_COUNT in etcd-member.service's drop-in "
        "10-clct-coreos-etcd2.conf (Flatcar has no etcd2)",
        f"coreos.etcd2.strict-reconfig-check {base_of} is translated to ETCD_STRICT_RECONFIG_CHECK in "
        "etcd-member.service's drop-in 10-clct-coreos-etcd2.conf (Flatcar has no etcd2)",
        f"coreos.etcd2.name {base_of} is replaced by the generated setting (ETCD_NAME)",
        f"coreos.etcd2.ca-file {base_of} is translated to ETCD_TRUSTED_CA_FILE, ETCD_CLIENT_CERT_AUTH in "
        "etcd-member.service's drop-in 10-clct-coreos-etcd2.conf (Flatcar has no etcd2)",
        f"coreos.etcd2.initial-cluster {base_of} is dropped: etcd-member joins its cluster through the generated "
        "discovery setting",
        f"coreos.etcd2.data_dir {base_of} is dropped: etcd-member keeps its data in /var/lib/etcd, which Flatcar's "
        "etcd-wrapper mounts",
        f"coreos.etcd2.cors {base_of} is translated to ETCD_CORS in etcd-member.service's drop-in "
        "10-clct-coreos-etcd2.conf (Flatcar has no etcd2)",
        f"coreos.etcd2.discovery {base_of} is replaced by the generated setting (the cluster's fresh discovery setting)",
    ]


@pytest.mark.parametrize("text, message", [
    ("    heartbeat-interval: [1, 2]\n", "b.yml: coreos.etcd2.heartbeat-interval must be a string, a number or true/false"),
    ("    proxy: \"on\\nExecStart=/bin/sh\"\n", "b.yml: coreos.etcd2.proxy must be one line"),
    ("    'bad key': 1\n", "b.yml: coreos.etcd2: 'bad key' is not a key coreos-cloudinit knows"),
])
def test_etcd2_values_that_cannot_become_a_drop_in_line(text, message):
    with pytest.raises(ValidationError) as err:
        build("#cloud-config\ncoreos:\n  etcd2:\n" + text, source="b.yml")
    assert err.value.msg == message


def test_base_etcd_member_drop_ins_stay_beside_the_translation():
    base = (
        "#cloud-config\ncoreos:\n  etcd2:\n    election-timeout: 1200\n  units:\n"
        "    - name: etcd-member.service\n      drop-ins:\n        - name: 30-mine.conf\n"
        "          content: |\n            [Service]\n            Environment=\"ETCD_QUOTA_BACKEND_BYTES=1\"\n"
    )
    etcd = units_by_name(build(base))["etcd-member.service"]
    assert sorted(d["name"] for d in etcd["drop_ins"]) == [
        "10-clct-coreos-etcd2.conf", "20-clct-etcd-member.conf", "30-mine.conf",
    ]


def test_fleet_keys_translate_and_collide():
    base = (
        "#cloud-config\ncoreos:\n  fleet:\n    etcd-servers: http://10.0.0.9:2379\n    agent_ttl: 60s\n"
        "    verbosity: 2\n    metadata: 'role=db, disk=ssd'\n"
    )
    result = build(base, source="b.yml", fleet_metadata={"role": "web"})
    fleet = units_by_name(result)["fleet.service"]
    assert env_lines(dropin(fleet, "10-clct-coreos-fleet.conf")) == [
        'Environment="FLEET_AGENT_TTL=60s"', 'Environment="FLEET_VERBOSITY=2"',
    ]
    assert 'Environment="FLEET_ETCD_SERVERS=http://127.0.0.1:2379"' in fleet["content"]
    assert 'Environment="FLEET_METADATA=disk=ssd,role=web"' in fleet["content"]
    assert result.warnings[0] == ("coreos.fleet.etcd-servers from the base file b.yml is replaced by the generated "
                                  "setting (FLEET_ETCD_SERVERS)")
    assert len(result.warnings) == 4


def test_fleet_section_and_unit_dropped_when_fleet_is_off():
    base = "#cloud-config\ncoreos:\n  fleet:\n    public-ip: $private_ipv4\n  units:\n    - name: fleet.service\n      command: start\n"
    result = build(base, source="b.yml", fleet=False)
    assert "fleet.service" not in unit_names(result.cloud_config) and "fleet" not in result.cloud_config["coreos"]
    assert result.warnings == [
        "coreos.fleet.public-ip from the base file b.yml is dropped: fleet is off and Flatcar has no fleet",
        "unit fleet.service from the base file b.yml is dropped: Flatcar has no fleet, and fleet is off",
    ]


def test_bad_fleet_metadata_names_the_key():
    with pytest.raises(ValidationError, match=r"^b\.yml: coreos\.fleet\.metadata must be key=value pairs"):
        build("#cloud-config\ncoreos:\n  fleet:\n    metadata: justaword\n", source="b.yml")


def test_dropped_units_say_what_they_carried():
    base = unit_base(
        "    - name: etcd2.service\n      command: start\n      drop-ins:\n        - name: 50-x.conf\n"
        "          content: |\n            [Service]\n            Environment=ETCD_ELECTION_TIMEOUT=1200\n"
    )
    result = build(base, source="b.yml")
    assert "etcd2.service" not in unit_names(result.cloud_config)
    assert result.warnings == [
        "unit etcd2.service from the base file b.yml is dropped with its drop-ins: Flatcar has no etcd2.service "
        "(the collection starts etcd-member.service)",
    ]


# ------------------------------------------------------------------------------------------
# Discovery URLs outside coreos.etcd2
# ------------------------------------------------------------------------------------------

DISCOVERY_BASE = f"""#cloud-config
coreos:
  etcd:
    discovery: {OLD}
  units:
    - name: etcd2.service
      drop-ins:
        - name: 40-discovery.conf
          content: |
            [Service]
            Environment="ETCD_DISCOVERY={PLACEHOLDER}"
    - name: tool.service
      content: |
        [Service]
        ExecStart=/usr/bin/etcd --name x --discovery {SELF_HOSTED} --data-dir /tmp/x
write_files:
  - path: /etc/cluster.env
    content: |
      ETCD_DISCOVERY='{OLD}'
      DOCS=https://discovery.etcd.io/new?size=3
"""


@pytest.mark.parametrize("flavor", ["flatcar", "coreos"])
def test_every_discovery_url_becomes_the_fresh_one(flavor):
    result = build(DISCOVERY_BASE, source="b.yml", flavor=flavor)
    text = result.user_data
    for stale in (OLD, PLACEHOLDER, SELF_HOSTED):
        assert stale not in text
    assert f"--discovery {URL} --data-dir" in text
    assert f"ETCD_DISCOVERY='{URL}'" in text
    assert "DOCS=https://discovery.etcd.io/new?size=3" in text  # minting a token is not a token
    assert result.cloud_config["coreos"]["etcd"]["discovery"] == URL
    assert find_discovery_in_user_data(text) == {"protocol": "v2", "url": URL}
    replaced = [w for w in result.warnings if "fresh discovery URL" in w]
    expected = [
        "coreos.etcd.discovery from the base file b.yml is replaced by the cluster's fresh discovery URL",
        "the discovery URL in unit tool.service from the base file b.yml is replaced by the cluster's fresh discovery URL",
        "the discovery URL in write_files /etc/cluster.env from the base file b.yml is replaced by the cluster's fresh "
        "discovery URL",
    ]
    if flavor == "coreos":  # on Flatcar the whole etcd2.service entry goes
        expected.insert(1, "the discovery URL in unit etcd2.service drop-in 40-discovery.conf from the base file b.yml "
                           "is replaced by the cluster's fresh discovery URL")
    assert replaced == expected
    for warning in result.warnings:
        assert "0ld0ld" not in warning and "<token>" not in warning and "0123456789abcdef" not in warning


def test_discovery_url_in_the_units_option_is_replaced_too():
    result = build(units=[{"name": "x.service", "content": f"[Service]\nEnvironment=ETCD_DISCOVERY={OLD}\n"}])
    assert OLD not in result.user_data and f"ETCD_DISCOVERY={URL}" in units_by_name(result)["x.service"]["content"]


def test_v3_discovery_refuses_a_v2_url_but_drops_etcd2_discovery():
    params = dict(V3, fleet=False)
    result = build(f"#cloud-config\ncoreos:\n  etcd2:\n    discovery: {PLACEHOLDER}\n", **params)
    assert "etcd2" not in result.cloud_config["coreos"] and "<token>" not in result.user_data
    with pytest.raises(ValidationError) as err:
        build(DISCOVERY_BASE, source="b.yml", **params)
    assert err.value.msg.startswith("b.yml: coreos.etcd.discovery carries an etcd v2 discovery URL, but this cluster "
                                    "uses v3 discovery (discovery_token)")
    assert "0ld0ld" not in err.value.msg
