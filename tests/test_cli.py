"""The command line through a real subprocess: help with examples, JSON, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from edgefmnist.runtime.predictor import default_model_path
from helpers import assert_one_line_error, run, run_in_process, run_with_stdout_in, write_synthetic_dataset
from PIL import Image

import edgefmnist
from edgefmnist.cores import available_cores


@pytest.mark.parametrize("command", ["", "data", "train", "export", "verify", "infer", "evaluate", "bench", "serve"])
def test_help_shows_examples(command: str) -> None:
    result = run(*filter(None, [command, "--help"]), env={"COLUMNS": "60"})
    assert result.returncode == 0 and f"edgefmnist {command or 'infer'} " in result.stdout
    assert "Examples:" in result.stdout
    from edgefmnist.cli import app

    click_command = typer.main.get_command(app)
    documented = (click_command.commands[command].help if command else click_command.help) or ""  # type: ignore[attr-defined]
    examples = [line.strip() for line in documented.split("Examples:")[1].splitlines() if line.startswith("  ")]
    shown = {line.strip() for line in result.stdout.splitlines()}
    assert examples and all(example in shown for example in examples), "an example is wrapped: it cannot be pasted"


@pytest.mark.parametrize("command", ["", "infer", "serve"])
def test_dash_h_is_help_too(command: str) -> None:
    short, long = run(*filter(None, [command, "-h"])), run(*filter(None, [command, "--help"]))
    assert short.returncode == 0 and short.stdout == long.stdout and short.stderr == ""


@pytest.mark.parametrize(
    "command, files",
    [(c, "Folder with the four IDX files") for c in ("data", "train", "export")]
    + [(c, "Folder with the test set's two t10k IDX files") for c in ("verify", "bench")]
    + [
        ("infer", "With --sample: folder with the test set's two t10k IDX files"),
        ("evaluate", "Without --photos: folder with the test set's two t10k IDX files"),
    ],
)
def test_data_dir_help_names_the_files_the_command_reads(command: str, files: str) -> None:
    result = run(command, "--help")
    assert f"--data-dir DIRECTORY {files}" in " ".join(result.stdout.split())


def test_data_json_reports_the_verified_source(real_data_dir: Path) -> None:
    result = run("data", "--json", "--data-dir", str(real_data_dir))
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["verified"] is True
    assert (report["train"], report["validation"], report["test"]) == (55_000, 5_000, 10_000)


# what the shell gives for an unquoted pattern: existing files
EXPANDED = [str(p) for p in sorted((Path(__file__).parent / "data" / "photos" / "shoes").glob("*.jpg"))[:3]]


@pytest.mark.parametrize(
    "args, code, fragments",
    [
        (["train", "--arch", "resnet"], 2, ["--arch"]),
        (["train", "--bogus"], 2, ["--bogus"]),
        (["export", "/no/such/file.pt"], 1, ["/no/such/file.pt", "does not exist"]),
        (["verify", "/"], 2, ["is a directory"]),
        (["export"], 2, ["Missing argument"]),
        (["verify", "/etc/hostname"], 1, ["/etc/hostname", "not an ONNX model"]),
        (["infr"], 2, ["No such command 'infr'. Did you mean 'infer'?"]),
        (
            ["infer", "--image", *EXPANDED],
            2,
            ["unexpected extra argument", "quote it, --image 'photos/*.jpg', give the folder, or repeat --image a.jpg"],
        ),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args: list[str], code: int, fragments: list[str]) -> None:
    result = run(*args)
    assert_one_line_error(result, code, *fragments)
    assert result.stderr.count("Did you mean") <= 1


def test_no_pattern_hint_for_extra_arguments_that_are_no_files() -> None:
    result = run("infer", "--image", EXPANDED[0], "--top-k", "2", "b", "c")
    assert_one_line_error(result, 2, "unexpected extra arguments (b c)")
    assert "quote it" not in result.stderr and "own --image" not in result.stderr
    number = run("infer", "--image", EXPANDED[0], "--min-confidence", "0.5", "0.6")
    assert_one_line_error(number, 2, "unexpected extra argument (0.6)")
    assert "own --image" not in number.stderr


def test_pictures_after_one_image_option_get_the_repeat_hint() -> None:
    result = run("infer", "--image", EXPANDED[0], EXPANDED[1], "nothere.jpg")
    assert_one_line_error(
        result, 2, "unexpected extra arguments", "each picture takes its own --image: --image a.jpg --image b.jpg"
    )


def test_pictures_named_without_image_option_get_the_image_hint() -> None:
    result = run("infer", EXPANDED[0])
    assert_one_line_error(
        result, 2, f"unexpected extra argument ({EXPANDED[0]}) (name each picture with --image: --image {EXPANDED[0]})"
    )
    several = run("infer", "--top-k", "2", "a.jpg", "b.png", "c.jpg")
    assert_one_line_error(several, 2, "(name each picture with --image: --image a.jpg --image b.png)")
    expanded = run("infer", *EXPANDED)  # an unquoted pattern without --image
    assert_one_line_error(expanded, 2, f"--image {EXPANDED[1]}, or quote a pattern: --image 'photos/*.jpg')")
    assert "quote it" not in result.stderr + several.stderr


def test_unofficial_data_is_refused(tmp_path: Path) -> None:
    folder = write_synthetic_dataset(tmp_path / "fake")
    assert_one_line_error(run("data", "--data-dir", str(folder)), 1, "not the official Fashion-MNIST")


def test_ctrl_c_while_the_cli_loads_is_one_line_and_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins

    from edgefmnist import launch

    real_import = builtins.__import__

    def interrupted(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "edgefmnist.cli":  # as if Ctrl-C came while numpy loads
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as stopped:
        launch.main()
    assert stopped.value.code == 130 and capsys.readouterr().err == "edgefmnist: interrupted\n"


def initialising_when(number: int) -> Any:
    """A command that gets signal ``number`` while a C extension initialises: pybind11 (onnxruntime)
    raises ``ImportError: initialization failed`` from the handler's exception."""

    def command(*args: Any) -> None:
        # Ctrl-C as Python sets it, unless its parent ignored SIGINT (a background job, as CI's may be)
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            os.kill(os.getpid(), number)
            time.sleep(5)
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc
        finally:
            signal.signal(signal.SIGINT, previous)

    return command


