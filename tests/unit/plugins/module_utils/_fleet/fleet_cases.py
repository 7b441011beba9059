# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit texts, list-unit-files rows and plan helpers that several of the _fleet tests share."""

from __future__ import annotations

import hashlib

from ansible_collections.coreos_ec2.cluster.plugins.module_utils._fleet.unit import unit_hash

SLEEP = "[Service]\nExecStart=/bin/sleep 100\n"
SLEEP_HASH = "1c6fb6f3684bafb0c173d8b8b957ceff031180c1"  # fleet unit/unit_test.go TestUnitHash
WEB = "[Unit]\nDescription=Web %i\n\n[Service]\nExecStart=/usr/bin/docker run --rm --name web-%i nginx\n"
WEB2 = WEB.replace("nginx", "nginx:1.25")
DB = "[Service]\nExecStart=/usr/bin/db\n\n[X-Fleet]\nMachineMetadata=role=db\n"
MACHINE = "113f16a7e1d24ff6b8c0a7f1e2f3a4b5"


def sha1(text):
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def row(unit, content, dstate="launched", state="same", target=None):
    """A list-unit-files row as parse_list_unit_files returns it; the current state follows dstate by default."""
    if state == "same":
        state = "inactive" if dstate == "inactive" else dstate
    return {"unit": unit, "hash": unit_hash(content), "dstate": dstate, "state": state,
            "target": target, "target_ip": None, "global": False}


def web_rows(*numbers, content=WEB, dstate="launched", template=True):
    rows = [row("web@.service", content, "inactive")] if template else []
    return rows + [row(f"web@{n}.service", content, dstate) for n in numbers]


def actions(plan):
    return {key: plan[key] for key in ("destroy", "submit", "replace", "unload", "stop", "load", "start")}


NOTHING = {"destroy": [], "submit": [], "replace": [], "unload": [], "stop": [], "load": [], "start": []}


def expect(**changes):
    result = dict(NOTHING)
    result.update(changes)
    return result


# As fleetctl prints them: a tabwriter padding with tabs, so short cells are followed by several tabs.
LIST_UNIT_FILES = (
    f"db.service\t\t{unit_hash(DB)}\tlaunched\tlaunched\t{MACHINE}/172.17.8.101\n"
    f"web@.service\t\t{unit_hash(WEB)}\tinactive\tinactive\t-\n"
    f"web@1.service\t\t{unit_hash(WEB)}\tlaunched\tlaunched\t{MACHINE}\n"
    f"logger.service\t\t{SLEEP_HASH}\tlaunched\t-\tglobal\n"
    f"queued.service\t\t{SLEEP_HASH}\tloaded\tinactive\t-\n"
)
