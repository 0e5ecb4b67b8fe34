"""`edgefmnist bench`: the report's structure, the side-by-side baseline, the CPU facts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgefmnist.runtime.bench import BenchRow, BenchSettings, format_table, ratios, recommend, run_bench, time_calls
from edgefmnist.runtime.machine import parse_cpuinfo
from helpers import assert_one_line_error, run_in_process

from edgefmnist.contract import BENCH_BLOCKS
from edgefmnist.errors import UsageError

PI4_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd08

Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
PI5_FEATURES = (
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"
    "CPU part\t: 0xd0b\n"
)
X86_CPUINFO = (
    "model\t\t: 167\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse4_2 avx2 avx512f avx512_vnni\n"
)


def test_cpuinfo_names_the_cpu_and_its_int8_instructions() -> None:
    name, flags = parse_cpuinfo(PI4_CPUINFO)
    assert name == "Cortex-A72 (Raspberry Pi 4 Model B Rev 1.4)" and "asimddp" not in flags
    name, flags = parse_cpuinfo(PI5_FEATURES)
    assert name == "Cortex-A76" and "asimddp" in flags
    name, flags = parse_cpuinfo(X86_CPUINFO)
    assert name == "Intel(R) Xeon(R) Processor" and "avx512_vnni" in flags


def within_noise(ratio: float, pooled: float) -> bool:
    """A median of block ratios is near the ratio of the pooled medians (not equal: the blocks differ)."""
    return ratio > 0 and 0.5 < ratio / pooled < 2


def block_row(p50_per_block: list[float], images_per_s: list[float], name: str = "m.onnx") -> BenchRow:
    return BenchRow(
        model=name,
        path=name,
        engine="edgefmnist",
        precision="int8" if ".int8." in name else "fp32",
        size_bytes=1,
        accuracy=0.9,
        latency_us={},
        throughput={},
        cold_start_ms=1.0,
        peak_rss_mib=1.0,
        per_block={"p50": p50_per_block, "throughput_8": images_per_s},
    )


def test_ratios_are_medians_of_block_ratios_so_a_slow_stretch_cancels_out() -> None:
    # block 2 ran while the machine was busy: 10x slower for both rows, which were timed in it together
    ours, base = block_row([10, 100, 11, 9], [800, 80, 700, 900]), block_row([20, 200, 20, 20], [400, 40, 400, 400])
    assert ratios(ours, base) == {"p50": 0.5, "throughput_8": 2.0}
    assert "per_block" not in ours.to_dict()  # the JSON keeps the figures, not the raw blocks


def test_the_recommendation_weighs_int8_against_its_fp32_model_by_their_in_block_ratio() -> None:
    fp32, int8 = block_row([], [], "cnn.onnx"), block_row([], [], "cnn.int8.onnx")
    fp32.accuracy = int8.accuracy = 0.93
    fp32.latency_us, int8.latency_us = {"p50": 83.0}, {"p50": 65.0}  # the pooled p50s favour int8 ...
    int8.fp32, int8.vs_fp32 = "cnn.onnx", {"p50": 1.1}  # ... but block by block it was 10 % slower
    assert (recommend([fp32, int8]) or {})["model"] == "cnn.onnx"
    int8.vs_fp32 = {"p50": 0.9}
    assert (recommend([fp32, int8]) or {})["model"] == "cnn.int8.onnx"


def test_two_files_of_one_name_in_two_folders_are_named_by_their_paths() -> None:
    from edgefmnist.runtime.bench import name_clashes_by_path, shown_name

    rows = [block_row([], [], "mlp.onnx"), block_row([], [], "mlp.onnx"), block_row([], [], "cnn.onnx")]
    rows[0].path, rows[1].path, rows[2].path = "models/mlp.onnx", "old/mlp.onnx", "models/cnn.onnx"
    rows[0].reference, rows[0].reference_path = "mlp.onnx", "old/mlp.onnx"  # bench models/mlp.onnx --reference old/
    rows[1].engine, rows[1].reference = "onnxruntime", "self"
    plain = block_row([], [], "mlp.onnx")
    plain.path, plain.engine = "models/mlp.onnx", "onnxruntime"  # one file, two engines: no clash
    name_clashes_by_path([*rows, plain])
    assert [row.model for row in [*rows, plain]] == ["models/mlp.onnx", "old/mlp.onnx", "cnn.onnx", "models/mlp.onnx"]
    assert rows[0].reference == "old/mlp.onnx" and "reference_path" not in rows[0].to_dict()
    assert shown_name(rows, Path("old/mlp.onnx")) == "old/mlp.onnx"  # infer_overhead's and photos' model
    assert shown_name(rows, Path("models/cnn.onnx")) == shown_name(rows, Path("x/cnn.onnx")) == "cnn.onnx"


def test_every_call_asked_for_is_timed_and_blocks_never_run_empty() -> None:
    for runs in (10, 210, 3):
        calls: list[np.ndarray] = []
        blocks = time_calls({"a": calls.append, "b": calls.append}, {"a": np.zeros(0), "b": np.zeros(0)}, runs, 0)
        assert [sum(map(len, timed)) for timed in blocks.values()] == [runs, runs] and len(calls) == 2 * runs
        assert all(timed for per_runner in blocks.values() for timed in per_runner)
        assert len(blocks["a"]) == min(runs, BENCH_BLOCKS) == len(blocks["b"])


def test_references_are_refused_unless_each_has_one_model_to_compare_with(tmp_path: Path) -> None:
    from edgefmnist.runtime.predictor import default_model_path

    mlp_int8 = str(default_model_path().parent / "mlp.int8.onnx")
    mlp_ref, cnn_ref = str(REFERENCES / "mlp.int8.previous.onnx"), str(REFERENCES / "cnn.int8.previous.onnx")
    older = tmp_path / "mlp.int8.older.onnx"
    older.write_bytes(Path(mlp_ref).read_bytes())
    # refused before the test set is loaded: --data-dir holds no data set
    refusals = [
        ([mlp_int8, "--reference", cnn_ref], f"--reference {cnn_ref}", "no int8 cnn model given"),
        ([mlp_int8, "--reference", mlp_ref, "--reference", str(older)], "both int8 mlp", "one reference per"),
        ([mlp_int8, mlp_ref, "--reference", mlp_ref], f"--reference {mlp_ref}", "also given as a model"),
    ]
    for args, *fragments in refusals:
        result = run_in_process("bench", *args, "--runs", "10", "--data-dir", str(tmp_path))
        assert_one_line_error(result, 2, *fragments)


def test_one_reference_under_two_spellings_counts_once() -> None:
    from edgefmnist.runtime.bench import check_references
    from edgefmnist.runtime.predictor import default_model_path

    reference = REFERENCES / "mlp.int8.previous.onnx"
    spelled = REFERENCES / ".." / "benchmarks" / reference.name
    assert check_references([default_model_path().parent / "mlp.int8.onnx"], [reference, spelled]) == [reference]


def test_one_model_under_two_names_is_timed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgefmnist.runtime import bench
    from edgefmnist.runtime.predictor import default_model_path

    model = default_model_path().parent / "mlp.onnx"
    (tmp_path / "alias.onnx").symlink_to(model)
    timed: list[list[Path]] = []

    def recording(models: list[Path], *args: object, **kwargs: object) -> dict:
        timed.append(models)
        raise KeyboardInterrupt  # stop before any timing

    monkeypatch.setattr(bench, "run_bench", recording)
    run_in_process("bench", str(model), str(tmp_path / "alias.onnx"), f"{model.parent}/./mlp.onnx")
    assert timed == [[model]]


def test_a_model_named_in_capitals_is_benched_as_its_kind(tmp_path: Path) -> None:
    """``MLP.INT8.ONNX`` is fed uint8 and timed beside its fp32 model, ``mlp.PT`` through PyTorch."""
    from edgefmnist.runtime.bench import input_dtype, matching_reference, plan, timing_groups
    from edgefmnist.runtime.predictor import default_model_path

    shipped = default_model_path().parent
    fp32, int8, checkpoint = tmp_path / "MLP.Onnx", tmp_path / "MLP.INT8.ONNX", tmp_path / "mlp.PT"
    for link, name in ((fp32, "mlp.onnx"), (int8, "mlp.int8.onnx"), (checkpoint, "mlp.pt")):
        link.symlink_to(shipped / name)
    assert input_dtype(int8) == np.uint8 and input_dtype(fp32) == np.float32
    assert dict(plan([fp32, checkpoint], torch_available=True)) == {
        fp32: ("edgefmnist", "onnxruntime"),
        checkpoint: ("pytorch",),
    }
    assert [[path for path, _ in group] for group in timing_groups([fp32, int8], torch_available=False)] == [
        [fp32, int8]
    ]
    assert matching_reference(int8, [REFERENCES / "mlp.int8.previous.onnx"]) == REFERENCES / "mlp.int8.previous.onnx"


def test_an_int8_model_is_paired_with_its_fp32_model_in_any_case(tmp_path: Path) -> None:
    from edgefmnist.export.pipeline import check_out_path
    from edgefmnist.runtime.bench import is_int8_of

    from edgefmnist.contract import int8_name

    assert int8_name("MLP.ONNX") == "MLP.int8.onnx" and int8_name("mlp.onnx") == "mlp.int8.onnx"
    assert is_int8_of(tmp_path / "MLP.INT8.ONNX", tmp_path / "MLP.onnx")
    assert not is_int8_of(tmp_path / "cnn.int8.onnx", tmp_path / "mlp.onnx")
    check_out_path(tmp_path / "MLP.ONNX", tmp_path / "mlp.pt", tmp_path / "MLP.int8.onnx")  # an ONNX name
    with pytest.raises(UsageError, match="names an int8 model"):
        check_out_path(tmp_path / "mlp.INT8.onnx", tmp_path / "mlp.pt", None)


@pytest.mark.slow
def test_bench_report_puts_the_predictor_beside_plain_onnxruntime(shipped_mlp: Path, fashion) -> None:
    models = [shipped_mlp, shipped_mlp.with_name("mlp.int8.onnx")]
    settings = BenchSettings(batches=(1, 8), threads=1, runs=50, warmup=5, cold_starts=1)
    report = json.loads(json.dumps(run_bench(models, fashion.test, settings, torch_available=True)))
    rows = report["rows"]
    assert [(r["model"], r["engine"]) for r in rows] == [
        ("mlp.onnx", "edgefmnist"),
        ("mlp.onnx", "onnxruntime"),
        ("mlp.int8.onnx", "edgefmnist"),
        ("mlp.int8.onnx", "onnxruntime"),
    ]
    for ours, plain in (rows[0:2], rows[2:4]):
        assert ours["accuracy"] == plain["accuracy"] > 0.8  # same model, same predictions
        assert ours["precision"] == plain["precision"] and ours["size_bytes"] == Path(ours["path"]).stat().st_size
        assert set(ours["vs_plain"]) == {"p50", "throughput_1", "throughput_8"} and not plain["vs_plain"]
        assert ours["latency_us"]["p50"] <= ours["latency_us"]["p90"] <= ours["latency_us"]["p99"]
        assert within_noise(ours["vs_plain"]["p50"], ours["latency_us"]["p50"] / plain["latency_us"]["p50"])
        assert all(row["cold_start_ms"] > 0 and 20 < row["peak_rss_mib"] < 2000 for row in (ours, plain))
    assert [r["precision"] for r in rows[::2]] == ["fp32", "int8"]
    assert report["recommendation"]["model"] in {"mlp.onnx", "mlp.int8.onnx"}
    assert report["machine"]["cores"] >= 1 and isinstance(report["machine"]["int8_dot_product"], bool)
    overhead = report["infer_overhead"]
    assert overhead["edgefmnist_infer"]["wall_ms"] > 0 and overhead["bare_script"]["peak_rss_mib"] > 20
    markdown = format_table(report, markdown=True).splitlines()
    assert (
        markdown[0].startswith("| model | engine |")
        and len([line for line in markdown if line.startswith("| mlp")]) == 4
    )


def test_bench_rejects_bad_batch_sizes() -> None:
    for bad in ("0,1", "1,x", "", "1,100000000", "1,10001", "\u0663", "+5", "9" * 5000, "00"):
        result = run_in_process("bench", "--batch", bad)
        assert_one_line_error(result, 2, "--batch")


REFERENCES = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_bench_times_a_reference_file_beside_its_model_and_reports_the_call_floor(fashion, monkeypatch) -> None:
    from edgefmnist.runtime import bench
    from edgefmnist.runtime.predictor import default_model_path

    model, reference = default_model_path().parent / "mlp.int8.onnx", REFERENCES / "mlp.int8.previous.onnx"
    fp32 = model.with_name("mlp.onnx")
    settings = BenchSettings(batches=(1, 8), threads=1, runs=50, warmup=5, cold_starts=1)
    timed_together: list[list[str]] = []
    time_calls = bench.time_calls

    def recording_time_calls(runners, *args, **kwargs):
        timed_together.append(list(runners))
        return time_calls(runners, *args, **kwargs)

    monkeypatch.setattr(bench, "time_calls", recording_time_calls)
    report = json.loads(
        json.dumps(run_bench([fp32, model], fashion.test, settings, torch_available=False, references=[reference]))
    )
    rows = report["rows"]
    assert [(r["model"], r["engine"], r["reference"]) for r in rows] == [
        ("mlp.onnx", "edgefmnist", ""),  # no fp32 reference given: no reference row
        ("mlp.onnx", "onnxruntime", ""),
        ("mlp.int8.onnx", "edgefmnist", "mlp.int8.previous.onnx"),
        ("mlp.int8.onnx", "onnxruntime", ""),
        ("mlp.int8.previous.onnx", "onnxruntime", "self"),
    ]
    ours, previous = rows[2], rows[4]
    assert previous["precision"] == "int8" and abs(previous["accuracy"] - ours["accuracy"]) < 0.005
    assert within_noise(ours["vs_reference"]["p50"], ours["latency_us"]["p50"] / previous["latency_us"]["p50"])
    assert set(ours["vs_reference"]) == {"p50", "throughput_1", "throughput_8"} and not rows[0]["vs_reference"]
    assert not previous["vs_plain"] and report["recommendation"]["model"] in {"mlp.onnx", "mlp.int8.onnx"}
    # fp32, int8 and the reference take turns in the same blocks, so int8 gets a fair ratio to fp32
    assert (
        timed_together[:2]
        == [
            [
                f"{path} via {engine}"
                for path, engine in zip(
                    (fp32, fp32, model, model, reference),
                    ("edgefmnist", "onnxruntime") * 2 + ("reference",),
                    strict=True,
                )
            ]
        ]
        * 2
    )  # batch 1, then batch 8
    assert within_noise(ours["vs_fp32"]["p50"], ours["latency_us"]["p50"] / rows[0]["latency_us"]["p50"])
    assert set(ours["vs_fp32"]) == {"p50", "throughput_1", "throughput_8"} and not rows[0]["vs_fp32"]
    assert ours["fp32"] == str(fp32) and not rows[0]["fp32"]
    floor = report["call_floor_us"]
    assert 0 < floor["iobinding"]["p50"] < ours["latency_us"]["p90"] and floor["run"]["p50"] > 0
    text = format_table(report)
    assert "ref: plain onnxruntime on mlp.int8.previous.onnx" in text and "per-call floor (a one-node graph)" in text
    assert "p50 vs fp32" in text.splitlines()[0] and f"{ours['vs_fp32']['p50']:.2f}x" in text.splitlines()[3]


def one_row_report(**row: object) -> dict:
    """A bench report of one edgefmnist row at batch 1, with ``row``'s keys changed."""
    machine = {"cpu": "cpu", "arch": "x86_64", "cores": 2, "flags": [], "int8_dot_product": False, "onnxruntime": "1"}
    base = {
        "model": "m.onnx",
        "engine": "edgefmnist",
        "precision": "fp32",
        "size_bytes": 2048,
        "accuracy": 0.9,
        "latency_us": {"p50": 10.0, "p90": 11.0, "p99": 12.0},
        "throughput": {"1": 1000.0},
        "vs_plain": {},
        "cold_start_ms": 50.0,
        "peak_rss_mib": 60.0,
    }
    report = {"settings": {"batches": [1], "threads": 1}, "rows": [base | row], "machine": machine}
    return report | {"recommendation": None, "infer_overhead": None}