@pytest.mark.parametrize(
    "number, code, line", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_signal_while_onnxruntime_initialises_is_one_line(
    monkeypatch: pytest.MonkeyPatch, number: int, code: int, line: str
) -> None:
    from edgefmnist import cli

    monkeypatch.setattr(cli, "classify_and_report", initialising_when(number))
    result = run_in_process("infer", "--image", "x.jpg")
    assert (result.returncode, result.stderr) == (code, f"edgefmnist: {line}\n")


def test_a_signal_while_the_cli_initialises_an_extension_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins

    from edgefmnist import launch

    real_import = builtins.__import__

    def importing(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "edgefmnist.cli":
            failing()
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", importing)
    failing = initialising_when(signal.SIGINT)
    with pytest.raises(SystemExit) as stopped:
        launch.main()
    assert stopped.value.code == 130 and capsys.readouterr().err == "edgefmnist: interrupted\n"

    def missing() -> None:
        raise ImportError("No module named 'numpy'")

    failing = missing
    with pytest.raises(ImportError, match="numpy"):  # any other ImportError is not taken for a signal
        launch.main()


def test_corrupt_checkpoint_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert_one_line_error(run_in_process("export", str(bad)), 1, str(bad), "not a readable PyTorch checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


def test_an_onnx_model_given_to_export_is_named_as_one(tmp_path: Path) -> None:
    shipped = Path(__file__).parents[1] / "models" / "mlp.onnx"
    for name, fragment in [
        ("model.onnx", "an ONNX model, not a PyTorch checkpoint"),  # its default --out would be itself
        ("renamed.pt", "an ONNX model, not a PyTorch checkpoint"),
    ]:
        (tmp_path / name).write_bytes(shipped.read_bytes())
        for args in ([], ["--quantize", "static"], ["--out", str(tmp_path / "x.onnx")]):
            result = run_in_process("export", str(tmp_path / name), *args)
            assert_one_line_error(
                result, 1, str(tmp_path / name), fragment, "the .pt file that `edgefmnist train` wrote"
            )
        assert (tmp_path / name).read_bytes() == shipped.read_bytes()
    assert_one_line_error(run_in_process("export", "/dev/null"), 1, "/dev/null: a device, not a regular file")
    (tmp_path / "text.onnx").write_text("not a model\n")
    assert_one_line_error(run_in_process("export", str(tmp_path / "text.onnx")), 1, "named as an ONNX model")


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
    assert [r["dtype"] for r in reports] == ["fp32", "int8"] and all(r["parity"]["passed"] for r in reports)
    for model in (tmp_path / "mlp.onnx", tmp_path / "mlp.int8.onnx"):
        verified = run("verify", str(model), "--checkpoint", str(checkpoint), "--data-dir", str(real_data_dir))
        assert verified.returncode == 0 and "PASS" in verified.stdout
    assert all(r["written"] for r in reports)
    before = (tmp_path / "mlp.onnx").read_bytes()
    failing = run("export", str(checkpoint), "--atol", "1e-12", "--data-dir", str(real_data_dir))
    assert_one_line_error(failing, 3, "max |Δlogit|")
    failing = run("export", str(checkpoint), "--atol", "1e-12", "--json", "--data-dir", str(real_data_dir))
    assert_one_line_error(failing, 3, "max |Δlogit|")
    (failed,) = json.loads(failing.stdout)  # the failed model's report, as verify --json gives one
    assert failed["path"] == str(tmp_path / "mlp.onnx") and not failed["written"] and not failed["parity"]["passed"]
    assert (tmp_path / "mlp.onnx").read_bytes() == before


SHIPPED = default_model_path().parent


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["infer", "--sample", "0:2", "--image", "x.png"], ["--image and --sample exclude each other"]),
        (["infer", "--sample", "5:2"], ["--sample 5:2: START must be below STOP"]),
        (["infer", "--sample", "10000:"], ["--sample 10000:: the test set has 10,000 images"]),
        (["infer", "--sample", "9990:10001"], ["--sample 9990:10001: the test set has 10,000 images"]),
        (["infer", "--sample", "a:b"], ["--sample 'a:b': expected START:STOP or INDEX, e.g. 0:5 or 7"]),
        (["infer", "--sample", "a\\b"], ["--sample 'a\\\\b': expected START:STOP or INDEX"]),  # escaped once
        (["bench", "--batch", "1\\2"], ["--batch '1\\\\2': expected comma-separated positive integers"]),
        (["infer", "--sample", ""], ["--sample '': expected START:STOP or INDEX"]),
        (["infer", "--sample", "1_0:12"], ["--sample '1_0:12': expected START:STOP or INDEX"]),
        (["infer", "--sample", "\u0661:\u0663"], ["expected START:STOP or INDEX"]),  # Arabic-Indic digits
        (["infer", "--sample", "0:" + "9" * 5000], ["the test set has 10,000 images"]),
        (["infer"], ["nothing to classify"]),
        (["bench", "--batch", "0,32"], ["--batch '0,32'"]),
        (["export", str(SHIPPED / "mlp.pt"), "--opset", "99"], ["--opset", "99"]),
        (["export", str(SHIPPED / "mlp.pt"), "--opset", "12"], ["--opset", "12"]),
        (["evaluate", "--sweep", "--data-dir", "/"], ["--sweep needs --photos"]),
        (["verify", str(SHIPPED / "mlp.onnx"), "--atol", "1e-3"], ["--atol applies only with --checkpoint"]),
        (
            ["verify", str(SHIPPED / "mlp.int8.onnx"), "--checkpoint", str(SHIPPED / "mlp.pt"), "--atol", "0.5"],
            ["--atol applies to an fp32 model; mlp.int8.onnx is int8"],
        ),
    ],
)
def test_bad_flag_values_exit_2(args: list[str], fragments: list[str], tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)] if args[0] == "infer" and "--sample" in args else []  # refused before the data
    assert_one_line_error(run(*args, *data), 2, *fragments)


