# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2 reads on the controller, for action plugins that need no module process (a module run costs ~0.6 s).

The connection options are the ones module_defaults group/coreos_ec2.cluster.ec2 (or aws) gives every AWS action of the
collection (endpoint_url, access_key, secret_key, session_token, profile, region); throttling and passing network
errors are retried by botocore's standard retry mode, with backoff.
"""

from __future__ import annotations

import gc
from typing import Any, Dict, List, Mapping

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict

# botocore alone: a boto3 session only wraps botocore's, and importing boto3 (with s3transfer) costs 0.05 s more.
try:
    import botocore
    import botocore.session
    from botocore.config import Config
except ImportError:  # reported when an action runs
    botocore = None

_RETRIES = {"mode": "standard", "max_attempts": 10}


def _parsed_models():
    """A botocore data loader holding the EC2 model, its endpoint rules and paginators, parsed; None without botocore.

    Ansible runs every task in a process forked from its main process, which imports this module when it loads an
    action plugin that needs EC2 (before the first such task). Parsed here, the models (about 0.3 s of JSON) are
    every later worker's for free; parsed in a worker, they are lost when the task ends. A client is made (and
    dropped) because that loads exactly what a client needs, whatever botocore's version; the loader caches it.
    """
    if botocore is None:
        return None
    try:
        session = botocore.session.Session()
        # Dummy credentials and a fixed region: nothing is sent, no credentials or region are looked up.
        client = session.create_client("ec2", region_name="us-east-1", aws_access_key_id="parse-only",
                                       aws_secret_access_key="parse-only", config=Config(retries=_RETRIES))
        client.get_paginator("describe_instances")
        loader = session.get_component("data_loader")
    except Exception:  # pylint: disable=broad-exception-caught
        # An unusable AWS configuration (e.g. AWS_PROFILE naming no profile) is reported by the action itself.
        return None
    # The parsed models are some hundred thousand objects that live as long as the process. Moved out of the
    # garbage collector's view (gc.freeze, meant for processes that fork without exec), no collection in this
    # process or in the forked workers walks them again, and the exit of ansible-playbook does not spend 0.3 s
    # collecting them.
    gc.freeze()
    return loader


_LOADER = _parsed_models()


def connection_argument_spec() -> Dict[str, Any]:
    return dict(
        endpoint_url=dict(type="str"),
        access_key=dict(type="str", no_log=True),
        secret_key=dict(type="str", no_log=True),
        session_token=dict(type="str", no_log=True),
        profile=dict(type="str"),
        region=dict(type="str", required=True),
    )


def ec2_client(args: Mapping[str, Any]):
    if botocore is None:
        raise AnsibleActionFail("this action needs boto3 on the controller (pip install boto3)")
    # A new session (profile, credentials and configuration as given) that reads the models parsed above.
    session = botocore.session.Session(profile=args.get("profile") or None)
    if _LOADER is not None:
        session.register_component("data_loader", _LOADER)
    return session.create_client(
        "ec2", region_name=args["region"], endpoint_url=args.get("endpoint_url") or None,
        aws_access_key_id=args.get("access_key") or None, aws_secret_access_key=args.get("secret_key") or None,
        aws_session_token=args.get("session_token") or None,
        config=Config(retries=_RETRIES),
    )


def describe_instances(client, filters: Mapping[str, Any], what: str) -> List[Dict[str, Any]]:
    """All instances matching the filters (a dict), in ec2_instance_info's snake_case shape."""
    boto_filters = [{"Name": k, "Values": v if isinstance(v, list) else [v]} for k, v in filters.items()]
    try:
        pages = client.get_paginator("describe_instances").paginate(Filters=boto_filters).build_full_result()
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise AnsibleActionFail(f"Failed to read {what}: {exc}") from None
    return [camel_dict_to_snake_dict(i) for r in pages.get("Reservations", []) for i in r.get("Instances", [])]