def test_the_bench_table_leaves_out_the_columns_no_row_has_a_figure_in() -> None:
    alone = format_table(one_row_report()).splitlines()[0]
    assert "vs plain" not in alone and "vs ref" not in alone and "vs fp32" not in alone and "peak MiB" in alone
    compared = format_table(one_row_report(vs_plain={"p50": 0.9, "throughput_1": 1.1}), markdown=True).splitlines()
    assert compared[0].count("vs plain") == 2 and "vs ref" not in compared[0]
    assert compared[0].count("|") == compared[1].count("|") == compared[2].count("|")  # the separator row fits


def test_the_bench_table_keeps_a_model_name_in_its_cell() -> None:
    """A control character is escaped and, in Markdown, a ``|`` cannot open a column of its own."""
    report = one_row_report(model="a|b\nc.onnx")
    text, markdown = format_table(report), format_table(report, markdown=True)
    assert text.splitlines()[1].startswith("a|b\\nc.onnx  edgefmnist")
    header, _, cells = markdown.splitlines()[:3]
    assert cells.startswith("| a\\|b\\nc.onnx | edgefmnist |")
    assert cells.replace("\\|", "").count("|") == header.count("|")


def test_bench_says_when_every_start_compiles_the_modules_from_source(tmp_path: Path) -> None:
    """With no cached bytecode (``PYTHONDONTWRITEBYTECODE`` on a checkout), the start-up figure
    includes compiling edgefmnist's modules; the JSON and the table say so."""
    from edgefmnist.runtime.bench import format_table

    check = "from edgefmnist.runtime.bench import compiled_from_source; print(compiled_from_source())"
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    assert subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True).stdout == "True\n"
    del env["PYTHONDONTWRITEBYTECODE"]
    subprocess.run([sys.executable, "-c", "import edgefmnist.runtime.infer"], env=env, check=True)  # caches it
    assert subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True).stdout == "False\n"
    cost: dict[str, object] = {"extra_ms": 100.0, "extra_mib": 10.0, "compiled_from_source": True}
    cost |= {"edgefmnist_infer": {"wall_ms": 250.0}, "bare_script": {"wall_ms": 150.0}}
    machine = {"cpu": "cpu", "arch": "x86_64", "cores": 2, "flags": [], "int8_dot_product": False, "onnxruntime": "1"}
    report: dict[str, object] = {"settings": {"batches": [1], "threads": 1}, "rows": [], "machine": machine}
    assert format_table(report | {"recommendation": None, "infer_overhead": cost}).endswith(
        "(250 vs 150 ms); its modules were compiled from source at every start (no cached bytecode)"
    )


