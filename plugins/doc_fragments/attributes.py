# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The attributes every module of the collection shares (what each one means: ansible-core's
    # action_common_attributes). A module adds DIFF or INFO_MODULE for its diff mode and may describe its
    # own check and diff mode under attributes:, which wins over the fragments.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
    description: In check mode, returns what it would change without changing anything; reads as in a normal run.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller, or on the host the task is delegated to.
"""

    # Modules that change something.
    DIFF = r"""
attributes:
  diff_mode:
    support: full
    description: Returns the state before and after.
"""

    # Modules that only read: check mode reads as well, there is never a diff.
    INFO_MODULE = r"""
attributes:
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff.
"""
