"""The measuring and data scripts under scripts/: each answers --help, and refuses a missing argument in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
OWN_PARSERS = sorted(p.name for p in SCRIPTS.glob("*.py") if p.name != "typecheck.py")  # typecheck.py passes on to mypy


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("name", OWN_PARSERS)
def test_every_script_answers_help_with_its_usage(name: str) -> None:
    result = run_script(name, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {name}") and not result.stderr


def test_measure_session_options_refuses_no_model_a_missing_one_and_a_corrupt_one_in_one_line(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a model")
    for args, message in (
        ((), "the following arguments are required: MODEL"),
        (("nope.onnx",), "nope.onnx: no such"),
        ((str(corrupt),), f"{corrupt}: not an ONNX model"),
        (("a\nb.onnx",), "a\\nb.onnx: no such"),  # a control character is shown escaped, on the one line
    ):
        result = run_script("measure-session-options.py", *args)
        assert result.returncode == 2 and not result.stdout
        assert result.stderr.splitlines()[-1].startswith(f"measure-session-options.py: error: {message}")
        assert "Traceback" not in result.stderr