def test_the_model_card_says_how_int8_compared_with_fp32_in_the_bench() -> None:
    from edgefmnist.model_card import int8_speed_text

    rows = [
        {"model": "mlp.int8.onnx", "engine": "edgefmnist", "vs_fp32": {"p50": 0.62}, "fp32": "models/mlp.onnx"},
        {"model": "mlp.int8.onnx", "engine": "onnxruntime", "vs_fp32": {}, "fp32": ""},
        {"model": "cnn.int8.onnx", "engine": "edgefmnist", "vs_fp32": {"p50": 1.04}, "fp32": "/x/cnn.onnx"},
    ]
    assert int8_speed_text({"rows": rows}) == (
        "mlp.int8.onnx took 0.62x the batch-1 p50 of mlp.onnx, cnn.int8.onnx 1.04x that of cnn.onnx "
        "(timed in the same blocks)"
    )
    assert "no int8 model" in int8_speed_text({"rows": rows[1:2]})


def test_a_model_name_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    from edgefmnist.runtime.predictor import default_model_path

    (model := tmp_path / os.fsdecode(b"m\xff.onnx")).write_bytes(default_model_path().read_bytes())
    from edgefmnist.cores import available_cores

    crowded = ["--threads", str(available_cores() + 1)]  # its warning waits for the inputs: one line still
    result = run_in_process("bench", str(model), "--runs", "10", "--warmup", "0", "--batch", "1", *crowded)
    assert_one_line_error(result, 1, "m\\xff.onnx: the path holds a byte that is not UTF-8")


