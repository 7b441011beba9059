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


# botocore's errors, read without importing botocore (module_utils also run where it is missing or not yet loaded).
def is_botocore_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("botocore")


def aws_error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError (DependencyViolation, ...); '' for any other exception."""
    return str(((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code") or "")


def aws_error_text(exc: BaseException) -> str:
    """'Code: Message' of a botocore ClientError, else the exception's own text."""
    error = (getattr(exc, "response", None) or {}).get("Error") or {}
    return f"{error.get('Code')}: {error.get('Message')}" if error.get("Code") else str(exc)
