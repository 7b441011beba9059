# -*- coding: utf-8 -*-
"""Records when each task of a playbook run started and ended, for tests/bench/bench.py.

Enabled only by the benchmark (ANSIBLE_CALLBACK_PLUGINS pointing here, ANSIBLE_CALLBACKS_ENABLED=bench_timing);
it writes a JSON list of {"name", "start", "end"} (seconds since the epoch, so that the benchmark can line them
up with the EC2 calls its proxy saw) to the file named by BENCH_TIMING_FILE when the run ends.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: bench_timing
type: aggregate
short_description: Write every task's start and end time to a JSON file (benchmark only)
description:
  - Writes a JSON list of tasks with their start and end times to the file named by E(BENCH_TIMING_FILE).
requirements:
  - enabled in ANSIBLE_CALLBACKS_ENABLED
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._tasks = []

    def _start(self, task, *args, **kwargs):
        self._tasks.append({"name": task.get_name(), "start": time.time(), "end": None})

    def _end(self, result, *args, **kwargs):
        if self._tasks:
            self._tasks[-1]["end"] = time.time()

    v2_playbook_on_task_start = _start
    v2_playbook_on_handler_task_start = _start
    v2_runner_on_ok = _end
    v2_runner_on_failed = _end
    v2_runner_on_skipped = _end
    v2_runner_on_unreachable = _end

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("BENCH_TIMING_FILE")
        if not path:
            return
        now = time.time()
        for task in self._tasks:
            if task["end"] is None:
                task["end"] = now
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self._tasks, f)
