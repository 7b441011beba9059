# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_wait: wait on the controller until a cluster's machines run, with a progress line per poll.

A module cannot print while it runs, and an `until` loop only says "retrying". This waits in the controller's
worker (no module process), polls with one DescribeInstances for all machines, and prints how many of N run.
"""

from __future__ import annotations

import time

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible.plugins.action import ActionBase

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import instance_rows
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._instances import launch_progress, launch_wait_done

try:
    import boto3
    import botocore
    from botocore.config import Config
except ImportError:  # reported when the action runs
    boto3 = None


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        dummy, args = self.validate_argument_spec(argument_spec=dict(
            cluster_name=dict(type="str", required=True),
            filters=dict(type="dict", required=True),
            count=dict(type="int", required=True),
            timeout=dict(type="int", default=600),
            delay=dict(type="float", default=5),
            endpoint_url=dict(type="str"),
            access_key=dict(type="str", no_log=True),
            secret_key=dict(type="str", no_log=True),
            session_token=dict(type="str", no_log=True),
            profile=dict(type="str"),
            region=dict(type="str", required=True),
        ))
        if boto3 is None:
            raise AnsibleActionFail("cluster_wait needs boto3 on the controller (pip install boto3)")
        session = boto3.session.Session(profile_name=args["profile"] or None)
        client = session.client(
            "ec2", region_name=args["region"], endpoint_url=args["endpoint_url"] or None,
            aws_access_key_id=args["access_key"] or None, aws_secret_access_key=args["secret_key"] or None,
            aws_session_token=args["session_token"] or None,
            # Throttling and passing network errors are retried by botocore itself, with backoff.
            config=Config(retries={"mode": "standard", "max_attempts": 10}),
        )
        filters = [{"Name": k, "Values": v if isinstance(v, list) else [v]} for k, v in args["filters"].items()]
        started = time.monotonic()
        last_line = ""
        polls = 0
        while True:
            polls += 1
            try:
                pages = client.get_paginator("describe_instances").paginate(Filters=filters).build_full_result()
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                raise AnsibleActionFail(f"Failed to read the machines of cluster {args['cluster_name']}: {exc}") from None
            raw = [camel_dict_to_snake_dict(i) for r in pages.get("Reservations", []) for i in r.get("Instances", [])]
            rows = instance_rows(raw)
            elapsed = time.monotonic() - started
            if launch_wait_done(rows, args["count"]):
                break
            line = launch_progress(args["cluster_name"], rows, args["count"], elapsed)
            if elapsed + args["delay"] > args["timeout"]:
                raise AnsibleActionFail(f"Timed out after {args['timeout']} s: {line}")
            if line.split(" after ")[0] != last_line or polls % 6 == 0:  # a change, or every half minute
                self._display.display(f"  waiting: {line}")
                last_line = line.split(" after ")[0]
            time.sleep(args["delay"])
        result.update(changed=False, instances=raw, rows=rows, polls=polls, seconds=round(elapsed, 1))
        return result
