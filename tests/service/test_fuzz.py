"""Schemathesis against the service's own OpenAPI document: no 5xx, no schema violations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import harness
import pytest
from harness import HERE

pytestmark = pytest.mark.integration

redis_server, service_process = harness.redis_server, harness.service_process

ARTIFACTS = Path(__file__).parents[2] / "artifacts"
FUZZ_S = os.environ.get("STAGEWIDGET_FUZZ_S", "25")


def test_schemathesis_finds_no_server_error_and_no_schema_violation(service_process, tmp_path
                                                                   ) -> None:
    # The fuzzer leaves gated runs waiting forever: at the default cap (32) later runs
    # would queue behind them, and a POST with Prefer: wait would time out.
    service = service_process("--max-running", "100000")
    ARTIFACTS.mkdir(exist_ok=True)
    done = subprocess.run(
        [Path(sys.executable).with_name("schemathesis"), "--config-file",
         HERE / "schemathesis.toml", "run", f"{service.url}/openapi.json", "--checks", "all",
         # The token, for the API document and every request; ignored_auth (in "all")
         # checks that a request without it is refused.
         "--header", f"Authorization: Bearer {service.token}",
         # DELETE cancels a run, as the API says; a cancelled run stays readable until it
         # expires, which use_after_free takes for a deleted resource still there.
         "--exclude-checks", "use_after_free",
         "--max-time", FUZZ_S, "--no-color",
         # One worker: with threads, hypothesis's concurrent ast.parse can hit CPython 3.11's
         # "AST constructor recursion depth mismatch" (gh-106905) inside schemathesis.
         "--workers", "1"],
        capture_output=True, text=True, timeout=int(FUZZ_S) + 120, cwd=tmp_path)
    (ARTIFACTS / "schemathesis.txt").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout or " passed" in done.stdout, done.stdout[-3000:]
