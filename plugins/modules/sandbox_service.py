#!/usr/bin/python
# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sandbox_service
short_description: Run a local daemon of the sandbox with a pid file, a log file and a health check
version_added: 0.1.0
description:
  - Starts a daemon (the EC2 API emulator or the discovery etcd of the local sandbox) detached from Ansible,
    records its pid in C(<state_dir>/<name>.pid) and its output in C(<state_dir>/<name>.log), and waits until it
    answers on O(health_url).
  - Runs on the controller (an action plugin; the sandbox is the controller's own), with no module process.
  - Idempotent. A daemon that already answers on O(health_url) is left alone. Stopping kills only the process
    the pid file names, and only while that process still runs O(command), so a recycled pid is never killed.
author:
  - coreos_ec2.cluster maintainers (@coreos-ec2)
extends_documentation_fragment: [coreos_ec2.cluster.attributes, coreos_ec2.cluster.attributes.diff]
attributes:
  check_mode:
    description: Reports whether the daemon would be started or stopped without doing it.
  diff_mode:
    description: Shows the daemon's state before and after.
options:
  name:
    description: Name of the daemon; names its pid and log files.
    type: str
    required: true
  command:
    description: The command line that starts the daemon in the foreground.
    type: list
    elements: str
    required: true
  state:
    description: Whether the daemon should run.
    type: str
    choices: [started, stopped]
    default: started
  state_dir:
    description: Directory for the pid and log files; created with mode 0700.
    type: path
    required: true
  health_url:
    description: URL that answers HTTP 2xx once the daemon is ready.
    type: str
    required: true
  env:
    description: Extra environment variables for the daemon.
    type: dict
    default: {}
  wait_timeout:
    description: Seconds to wait for O(health_url) to answer after a start.
    type: int
    default: 30
  identity:
    description:
      - The leading arguments that identify this daemon whatever its settings (e.g. the interpreter and module).
      - The process named by the pid file counts as this daemon when its command line is O(command) or starts with
        these; one running with other settings is restarted with O(command) (V(started)) or stopped (V(stopped)).
        Without it only an identical command line counts, so a recycled pid is never touched.
    type: list
    elements: str
    default: []
  files:
    description:
      - Files the daemon reads when it starts, as destination path to source path; copied (mode 0600, only when
        their content differs) right before a start, and left alone while the daemon runs.
    type: dict
    default: {}
  check:
    description:
      - A command line that must succeed right before a start (with O(env)); its error output is the failure
        message. Not run while the daemon runs, whose start passed it.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Run the discovery etcd of the sandbox
  coreos_ec2.cluster.sandbox_service:
    name: etcd
    command: [/usr/bin/etcd, --enable-v2, --data-dir, /var/tmp/sandbox/etcd]
    state_dir: /var/tmp/sandbox
    health_url: http://127.0.0.1:2379/version
"""

RETURN = r"""
pid:
  description: Pid of the daemon this module manages, or null when it was stopped or is not managed here.
  returned: always
  type: int
  sample: 4242
managed:
  description: Whether the running daemon was started by this module (a daemon somebody else started on the same port is used but never stopped).
  returned: always
  type: bool
  sample: true
log_file:
  description: Path of the daemon's log file.
  returned: always
  type: str
  sample: /var/tmp/sandbox/etcd.log
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.coreos_ec2.cluster.plugins.module_utils import _sandbox
from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ClusterError


def main() -> None:
    module = AnsibleModule(argument_spec=_sandbox.service_argument_spec(), supports_check_mode=True)
    try:
        result, dummy = _sandbox.run_service(module.params, check_mode=module.check_mode)
    except ClusterError as exc:
        module.fail_json(msg=exc.msg)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
