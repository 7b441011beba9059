# Copyright: coreos_ec2.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fake systemctl for the fleetd stand-in's tests: the calls its agent makes, with systemd's answers.

A small model of systemd's unit state: `link` records the symlink, `daemon-reload` loads every linked unit
whose file exists, `start` makes a loaded unit active/running (failed/failed when its file says
ExecStart=/bin/false, so a test can tell a state systemd reported from one anybody made up), `stop` makes it
inactive/dead, `show --property=...` prints systemd's blocks (LoadState not-found for what is not loaded),
and unknown units fail as systemctl does (exit 5, "Unit x not loaded."). Every call is recorded.

Two ways to use it:
    fake = FakeSystemctl(); fleetd.Systemd(fake)                    # in-process, fake.calls
    FakeSystemctl.script(tmp_path) -> path of an executable          # for fleetd --systemctl PATH; the
    FakeSystemctl.load(state_file)                                    # state lives in a JSON file beside it
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path


def _unit_file_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""


def systemctl(state: dict, args: list[str]) -> tuple[int, str, str]:
    """One systemctl call against `state` (changed in place); (exit status, stdout, stderr)."""
    state.setdefault("calls", []).append(list(args))
    links, loaded, active = state.setdefault("links", {}), state.setdefault("loaded", {}), state.setdefault("active", {})
    words = [arg for arg in args if not arg.startswith("--")]
    flags = [arg for arg in args if arg.startswith("--")]
    if not words:
        return 1, "", "fake systemctl: no verb\n"
    verb, rest = words[0], words[1:]
    if verb == "link":
        path = rest[0]
        if not os.path.isabs(path) or not os.path.isfile(path):
            return 1, "", "Failed to link unit: No such file or directory\n"
        links[os.path.basename(path)] = path
        return 0, "Created symlink /run/systemd/system/%s -> %s.\n" % (os.path.basename(path), path), ""
    if verb == "disable":
        if rest[0] not in links:
            return 1, "", "Failed to disable unit: Unit file %s does not exist.\n" % rest[0]
        del links[rest[0]]
        return 0, "Removed /run/systemd/system/%s.\n" % rest[0], ""
    if verb == "daemon-reload":
        state["loaded"] = {name: path for name, path in links.items() if os.path.isfile(path)}
        state["reloads"] = state.get("reloads", 0) + 1
        return 0, "", ""
    if verb == "start":
        name = rest[0]
        if name not in loaded:
            return 5, "", "Failed to start %s: Unit %s not found.\n" % (name, name)
        failing = "ExecStart=/bin/false" in _unit_file_text(loaded[name])
        active[name] = ["failed", "failed"] if failing else ["active", "running"]
        return 0, "", ""
    if verb == "stop":
        name = rest[0]
        if name not in loaded and name not in active:
            return 5, "", "Failed to stop %s: Unit %s not loaded.\n" % (name, name)
        active[name] = ["inactive", "dead"]
        return 0, "", ""
    if verb == "reset-failed":
        name = rest[0]
        if active.get(name, [""])[0] == "failed":
            active[name] = ["inactive", "dead"]
        return 0, "", ""
    if verb == "show":
        wanted = [prop for flag in flags if flag.startswith("--property=")
                  for prop in flag.split("=", 1)[1].split(",")]
        blocks = []
        for name in rest:
            values = {"Id": name, "LoadState": "loaded" if name in loaded else "not-found",
                      "ActiveState": active.get(name, ["inactive", "dead"])[0],
                      "SubState": active.get(name, ["inactive", "dead"])[1]}
            blocks.append("".join("%s=%s\n" % (prop, values.get(prop, "")) for prop in wanted or values))
        return 0, "\n".join(blocks), ""
    return 1, "", "fake systemctl: unknown verb %s\n" % verb


class FakeSystemctl:
    """In-process: call it as fleetd's runner; `state` is systemd as the fake sees it."""

    def __init__(self):
        self.state: dict = {}
        self.fail: dict[str, tuple[int, str]] = {}  # verb -> (exit status, stderr) to answer instead

    def __call__(self, args: list[str]) -> tuple[int, str, str]:
        verb = next((arg for arg in args if not arg.startswith("--")), "")
        if verb in self.fail:
            self.state.setdefault("calls", []).append(list(args))
            code, err = self.fail[verb]
            return code, "", err
        return systemctl(self.state, args)

    @property
    def calls(self) -> list[list[str]]:
        return self.state.get("calls", [])

    def verbs(self) -> list[str]:
        """The calls without their --flags, e.g. 'start hello.service'."""
        return [" ".join(arg for arg in call if not arg.startswith("--")) for call in self.calls]

    def active(self, name: str) -> tuple[str, str]:
        return tuple(self.state.get("active", {}).get(name, ["inactive", "dead"]))  # type: ignore[return-value]

    @staticmethod
    def script(directory: Path) -> Path:
        """An executable that runs this fake on <directory>/systemctl.json (for a fleetd process)."""
        path = Path(directory) / "systemctl"
        state_file = Path(directory) / "systemctl.json"
        path.write_text("#!/bin/sh\nexec %s %s %s \"$@\"\n" % (sys.executable, os.path.abspath(__file__), state_file))
        path.chmod(0o755)
        return path

    @staticmethod
    def load(state_file: Path) -> dict:
        try:
            return json.loads(Path(state_file).read_text())
        except (OSError, ValueError):
            return {}


def main(argv: list[str]) -> int:
    state_file, args = argv[0], argv[1:]
    with open(state_file + ".lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = FakeSystemctl.load(Path(state_file))
        code, out, err = systemctl(state, args)
        temporary = state_file + ".new"
        Path(temporary).write_text(json.dumps(state))
        os.replace(temporary, state_file)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
