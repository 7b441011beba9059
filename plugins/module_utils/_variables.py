# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Variables the user gave that no role reads: a typo such as cluster_sise must not launch a default cluster.

Ansible passes unknown extra variables through in silence, so `-e cluster_sise=1` would launch the default three
machines. The playbooks compare the extra variables with the options their roles document (meta/argument_specs.yml)
before anything happens: a name close to a known one is an error with a suggestion, any other unknown name a
warning (it may be meant for something else in the play).
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping

# Names that are never ours to judge: Ansible's own and connection settings.
_FOREIGN_PREFIXES = ("ansible_", "_ansible", "omit", "playbook_", "inventory_", "group_names", "groups", "hostvars")


def argument_spec_options(specs: Mapping[str, Any], entry_points: Iterable[str] | None = None) -> set[str]:
    """The option names of a role's argument specs (all entry points, or the ones named)."""
    names: set[str] = set()
    points = specs.get("argument_specs") or {}
    for point, spec in points.items():
        if entry_points is None or point in entry_points:
            names.update((spec or {}).get("options") or {})
    return names


def check_variables(given: Iterable[str], known: Iterable[str], cutoff: float = 0.8) -> tuple[list[str], list[str]]:
    """(errors, warnings) for the given variable names: unknown and close to a known name is an error."""
    known = sorted(set(known))
    errors, warnings = [], []
    for name in sorted(set(given)):
        if name in known or name.startswith(_FOREIGN_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=cutoff)
        if close:
            errors.append(f"unknown variable {name}: did you mean {close[0]}?")
        else:
            warnings.append(f"variable {name} is not read by this playbook (its roles do not document it); ignored")
    return errors, warnings
