# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""python -m sandbox_host: the sandbox host process (see host.py)."""

from __future__ import annotations

import sys

from sandbox_host.host import main

sys.exit(main())
