# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cluster_wait: wait on the controller until a cluster's machines run, with a progress line per poll.

A module cannot print while it runs, and an `until` loop only says "retrying". This waits in the controller's
worker (no module process), polls with one DescribeInstances for all machines, and prints how many of N run.
"""

from __future__ import annotations

import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._cluster import instance_rows
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._instances import launch_progress, launch_wait_done
from ansible_collections.coreos_ec2.cluster.plugins.plugin_utils._ec2_controller import (
    connection_argument_spec,
    describe_instances,
    ec2_client,
)


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
            **connection_argument_spec(),
        ))
        client = ec2_client(args)
        started = time.monotonic()
        last_line = ""
        polls = 0
        while True:
            polls += 1
            raw = describe_instances(client, args["filters"], f"the machines of cluster {args['cluster_name']}")
            rows = instance_rows(raw)
            elapsed = time.monotonic() - started
            if launch_wait_done(rows, args["count"]):
                break
            line = launch_progress(args["cluster_name"], rows, args["count"], elapsed)
            if elapsed + args["delay"] > args["timeout"]:
                raise AnsibleActionFail(f"Timed out after {args['timeout']} s: {line}")
            if line.split(" after ", maxsplit=1)[0] != last_line or polls % 6 == 0:  # a change, or every half minute
                self._display.display(f"  waiting: {line}")
                last_line = line.split(" after ", maxsplit=1)[0]
            time.sleep(args["delay"])
        result.update(changed=False, instances=raw, rows=rows, polls=polls, seconds=round(elapsed, 1))
        return result