def test_verify_json_names_the_model_and_checkpoint_by_their_paths(real_data_dir: Path) -> None:
    model, checkpoint = SHIPPED / "mlp.int8.onnx", SHIPPED / "mlp.pt"
    data = ["--data-dir", str(real_data_dir), "--json"]
    against = json.loads(run_in_process("verify", str(model), "--checkpoint", str(checkpoint), *data).stdout)
    assert (against["model"], against["checkpoint"], against["passed"]) == (str(model), str(checkpoint), True)
    alone = json.loads(run_in_process("verify", str(model), *data).stdout)
    assert alone["model"] == str(model) and "checkpoint" not in alone


def test_verify_against_another_models_checkpoint_is_refused_before_the_test_set(tmp_path: Path) -> None:
    result = run(
        "verify", str(SHIPPED / "mlp.onnx"), "--checkpoint", str(SHIPPED / "cnn.pt"), "--data-dir", str(tmp_path)
    )
    assert_one_line_error(result, 1, f"{SHIPPED / 'cnn.pt'}: not the checkpoint mlp.onnx was exported from (SHA-256")


def test_more_threads_than_cores_is_taken_with_a_warning(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("L", (28, 28)).save(tmp_path / "x.png")
    threads = available_cores() + 1
    result = run("infer", "--image", str(tmp_path / "x.png"), "--threads", str(threads))
    assert result.returncode == 0 and result.stdout.startswith(str(tmp_path / "x.png"))
    assert f"edgefmnist: warning: --threads {threads} is more than the {available_cores()} cores" in result.stderr
    assert result.stderr.rstrip().endswith(
        "onnxruntime's threads then compete for them and can run several times slower"
    )
    within = run("infer", "--image", str(tmp_path / "x.png"), "--threads", "1")
    assert within.returncode == 0 and "--threads" not in within.stderr
    workers = run("infer", "--image", str(tmp_path / "x.png"), "--workers", str(threads))
    assert workers.returncode == 0 and workers.stdout.startswith(str(tmp_path / "x.png"))
    assert "--workers" not in workers.stderr  # one picture: no pool runs
    for i in range(threads):
        Image.new("L", (28, 28)).save(tmp_path / f"{i}.png")
    workers = run("infer", "--image", str(tmp_path), "--workers", str(threads))
    assert workers.returncode == 0 and workers.stdout.count("\n") == threads + 1
    assert f"edgefmnist: warning: --workers {threads} is more than the {available_cores()} cores" in workers.stderr
    sample = run("infer", "--sample", "0:1", "--workers", str(threads))
    assert sample.returncode == 0 and "--workers" not in sample.stderr
    for refused, fragment in ((["infer", "--sample", "5:2"], "5:2"), (["evaluate", "--split", "report"], "--split")):
        assert_one_line_error(run(*refused, "--threads", str(threads)), 2, fragment)  # the error stays one line


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"edgefmnist {edgefmnist.__version__}"


def test_python_dash_m_runs_the_command_line() -> None:
    result = subprocess.run([sys.executable, "-m", "edgefmnist", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"edgefmnist {edgefmnist.__version__}"
    refused = subprocess.run([sys.executable, "-m", "edgefmnist", "infer"], capture_output=True, text=True)
    assert_one_line_error(refused, 2, "--image")


def run_with_stdout(stdout: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``edgefmnist ARGS...`` with stdout ``"closed"`` (``>&-``) or sent to ``/dev/full``; stderr captured."""
    if stdout == "/dev/full" and not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    command = [sys.executable, "-m", "edgefmnist.cli", *args]
    if stdout == "closed":  # the shell closes it: no preexec_fn, which is unsafe in a process with threads
        command = ["sh", "-c", 'exec "$@" >&-', "sh", *command]
        return subprocess.run(command, stderr=subprocess.PIPE, text=True, timeout=300)
    with open("/dev/full", "w") as full:
        return subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)


STDOUT_ERRORS = {
    "closed": "edgefmnist: error: standard output is closed: nowhere to print the result",
    "/dev/full": "edgefmnist: error: standard output: cannot write (No space left on device)",
}


@pytest.mark.parametrize("stdout", list(STDOUT_ERRORS))
@pytest.mark.parametrize("args", [["infer", "--sample", "0:1"], ["infer", "--sample", "0:1", "--json"], ["--version"]])
def test_a_result_that_cannot_be_printed_is_an_error_naming_stdout(args: list[str], stdout: str) -> None:
    """``>&-`` and ``> /dev/full``: exit 1 and one line, never exit 0 with the result lost."""
    result = run_with_stdout(stdout, *args)
    assert result.returncode == 1 and result.stderr.splitlines() == [STDOUT_ERRORS[stdout]], result.stderr


@pytest.mark.parametrize("stdout", list(STDOUT_ERRORS))
@pytest.mark.parametrize(
    "args", [[], ["--help"], ["data", "--help"], ["serve", "--help"], ["serve", "-h"], ["--help", "serve"]]
)
def test_help_that_cannot_be_printed_is_an_error_naming_stdout_too(args: list[str], stdout: str) -> None:
    result = run_with_stdout(stdout, *args)
    assert result.returncode == 1 and result.stderr.splitlines() == [STDOUT_ERRORS[stdout]], result.stderr


def test_help_as_an_options_value_is_no_help_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--plot --help`` names a plot: an error without a file name in that run is not blamed on stdout."""
    import errno

    import edgefmnist.cli

    def fails(*args: object) -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(edgefmnist.cli, "evaluate_test_set", fails)
    assert_one_line_error(run_in_process("evaluate", "--plot", "--help"), 1, "error: Bad file descriptor")


@pytest.mark.parametrize(
    "args",
    [["bench", str(Path(__file__).parents[1] / "models" / "mlp.onnx"), "--runs", "10", "--batch", "1"], ["data"]],
    ids=["bench", "data"],
)
def test_json_for_a_reader_that_has_left_is_no_error(args: list[str]) -> None:
    """``... --json | true``: the reader is gone before the document is written, and that is exit 0."""
    command = [sys.executable, "-m", "edgefmnist.cli", *args, "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    error = process.stderr.read()
    assert process.wait(timeout=300) == 0 and error == "", error


def test_infer_finishes_its_work_when_stdout_fails(tmp_path: Path, fashion) -> None:
    """Every picture is saved and every bad one named; the lost output is one line at the end."""
    for index in range(3):
        Image.fromarray(fashion.test.images[index]).save(tmp_path / f"{index}.png")
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    result = run_with_stdout(
        "/dev/full", "infer", "--image", str(tmp_path), "--save-preprocessed", str(tmp_path / "seen")
    )
    assert sorted(p.name for p in (tmp_path / "seen").iterdir()) == ["0.png", "1.png", "2.png"]
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 3 and "bad.png" in lines[0], result.stderr
    assert lines[1:] == [
        f"edgefmnist: 3 preprocessed 28x28 PNGs saved in {tmp_path / 'seen'}",
        STDOUT_ERRORS["/dev/full"],
    ]


@pytest.mark.slow
@pytest.mark.parametrize("output", [[], ["--json"]], ids=["text", "json"])
def test_an_export_whose_report_is_lost_says_its_models_were_written(
    trained, real_data_dir: Path, tmp_path: Path, output: list[str]
) -> None:
    out = tmp_path / "mlp.onnx"
    result = run_with_stdout(
        "/dev/full", "export", str(trained("mlp")), "--out", str(out), "--data-dir", str(real_data_dir), *output
    )
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"{STDOUT_ERRORS['/dev/full']}; written all the same: {out}"
    ], result.stderr
    assert out.stat().st_size > 0


@pytest.mark.slow
def test_a_training_whose_report_is_lost_says_what_it_wrote(real_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mlp.pt"
    result = run_with_stdout(
        "/dev/full", "train", "--arch", "mlp", "--epochs", "1", "--out", str(out), "--data-dir", str(real_data_dir)
    )
    written = [out, tmp_path / "mlp.history.json", tmp_path / "mlp.curves.png"]
    assert result.returncode == 1 and result.stderr.splitlines()[-1] == (
        f"{STDOUT_ERRORS['/dev/full']}; written all the same: {', '.join(map(str, written))}"
    ), result.stderr
    assert all(path.stat().st_size > 0 for path in written)


def test_no_arguments_prints_the_help() -> None:
    result = run()
    assert "Usage: edgefmnist" in result.stdout and "edgefmnist: error" not in result.stderr


def test_a_failed_check_exits_3_for_verify_as_for_export(tmp_path: Path, real_data_dir: Path) -> None:
    import onnx

    model = onnx.load(str(SHIPPED / "mlp.onnx"))
    for prop in model.metadata_props:
        if prop.key == "test_accuracy":
            prop.value = "0.5"  # the metadata now lies about the accuracy
    lying = tmp_path / "lying.onnx"
    onnx.save(model, str(lying))
    result = run_in_process("verify", str(lying), "--data-dir", str(real_data_dir))
    assert_one_line_error(result, 3, f"{lying}, validation failed", "the metadata claims 50.00 %")
    assert "FAIL" in result.stdout  # the report itself, on stdout as for a pass
    assert "on 10,000 images" in result.stdout and "on 10,000 images" not in result.stderr  # its figures once


def test_write_failures_have_their_own_error_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from edgefmnist.atomic import write_text_atomic
    from edgefmnist.errors import WriteFailed

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    target = tmp_path / "report.json"
    target.write_text("previous")
    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(WriteFailed, match="cannot write \\(No space left on device\\); the previous file is untouched"):
        write_text_atomic(target, "new")
    assert target.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["report.json"]
    with pytest.raises(WriteFailed, match="cannot write \\(No space left on device\\); nothing was written$"):
        write_text_atomic(tmp_path / "new.json", "new")
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


MISSING_INPUTS = [
    ["verify", "{missing}"],
    ["verify", "{model}", "--checkpoint", "{missing}"],
    ["export", "{missing}"],
    ["bench", "{missing}"],
    ["bench", "{model}", "--reference", "{missing}"],
    ["evaluate", "{missing}"],
    ["evaluate", "--model", "{missing}"],
    ["evaluate", "--photos", "{missing}"],
    ["data", "--data-dir", "{missing}"],
    ["infer", "--model", "{missing}", "--sample", "0:1"],
    ["serve", "--model", "{missing}", "--port", "0"],
]


@pytest.mark.parametrize("args", MISSING_INPUTS, ids=" ".join)
def test_a_missing_input_is_exit_1_everywhere(args: list[str], tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    filled = [arg.format(missing=missing, model=default_model_path()) for arg in args]
    given_to = filled[filled.index(missing) - 1]  # the option it was given to is named, an argument stands alone
    named = f"{given_to} {missing}: " if given_to.startswith("--") else f"error: {missing}: "
    assert_one_line_error(run_in_process(*filled), 1, named + "does not exist")


@pytest.mark.parametrize(
    "args, flag",
    [
        (["export", "{checkpoint}", "--atol", "-1"], "--atol"),
        (["export", "{checkpoint}", "--atol", "nan"], "--atol"),
        (["verify", "{model}", "--checkpoint", "{checkpoint}", "--atol", "nan"], "--atol"),
        (["infer", "--sample", "0:1", "--min-confidence", "nan"], "--min-confidence"),
        (["evaluate", "--min-confidence", "nan"], "--min-confidence"),
        (["infer", "--sample", "0:1", "--min-typicality", "inf"], "--min-typicality"),
        (["evaluate", "--min-typicality", "1.5"], "--min-typicality"),
        (["serve", "--max-body-mb", "nan"], "--max-body-mb"),
        (["serve", "--max-body-mb", "1e308"], "--max-body-mb"),  # finite, but no int of bytes past 1.7e302 MiB
        (["serve", "--upload-timeout", "inf"], "--upload-timeout"),
        (["infer", "--image", "x.png", "--threads", "3000000000"], "--threads"),
        (["evaluate", "--photos", ".", "--threads", "3000000000"], "--threads"),
        (["serve", "--threads", "2000"], "--threads"),
        (["bench", "--threads", "65"], "--threads"),  # more than cores only slows small networks down
        (["infer", "--image", "x.png", "--workers", "65"], "--workers"),
        (["train", "--dry-run", "--seed", "18446744073709551616"], "--seed"),
        (["train", "--dry-run", "--seed", "-1"], "--seed"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else value,
)
def test_a_bad_number_is_a_usage_error(args: list[str], flag: str, tmp_path: Path) -> None:
    checkpoint = tmp_path / "never-read.pt"
    checkpoint.write_bytes(b"")
    filled = [arg.format(checkpoint=checkpoint, model=default_model_path()) for arg in args]
    assert_one_line_error(run_in_process(*filled), 2, flag)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["infer", "--image", ""], "--image needs a path, not an empty string"),
        (
            ["infer", "--image", "{picture}", "--save-preprocessed", ""],
            "--save-preprocessed needs a path, not an empty string",
        ),
        (["train", "--dry-run", "--out", ""], "--out needs a path, not an empty string"),
        (["train", "--dry-run", "--out="], "--out needs a path, not an empty string"),
        (["train", "--dry-run", "--out", "runs/"], "--out runs/: names a folder, expected a file path"),
        (["train", "--dry-run", "--out", "runs/."], "--out runs/.: names a folder"),
        (["evaluate", "{model}", "--plot=new/"], "--plot new/: names a folder"),
        (["verify", "--json", "{model}/"], "cnn.onnx/: names a folder, expected a file path"),
        (["export", ""], "an empty argument where a path is expected"),
        (["verify", "--json", ""], "an empty argument where a path is expected"),
        (["evaluate", "--photos", ""], "--photos needs a path, not an empty string"),
        (["infer", "--json", ""], "unexpected extra argument"),
        (["infer", "--image", "-", "--image", "-"], "standard input"),
        (["bench", "--json", "--markdown"], "--json and --markdown"),
        (["evaluate", "{model}", "--split", "report"], "--split needs --photos"),
        (["evaluate", "{model}", "--plot", "confusion.jpg"], "--plot confusion.jpg: the plot is written as a PNG"),
        (["evaluate", "{model}", "--min-confidence", "0.7"], "--min-confidence needs --photos"),
        (["evaluate", "{model}", "--min-typicality", "0.05"], "--min-typicality needs --photos"),
        (["infer", "--image", "{picture}", "--data-dir", "{here}"], "--data-dir is for --sample"),
        (["evaluate", "--photos", "{here}", "--data-dir", "{here}"], "--data-dir is for the test set"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_conflicting_or_meaningless_flags_are_usage_errors(
    args: list[str], fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    picture = tmp_path / "good.png"
    Image.new("L", (28, 28)).save(picture)
    monkeypatch.chdir(tmp_path)
    filled = [arg.format(picture=picture, model=default_model_path(), here=tmp_path) for arg in args]
    assert_one_line_error(run_in_process(*filled), 2, fragment)
    assert [p.name for p in tmp_path.iterdir()] == ["good.png"]


def test_export_and_train_refuse_an_output_on_standard_output(tmp_path: Path) -> None:
    for args in (
        ["export", str(SHIPPED / "mlp.pt"), "--out", "out.onnx"],
        ["export", str(SHIPPED / "mlp.pt"), "--out", "/dev/stdout"],
        ["train", "--dry-run", "--out", "/dev/stdout"],
    ):
        result = run_with_stdout_in(tmp_path / "out.onnx", *args)
        assert_one_line_error(result, 2, "standard output, where the results are printed, would mix")
        assert (tmp_path / "out.onnx").read_bytes() == b""


def test_export_into_a_device_reports_the_size_it_wrote() -> None:
    result = run_in_process("export", str(SHIPPED / "mlp.pt"), "--out", os.devnull, "--json")
    [model] = json.loads(result.stdout)
    assert result.returncode == 0 and model["path"] == os.devnull and model["written"]
    assert model["size_bytes"] > 0.9 * (SHIPPED / "mlp.onnx").stat().st_size  # /dev/null itself stats as 0 bytes


def test_an_output_option_never_overwrites_an_input(tmp_path: Path) -> None:
    (checkpoint := tmp_path / "mlp.pt").write_bytes((SHIPPED / "mlp.pt").read_bytes())
    (model := tmp_path / "mlp.onnx").write_bytes((SHIPPED / "mlp.onnx").read_bytes())
    photos = tmp_path / "photos"
    (photos / "Dress").mkdir(parents=True)
    Image.new("RGB", (64, 64), "white").save(photo := photos / "Dress" / "a.png")
    (labelled := tmp_path / "labelled").mkdir()
    Image.new("RGB", (64, 64), "white").save(labelled / "b.png")
    (labels := labelled / "labels.csv").write_text("file,source_class,accepted\nb.png,dress,Dress\n")
    (named_onnx := tmp_path / "ck.onnx").write_bytes(checkpoint.read_bytes())  # the default --out is its own name
    (named_int8 := tmp_path / "m.int8.onnx").write_bytes(checkpoint.read_bytes())  # --out m.onnx's int8 model
    before = {path: path.read_bytes() for path in (checkpoint, model, photo, labels, named_onnx, named_int8)}
    for args, fragment in [
        (["export", str(named_onnx)], f"--out: {named_onnx} would overwrite the checkpoint {named_onnx}"),
        (["export", str(named_int8), "--out", str(tmp_path / "m.onnx"), "--quantize", "static"], "the checkpoint"),
        (["evaluate", str(model), "--plot", str(model)], f"--plot: {model} would overwrite the model {model}"),
        (
            ["evaluate", "--photos", str(photos), "--model", str(model), "--plot", str(photo)],
            "would overwrite the photo",
        ),
        (["evaluate", "--photos", str(labelled), "--plot", str(labels)], f"would overwrite the photo set's {labels}"),
    ]:
        assert_one_line_error(run_in_process(*args), 1, fragment)
    for out in (checkpoint, photo):  # an output named for another format is a bad flag value, as --plot x.jpg
        assert_one_line_error(run_in_process("export", str(checkpoint), "--out", str(out)), 2, "name it NAME.onnx")
    for args, fragment in [
        (["--out", "/dev/null", "--quantize", "dynamic"], "--quantize makes the int8"),
        (["--out", str(named_int8)], "names an int8 model; give the fp32 model's name"),
    ]:
        assert_one_line_error(run_in_process("export", str(checkpoint), *args), 2, fragment)
    notes = tmp_path / "notes.md"
    notes.write_text("# notes\n")
    for out in (model, photo, notes, tmp_path / "notes", Path("-"), tmp_path / "m.pt.bak", Path("/proc/m.onnx")):
        assert_one_line_error(run_in_process("train", "--dry-run", "--out", str(out)), 2, "name it NAME.pt")
    assert notes.read_text() == "# notes\n"
    long = tmp_path / ("m" * 248 + ".onnx")  # fits, but its int8 model's name would not: refused before the work
    result = run_in_process("export", str(checkpoint), "--out", str(long), "--quantize", "dynamic")
    assert_one_line_error(result, 1, ".int8.onnx: cannot write here (File name too long)")
    assert {path: path.read_bytes() for path in before} == before


def test_an_output_option_never_overwrites_the_data_set(real_data_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for source in real_data_dir.iterdir():
        (data / source.name).write_bytes(source.read_bytes())
    before = {path: path.read_bytes() for path in data.iterdir()}
    labels, images = next(data.glob("t10k-labels*")), next(data.glob("train-images*"))
    for name, target in [("m.onnx", labels), ("t.pt", images), ("u.history.json", images)]:
        (tmp_path / name).symlink_to(target)  # an output's name that leads to a data file
    for args, target, where in (
        (["infer", "--sample", "3", "--save-preprocessed", str(labels)], labels, labels),
        (["evaluate", str(SHIPPED / "mlp.onnx"), "--plot", str(labels)], labels, labels),
        (["export", str(SHIPPED / "mlp.pt"), "--out", str(tmp_path / "m.onnx")], tmp_path / "m.onnx", labels),
        (["train", "--dry-run", "--out", str(tmp_path / "t.pt")], tmp_path / "t.pt", images),
        (["train", "--dry-run", "--out", str(tmp_path / "u.pt")], tmp_path / "u.history.json", images),
    ):
        result = run_in_process(*args, "--data-dir", str(data))
        kind = "test set" if where == labels else "training set"
        assert_one_line_error(result, 1, f"{target} would overwrite the {kind}'s {where}")
    assert {path: path.read_bytes() for path in data.iterdir()} == before


def test_printable_escapes_what_would_break_or_blur_a_line() -> None:
    from edgefmnist.errors import printable

    named = {
        "a\nb": "a\\nb",
        "a\\nb": "a\\\\nb",
        "c\x85d": "c\\x85d",
        "e\u2028f": "e\\u2028f",
        "g\x7f": "g\\x7f",
        "a\u202egpj.exe": "a\\u202egpj.exe",
    }
    assert {text: printable(text) for text in named} == named
    assert printable(b"bad\xffname".decode("utf-8", "surrogateescape")) == "bad\\xffname"  # os.fsdecode's byte
    assert printable("é 👕 plain") == "é 👕 plain"


def test_a_name_with_control_characters_keeps_its_line(tmp_path: Path) -> None:
    (bad := tmp_path / "bad\nname.jpg").write_bytes(b"junk")
    assert_one_line_error(run_in_process("infer", "--image", str(bad)), 1, "bad\\nname.jpg: not an image")
    missing = tmp_path / "x\x1b[31my.onnx"  # a terminal's colour code, shown as text
    assert_one_line_error(run_in_process("verify", str(missing)), 1, "x\\x1b[31my.onnx: does not exist")
    Image.new("L", (28, 28)).save(good := tmp_path / "we\nird.png")
    result = run_in_process("infer", "--image", str(good), "--model", str(SHIPPED / "mlp.onnx"))
    assert result.stdout.count("\n") == 1 and "we\\nird.png: unsure" in result.stdout
    (model := tmp_path / "mo\ndel.onnx").write_bytes((SHIPPED / "mlp.onnx").read_bytes())
    report = run_in_process("verify", str(model))  # a report on stdout names the file on its line too
    assert report.returncode == 0 and report.stdout.count("\n") == 1 and "mo\\ndel.onnx (fp32)" in report.stdout
    (model := tmp_path / os.fsdecode(b"m\xff.onnx")).write_bytes((SHIPPED / "mlp.onnx").read_bytes())
    loaded = run_in_process("verify", str(model))  # onnxruntime takes text paths: such a model is read as bytes
    assert loaded.returncode == 0 and "m\\xff.onnx (fp32)" in loaded.stdout, loaded.stderr
    refused = run_in_process("export", str(SHIPPED / "mlp.pt"), "--out", str(model))
    assert_one_line_error(refused, 1, "m\\xff.onnx: the model's path holds a byte that is not UTF-8")


def test_counts_read_as_english() -> None:
    from edgefmnist.errors import counted

    assert [counted(n, "core") for n in (0, 1, 2)] == ["0 cores", "1 core", "2 cores"]


WITHOUT_ROOTS_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root reads any file without setpriv")
def test_an_input_that_may_not_be_read_is_one_line_and_exit_1(tmp_path: Path, real_data_dir: Path) -> None:
    for name in ("mlp.onnx", "mlp.pt"):
        (tmp_path / name).write_bytes((SHIPPED / name).read_bytes())
        (tmp_path / name).chmod(0)
    (tmp_path / "data").mkdir(mode=0)
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "mlp.onnx").write_bytes((SHIPPED / "mlp.onnx").read_bytes())
    (tmp_path / "locked").chmod(0)
    (tmp_path / "photos" / "Dress").mkdir(parents=True)
    (tmp_path / "photos").chmod(0o400)  # listed, not searched
    (tmp_path / "unlisted" / "Dress").mkdir(parents=True)
    (tmp_path / "unlisted").chmod(0o300)  # searched, not listed: no class folders to be found
    cases = [
        (["infer", "--sample", "0:1", "--data-dir", str(real_data_dir), "--model", "mlp.onnx"], "mlp.onnx"),
        (["evaluate", "mlp.onnx"], "mlp.onnx"),
        (["bench", "mlp.onnx", "--runs", "10"], "mlp.onnx"),
        (["evaluate", "mlp.pt"], "mlp.pt"),  # not "not a torch.save archive"
        (["evaluate", "--data-dir", "data"], "data"),  # not a traceback
        (["evaluate", "--model", "locked/mlp.onnx"], "--model locked/mlp.onnx"),  # a folder on the way
        (["evaluate", "--photos", "photos"], "photos"),  # not photos/labels.csv, which may not exist
        (["evaluate", "--photos", "unlisted"], "unlisted"),
    ]

    def run_without_override(*args: str) -> subprocess.CompletedProcess[str]:
        command = [*WITHOUT_ROOTS_OVERRIDE, sys.executable, "-m", "edgefmnist.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)

    for args, name in cases:
        assert_one_line_error(
            run_without_override(*args), 1, f"edgefmnist: error: {name}: cannot read (Permission denied)"
        )
    (tmp_path / "unlisted").chmod(0o700)
    Image.new("L", (28, 28), 200).save(tmp_path / "unlisted" / "Dress" / "a.png")
    (tmp_path / "unlisted" / "labels.csv").write_text("file,source_class,accepted\nDress/a.png,dress,Dress\n")
    (tmp_path / "unlisted").chmod(0o300)
    result = run_without_override("evaluate", "--photos", "unlisted")  # labels.csv names every photo: no listing
    assert result.returncode == 0 and "1 photo (1 in domain" in result.stdout, result.stderr


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root reads any folder without setpriv")
def test_a_glob_names_the_folders_it_may_not_read(tmp_path: Path) -> None:
    for name in ("a.png", "closed/b.png", "unlisted/c.png"):
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (28, 28), 200).save(tmp_path / "photos" / name)
    (tmp_path / "photos" / "closed").chmod(0o400)  # listed, not searched
    (tmp_path / "photos" / "unlisted").chmod(0o300)  # searched, not listed
    unread = [
        f"edgefmnist: error: photos/{name}: cannot read (Permission denied), so the pictures inside were not searched"
        for name in ("closed", "unlisted")
    ]
    uniform = "edgefmnist: warning: photos/a.png: no object found: the picture is nearly uniform"
    none_read = "edgefmnist: error: photos/*/: cannot read any of the 2 folders that match, the first photos/closed"
    for pattern, code, stderr in (
        ("photos/**/*.png", 1, [uniform, *unread]),  # the rest classified, then an error line for each folder
        ("photos/*/", 1, [f"{none_read} (Permission denied)"]),
    ):
        command = [*WITHOUT_ROOTS_OVERRIDE, sys.executable, "-m", "edgefmnist.cli", "infer", "--image", pattern]
        result = subprocess.run(
            [*command, "--model", str(SHIPPED / "mlp.onnx")], capture_output=True, text=True, cwd=tmp_path, timeout=300
        )
        assert (result.returncode, result.stderr.splitlines()) == (code, stderr)
