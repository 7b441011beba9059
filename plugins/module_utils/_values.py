# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of option values that several areas share."""

from __future__ import annotations

import re
from typing import Any

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._errors import ValidationError


def whole_number(value: Any, option: str, what: str = "a whole number") -> int:
    """`value` as an int, else ValidationError("<option> must be <what>, got <value>").

    Digit strings are accepted because `-e` extra vars (`-e cluster_size=3`) arrive as strings; bool is an
    int in Python, but `true` is a mistake, not a number of one.
    """
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{option} must be {what}, got {value!r}")
    return value
