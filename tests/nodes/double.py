"""Where the fleetctl test double lives, and the executable a test node gets from it.

The file in the repository carries no interpreter line (the collection's sanity rules allow only a fixed set
of them); a node runs it as /opt/bin/fleetctl with the node's /usr/bin/python3.
"""

from __future__ import annotations

from pathlib import Path

DOUBLE = Path(__file__).resolve().parents[2] / "roles" / "sandbox" / "files" / "node-image" / "opt" / "bin" / "fleetctl.py"
NODE_PATH = "/opt/bin/fleetctl"


def fleetctl_script() -> str:
    """The double as an executable script for a node (mode 0755 at NODE_PATH)."""
    return "#!/usr/bin/python3\n" + DOUBLE.read_text()
