# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module's main(): what it returns, how it fails, and that its documentation matches its spec."""

from __future__ import annotations

import base64
import json
import os

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.coreos_ec2.cluster.plugins.modules import coreos_cloud_config as module

URL = "https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579"


def run_module(capsys, args, check_mode=False):
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        module.main()
    out = json.loads(capsys.readouterr().out)
    out["_rc"] = exit_info.value.code
    return out


def test_returns_user_data_and_never_changes(capsys):
    result = run_module(capsys, {"discovery_url": URL, "fleet_metadata": {"region": "us-east-1"}})
    assert result["_rc"] == 0 and result["changed"] is False
    assert result["user_data"].startswith("#cloud-config\n")
    assert f'Environment="ETCD_DISCOVERY={URL}"' in result["user_data"]
    assert result["size"] == len(result["user_data"].encode())
    assert base64.b64decode(result["user_data_b64"]).decode() == result["user_data"]
    assert yaml.safe_load(result["user_data"]) == result["cloud_config"]
    assert result["overrides"] == [] and "warnings" not in result


def test_check_mode_returns_the_same(capsys):
    args = {"discovery_url": URL, "flavor": "coreos", "hostname": "node-1"}
    normal = run_module(capsys, args)
    checked = run_module(capsys, args, check_mode=True)
    for key in ("user_data", "cloud_config", "size", "changed"):
        assert normal[key] == checked[key]


def test_src_with_overrides_warns(capsys, tmp_path):
    base = tmp_path / "base.yml"
    base.write_text("#cloud-config\nhostname: old\n")
    result = run_module(capsys, {"discovery_url": URL, "src": str(base), "hostname": "new"})
    assert result["cloud_config"]["hostname"] == "new"
    message = f"hostname from the base file {base} is replaced by the generated setting"
    assert result["overrides"] == [message]
    # ansible-core 2.19 ships warnings from the module as WarningSummary objects; older ones as text.
    warnings = [w["event"]["msg"] if isinstance(w, dict) else w for w in result["warnings"]]
    assert warnings == [message]


@pytest.mark.parametrize(
    "args, message",
    [
        ({}, "one of the following is required: discovery_url, discovery_token"),
        ({"discovery_url": URL, "discovery_token": "tok-0123456789", "discovery_endpoints": ["http://a:2379"]}, "mutually exclusive"),
        ({"discovery_token": "tok-0123456789"}, "parameters are required together"),
        ({"discovery_url": URL, "src": "/x", "content": "#cloud-config\n"}, "mutually exclusive: src|content"),
        ({"discovery_url": URL, "src": "/nonexistent/cloud-config"}, "Cannot read the base cloud-config /nonexistent/cloud-config"),
        ({"discovery_url": URL, "content": "#cloud-config\nfoo: [\n"}, "content: invalid YAML at line 3"),
        ({"discovery_url": URL, "flannel_network": "10.1.0.0"}, "flannel_network"),
        ({"discovery_token": "tok-0123456789", "discovery_endpoints": ["http://a:2379"]}, "fleet needs etcd's v2 API"),
        ({"discovery_url": URL, "units": [{"name": "x.service", "command": "launch"}]}, "value of command must be one of"),
    ],
)
def test_failures(capsys, args, message):
    result = run_module(capsys, args)
    assert result["_rc"] == 1 and result["failed"] is True
    assert message in result["msg"]


def test_malformed_src_names_file_and_line(capsys, tmp_path):
    base = tmp_path / "mine.yml"
    base.write_text("#cloud-config\ncoreos:\n  units:\n  - name: a.service\n   command: start\n")
    result = run_module(capsys, {"discovery_url": URL, "src": str(base)})
    assert result["failed"] is True
    assert result["msg"].startswith(f"{base}: invalid YAML at line 5")


def test_discovery_token_is_masked_in_text_but_exact_in_b64(capsys):
    token = "secret-token-4711"
    result = run_module(capsys, {"discovery_token": token, "discovery_endpoints": ["http://10.0.0.5:2379"], "fleet": False})
    assert token not in json.dumps(result["cloud_config"]) and token not in result["user_data"]
    assert f'Environment="ETCD_DISCOVERY_TOKEN={token}"' in base64.b64decode(result["user_data_b64"]).decode()


# ------------------------------------------------------------------------------------------
# DOCUMENTATION against the argument spec (what validate-modules checks, caught earlier)
# ------------------------------------------------------------------------------------------

def _compare(doc_options, spec, path=""):
    assert set(doc_options) == set(spec), path
    for name, doc in doc_options.items():
        arg = spec[name]
        where = f"{path}{name}"
        assert doc.get("type", "str") == arg.get("type", "str"), where
        assert doc.get("elements") == arg.get("elements"), where
        assert doc.get("choices") == arg.get("choices"), where
        assert bool(doc.get("required", False)) == bool(arg.get("required", False)), where
        assert doc.get("default") == arg.get("default"), where
        assert doc.get("description"), where
        if "options" in arg or "suboptions" in doc:
            _compare(doc["suboptions"], arg["options"], where + ".")


def test_documentation_matches_argument_spec():
    doc = yaml.safe_load(module.DOCUMENTATION)
    _compare(doc["options"], module.argument_spec())
    returns = yaml.safe_load(module.RETURN)
    assert set(returns) == {"user_data", "user_data_b64", "cloud_config", "size", "overrides"}
    yaml.safe_load(module.EXAMPLES)


def test_secrets_and_keys_are_declared_for_no_log():
    spec = module.argument_spec()
    assert spec["discovery_token"]["no_log"] is True
    assert spec["ssh_authorized_keys"]["no_log"] is False


# ------------------------------------------------------------------------------------------
# The seed project's CoreOS cloud-config as src (tests/fixtures)
# ------------------------------------------------------------------------------------------

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "fixtures")


def test_seed_cloud_config_fails_on_its_format_unit(capsys):
    src = os.path.join(FIXTURES, "coreos-seed.cloud-config")
    result = run_module(capsys, {"discovery_url": URL, "src": src})
    assert result["_rc"] == 1 and result["failed"] is True
    assert result["msg"].startswith(f"{src}: a unit would wipe or format the data volume")
    assert "unit format-xvdb.service, line 9: ExecStart=/usr/sbin/wipefs -f /dev/xvdb" in result["msg"]
    assert "The collection formats the volume once by itself" in result["msg"]


def test_seed_cloud_config_without_format_unit_is_translated_with_warnings(capsys):
    src = os.path.join(FIXTURES, "coreos-seed-noformat.cloud-config")
    result = run_module(capsys, {"discovery_url": URL, "src": src})
    assert result["_rc"] == 0
    assert "etcd2" not in result["cloud_config"]["coreos"] and "fleet" not in result["cloud_config"]["coreos"]
    assert "<token>" not in result["user_data"]
    # (ansible-core keeps the warnings of earlier module runs in this process too.)
    warnings = [w["event"]["msg"] if isinstance(w, dict) else w for w in result["warnings"]]
    assert set(result["overrides"]) <= set(warnings) and len(result["overrides"]) == 13
    assert f"unit etcd2.service from the base file {src} is dropped: Flatcar has no etcd2.service " \
           "(the collection starts etcd-member.service)" in result["overrides"]
