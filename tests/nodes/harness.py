# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node harness is part of the collection now (the sandbox boots its instances with it):
roles/sandbox/files/sandbox_host/nodes.py. This module is that module, so `from nodes import harness`
and monkeypatching its attributes keep working in the tests."""

from __future__ import annotations

import sys
from pathlib import Path

_FILES = str(Path(__file__).resolve().parents[2] / "roles" / "sandbox" / "files")
if _FILES not in sys.path:
    sys.path.insert(0, _FILES)

from sandbox_host import nodes as _nodes  # noqa: E402  (needs the path above)

sys.modules[__name__] = _nodes
