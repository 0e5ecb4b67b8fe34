"""scripts/load-test.py in a short run: wrk against a real server, infer processes, overload to 503."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "load-test.py"


@pytest.mark.slow
def test_short_load_test_has_no_errors_and_overload_gets_503_with_bounded_memory() -> None:
    if shutil.which("wrk") is None:
        pytest.fail("the load test needs wrk: apt-get install wrk")
    args = [
        "--clients",
        "8",
        "--seconds",
        "3",
        "--rounds",
        "1",
        "--round-seconds",
        "2",
        "--overload-seconds",
        "3",
        "--images",
        "50",
    ]
    result = subprocess.run([sys.executable, str(SCRIPT), *args, "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    load, overload = report["load"], report["overload"]
    assert load["requests"] > 0 and load["errors"] == 0 and load["ok"] == load["requests"]
    assert report["processes_per_second"] > 0 and report["rounds"][0]["processes"]["errors"] == 0
    assert overload["busy"] > 0 and overload["other"] == 0 and overload["ok"] > 0
    assert report["overload_peak_rss_mib"] < report["idle_rss_mib"] + 200
    assert report["server_exit"] == 0
