"""Pipelines the shutdown tests serve from ``python -m stagewidget serve`` processes.

A test controls them through files, since they run in another process: a run of
``gated`` finishes once the file ``gate`` exists and then writes ``done``; a run of
``spawner`` starts ``sleep 300``, writes its worker's pid and the sleep's to ``pids``,
then loops (calling ``sw.track``, or never calling ``sw.*`` when ``stubborn``).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from pathlib import Path

import stagewidget as sw

gated = sw.Pipeline("gated")


@gated.stage
def wait_for_file(data: dict):
    gate = Path(data["gate"])
    for _ in sw.track(itertools.count(), desc="waiting for the gate"):
        if gate.exists():
            break
        time.sleep(0.01)
    Path(data["done"]).write_text("done")
    return "opened"


spawner = sw.Pipeline("spawner")


@spawner.stage
def spawn(data: dict):
    sleeper = subprocess.Popen(["sleep", "300"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    path = data["pids"]
    with open(path + ".tmp", "w") as out:  # atomically, for processes.read_pids
        out.write(f"{os.getpid()} {sleeper.pid}")
    os.replace(path + ".tmp", path)
    ticks = itertools.count() if data.get("stubborn") else sw.track(itertools.count())
    for _ in ticks:
        time.sleep(0.01)


PIPELINES = [gated, spawner]
