"""The command line through a real subprocess: help with examples, JSON, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import assert_one_line_error, run, write_synthetic_dataset


@pytest.mark.parametrize("command", ["train", "export", "verify", "data"])
def test_help_shows_examples(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0 and "edgefmnist " + command in result.stdout
    assert "Example" in result.stdout


def test_data_json_reports_the_verified_source(real_data_dir: Path) -> None:
    result = run("data", "--json", "--data-dir", str(real_data_dir))
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["verified"] is True
    assert (report["train"], report["validation"], report["test"]) == (55_000, 5_000, 10_000)


@pytest.mark.parametrize(
    "args, code, fragments",
    [
        (["train", "--arch", "resnet"], 2, ["--arch"]),
        (["train", "--bogus"], 2, ["--bogus"]),
        (["export", "/no/such/file.pt"], 2, ["/no/such/file.pt", "does not exist"]),
        (["verify", "/"], 2, ["is a directory"]),
        (["export"], 2, ["Missing argument"]),
        (["verify", "/etc/hostname"], 1, ["/etc/hostname", "not an ONNX model"]),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args: list[str], code: int, fragments: list[str]) -> None:
    assert_one_line_error(run(*args), code, *fragments)


def test_unofficial_data_is_refused(tmp_path: Path) -> None:
    folder = write_synthetic_dataset(tmp_path / "fake")
    assert_one_line_error(run("data", "--data-dir", str(folder)), 1, "not the official Fashion-MNIST")


def test_corrupt_checkpoint_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert_one_line_error(run("export", str(bad)), 1, str(bad), "not a readable PyTorch checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


@pytest.mark.slow
def test_train_export_verify_end_to_end(tmp_path: Path, real_data_dir: Path) -> None:
    checkpoint = tmp_path / "mlp.pt"
    trained = run(
        "train", "--arch", "mlp", "--epochs", "1", "--out", str(checkpoint), "--json", "--data-dir", str(real_data_dir)
    )
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["metrics"]["test_accuracy"] > 0.8
    exported = run("export", str(checkpoint), "--quantize", "static", "--json", "--data-dir", str(real_data_dir))
    assert exported.returncode == 0, exported.stderr
    reports = json.loads(exported.stdout)
    assert [r["precision"] for r in reports] == ["fp32", "int8"] and all(r["parity"]["passed"] for r in reports)
    for model in (tmp_path / "mlp.onnx", tmp_path / "mlp.int8.onnx"):
        verified = run("verify", str(model), "--checkpoint", str(checkpoint), "--data-dir", str(real_data_dir))
        assert verified.returncode == 0 and "PASS" in verified.stdout
    failing = run("export", str(checkpoint), "--atol", "1e-12", "--data-dir", str(real_data_dir))
    assert_one_line_error(failing, 3, "max |Δlogit|")
