# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception family the collection's helpers raise.

Helpers never call fail_json themselves: they raise ClusterError with a message that names the object
and the cause, and the module's main() turns it into fail_json. This keeps module_utils free of
AnsibleModule and testable as plain functions.
"""

from __future__ import annotations


class ClusterError(Exception):
    """A failure with a message fit to show the user as it is."""

    def __init__(self, msg: str, **details: object) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


class ValidationError(ClusterError):
    """Bad input, found before anything was created."""