def test_benchmark_processes_do_not_import_a_checkout_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a checkout installed with ``pip install .``, ``python -c`` would import its ``edgefmnist/``,
    which lacks ``runtime``, before the installed package."""
    import sys

    from edgefmnist.runtime.bench import run_process

    (tmp_path / "edgefmnist").mkdir()
    (tmp_path / "edgefmnist" / "__init__.py").write_text("raise ImportError('the checkout, not the package')\n")
    monkeypatch.chdir(tmp_path)
    wall_ms, peak_mib = run_process([sys.executable, "-c", "import edgefmnist.runtime.predictor"], "an import")
    assert wall_ms > 0 and peak_mib > 0


def test_measure_process_gives_the_process_s_own_peak_its_output_and_its_last_error_line() -> None:
    import sys

    from edgefmnist.runtime.bench import measure_process

    probe = "import os, sys; print(sorted(os.sched_getaffinity(0))); sys.stderr.write('a\\n'); sys.exit('boom')"
    cpu = max(os.sched_getaffinity(0))
    failed = measure_process([sys.executable, "-c", probe], cpu=cpu)
    assert (failed.exit_code, failed.stdout, failed.last_error) == (1, f"[{cpu}]\n", "boom") and failed.wall_ms > 0
    raw = "import sys; sys.stderr.buffer.write(bytes([0xFF, 0xFE]) + b' raw')"  # not UTF-8: still read
    assert measure_process([sys.executable, "-c", raw]).last_error == "\\xff\\xfe raw"
    touch = "b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1"
    small, large = (measure_process([sys.executable, "-c", code]) for code in ("pass", touch))
    assert small.exit_code == large.exit_code == 0 and small.peak_rss_mib < 100 < 200 < large.peak_rss_mib
    assert measure_process(["/nonexistent/program"]).last_error.startswith("FileNotFoundError")
