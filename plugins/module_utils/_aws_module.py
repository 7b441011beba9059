# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The main() of the collection's EC2 modules whose work is a module_utils function.

Each of them runs on the controller as an action plugin (plugin_utils/_controller_action.py); the module is the
same work where a module is wanted (another controller, `ansible -m`). Both call `work(client, params[,
check_mode=...])`, which returns (result, warnings) or raises ClusterError with a message for the user.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError


def run_aws_module(argument_spec: Mapping[str, Any], work: Callable[..., tuple[dict[str, Any], list[str]]], *,
                   passes_check_mode: bool = True, failure_details: Iterable[str] = (), **module_options: Any) -> None:
    """Build the AnsibleAWSModule, run `work` with its EC2 client and exit (or fail) the module.

    `failure_details` names the ClusterError details that go into the failed result too (what a failure halfway
    changed); `module_options` are AnsibleAWSModule's (required_if, mutually_exclusive ...).
    """
    module = AnsibleAWSModule(argument_spec=dict(argument_spec), supports_check_mode=True, **module_options)
    client = module.client("ec2")
    kwargs = {"check_mode": module.check_mode} if passes_check_mode else {}
    try:
        result, warnings = work(client, module.params, **kwargs)
    except ClusterError as exc:
        wanted = set(failure_details)
        module.fail_json(msg=exc.msg, **{k: v for k, v in exc.details.items() if k in wanted})
    for warning in warnings:
        module.warn(warning)
    diff = result.pop("diff", None)
    if module._diff and diff is not None:  # pylint: disable=protected-access
        result["diff"] = diff
    module.exit_json(**result)
