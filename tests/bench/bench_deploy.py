#!/usr/bin/env python
"""How long deploying fleet units takes and how many remote commands it sends, next to one plain SSH command.

On three test nodes (tests/nodes: systemd-nspawn machines with sshd, etcd and the fleetctl test double):
  1. `ansible-playbook playbooks/deploy.yml` with 20 units: a template with count 5 and 15 plain units;
  2. the same again, which must change nothing;
  3. a plain baseline: one `ssh` command whose script writes the same 20 units (under other names) and runs
     `fleetctl submit` and `fleetctl start --no-block` once each, with no listing, no hashing and no idempotence.
Needs root (the nodes); elsewhere it says why it skips. `make bench` runs it after tests/bench/bench.py's EC2 part.

Usage: .venv/bin/python tests/bench/bench_deploy.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))

from support.fleet_nodes import GROUP, start_fleet_cluster  # noqa: E402
from support.sandbox import run_playbook  # noqa: E402
from nodes import harness as nodes_harness  # noqa: E402

PLAIN_UNITS = 15
TEMPLATE_COUNT = 5
UNIT = "[Unit]\nDescription={name}\n\n[Service]\nExecStart=/bin/sleep {seconds}\n"


@dataclass
class Run:
    run: str
    ok: bool = False
    seconds: float = 0.0
    remote_commands: int | None = None
    changed: int | None = None
    error: str = ""


def services(prefix: str = "") -> list[dict]:
    units = [{"name": f"{prefix}web@.service", "content": UNIT.format(name="web", seconds=600), "count": TEMPLATE_COUNT}]
    units += [{"name": f"{prefix}svc-{i:02d}.service", "content": UNIT.format(name=f"svc {i}", seconds=600 + i)}
              for i in range(1, PLAIN_UNITS + 1)]
    return units


def ansible_deploy(cluster, label: str) -> Run:
    measure = Run(label)
    start = time.monotonic()
    done = run_playbook("deploy.yml", {"cluster_name": "bench", "deploy_group": GROUP, "services": services()},
                        "-i", cluster.inventory)
    measure.seconds = time.monotonic() - start
    measure.ok = done.rc == 0
    sent = re.search(r"\((\d+) remote commands\)", done.out)
    measure.remote_commands = int(sent.group(1)) if sent else None
    try:
        measure.changed = done.recap.get("changed")
    except AssertionError:
        measure.changed = None
    if not measure.ok:
        measure.error = done.out[-600:]
    return measure


def plain_ssh_deploy(cluster) -> Run:
    """The least a deployment needs: one SSH command writing the files and running fleetctl twice."""
    measure = Run("plain ssh deploy")
    units = services(prefix="base-")
    template, plain = units[0], units[1:]
    lines = ["set -e", 'd=$(mktemp -d)', "cd \"$d\""]
    for unit in units:
        lines.append(f"cat > {shlex.quote(unit['name'])} <<'EOF'\n{unit['content']}EOF")
    instances = [template["name"].replace("@.", f"@{i}.") for i in range(1, TEMPLATE_COUNT + 1)]
    names = [u["name"] for u in plain]
    lines.append("fleetctl submit " + " ".join([template["name"]] + names + instances))
    lines.append("fleetctl start --no-block " + " ".join(names + instances))
    lines.append('cd / && rm -rf "$d"')
    start = time.monotonic()
    done = subprocess.run(cluster[0].ssh_argv("sh -s"), input="\n".join(lines) + "\n", capture_output=True,
                          text=True, timeout=300, check=False)
    measure.seconds = time.monotonic() - start
    measure.ok = done.returncode == 0
    measure.remote_commands = 1
    if not measure.ok:
        measure.error = (done.stdout + done.stderr)[-600:]
    return measure


def table(runs: list[Run]) -> str:
    head = f"{'run':<22} {'result':<7} {'wall s':>8} {'remote commands':>15} {'changed':>7}"
    lines = [head, "-" * len(head)]
    for m in runs:
        lines.append(f"{m.run:<22} {'ok' if m.ok else 'FAILED':<7} {m.seconds:>8.2f} "
                     f"{'-' if m.remote_commands is None else m.remote_commands:>15} {'-' if m.changed is None else m.changed:>7}")
    by = {m.run: m for m in runs}
    base = by.get("plain ssh deploy")
    for label in ("ansible deploy", "ansible re-run"):
        m = by.get(label)
        if m and base and m.ok and base.ok and base.seconds:
            lines.append(f"{'ratio ' + label.split()[1] + '/plain':<22} {'':<7} {m.seconds / base.seconds:>7.1f}x "
                         f"{(m.remote_commands or 0) / base.remote_commands:>14.1f}x")
    lines += [f"Note: {m.run}: {m.error}" for m in runs if m.error]
    return "\n".join(lines)


def bench() -> tuple[str, bool, list[Run]]:
    """The report, and whether every run worked; a host that cannot run nodes gives a skip line."""
    problem = nodes_harness.host_problem()
    if problem:
        return f"Deploy benchmark skipped: {problem}", True, []
    rootfs = nodes_harness.ensure_rootfs(log=lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True))
    problem = nodes_harness.probe_boot(rootfs, nodes_harness.BUILD_DIR)
    if problem:
        return f"Deploy benchmark skipped: {problem}", True, []
    with tempfile.TemporaryDirectory(prefix="coreos-ec2-bench-deploy-") as work:
        print("[bench] booting 3 test nodes ...", file=sys.stderr, flush=True)
        start = time.monotonic()
        cluster = start_fleet_cluster(rootfs, work)
        boot = time.monotonic() - start
        try:
            runs = [ansible_deploy(cluster, "ansible deploy")]
            again = ansible_deploy(cluster, "ansible re-run")
            if again.ok and again.changed:
                again.error = f"not idempotent: changed={again.changed}"
            runs += [again, plain_ssh_deploy(cluster)]
        finally:
            cluster.cleanup()
    text = (f"fleet deploy benchmark: {PLAIN_UNITS + TEMPLATE_COUNT} units ({PLAIN_UNITS} plain, a template with count "
            f"{TEMPLATE_COUNT}) on 3 test nodes (booted in {boot:.1f} s)\n" + table(runs))
    return text, all(m.ok and not m.error for m in runs), runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args(argv)
    text, ok, runs = bench()
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": [asdict(m) for m in runs]}, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
