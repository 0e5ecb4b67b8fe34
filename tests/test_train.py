"""Training on the real data learns, is reproducible, keeps the best epoch, and round-trips."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_in_process
from torch import nn

from edgefmnist.checkpoint import Checkpoint, checkpoint_bytes, load_checkpoint
from edgefmnist.data import FashionMNIST, Split
from edgefmnist.errors import CheckpointError, EdgeFmnistError, WriteFailed
from edgefmnist.recipes import Schedule, get_recipe
from edgefmnist.train import accuracy, make_optimizer, predict_logits, train
from edgefmnist.training_run import run_training


def subset(data: FashionMNIST, n: int, evaluated: int | None = None) -> FashionMNIST:
    """The first ``n`` training images; with ``evaluated``, also only that many validation and test images."""

    def head(split: Split, count: int) -> Split:
        return Split(split.images[:count], split.labels[:count])

    data = dataclasses.replace(data, train=head(data.train, n))
    if evaluated is not None:
        data = dataclasses.replace(data, validation=head(data.validation, evaluated), test=head(data.test, evaluated))
    return data


@pytest.mark.slow
def test_short_real_training_learns_and_is_reproducible(fashion) -> None:
    recipe = get_recipe("mlp", "best").with_overrides(epochs=2)
    small = subset(fashion, 10_000)
    first = train("mlp", recipe, small, seed=1)
    second = train("mlp", recipe, small, seed=1)
    assert first.metrics["test_accuracy"] > 0.80  # chance is 0.10
    assert first.metrics == {**second.metrics, "train_seconds": first.metrics["train_seconds"]}
    for a, b in zip(first.net.state_dict().values(), second.net.state_dict().values(), strict=False):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.slow
def test_best_epoch_is_chosen_by_validation(fashion) -> None:
    recipe = get_recipe("mlp", "tutorial").with_overrides(epochs=6, lr=0.5)  # lr too high: erratic
    checkpoint = train("mlp", recipe, subset(fashion, 5_000), seed=0)
    history = checkpoint.history
    best = max(history, key=lambda h: h["val_accuracy"])
    assert checkpoint.metrics["best_epoch"] == best["epoch"]
    assert checkpoint.metrics["val_accuracy"] == best["val_accuracy"] == accuracy(checkpoint.net, fashion.validation)
    assert len(history) == checkpoint.metrics["epochs_run"] == 6


def test_patience_stops_training_when_validation_stops_improving(fashion) -> None:
    # lr 0: the weights never change, so validation accuracy is flat and no epoch after the first is better.
    frozen = get_recipe("mlp", "tutorial").with_overrides(epochs=5, patience=2, lr=0.0)
    tiny = subset(fashion, 64, evaluated=500)
    stopped = train("mlp", frozen, tiny, seed=0)
    assert [h["epoch"] for h in stopped.history] == [1, 2, 3]  # epochs 2 and 3 without a better one: stop
    assert stopped.metrics["best_epoch"] == 1 and stopped.metrics["epochs_run"] == 3
    never = train("mlp", frozen.with_overrides(patience=0), tiny, seed=0)
    assert len(never.history) == 5  # patience 0: every epoch runs


@pytest.mark.slow
def test_cnn_trains_with_augmentation(fashion) -> None:
    recipe = get_recipe("cnn", "best").with_overrides(epochs=1)
    checkpoint = train("cnn", recipe, subset(fashion, 5_000), seed=0)
    assert recipe.augment and checkpoint.metrics["test_accuracy"] > 0.60


def test_checkpoint_round_trip(tmp_path: Path, fashion) -> None:
    recipe = get_recipe("cnn", "best").with_overrides(epochs=1)
    checkpoint = train("cnn", recipe, subset(fashion, 512, evaluated=500), seed=3)
    path = tmp_path / "ck.pt"
    path.write_bytes(checkpoint_bytes(checkpoint))
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["class_names"][0] == "T-shirt/top" and raw["data_sha256"] == fashion.sha256
    loaded = load_checkpoint(path)
    assert loaded.recipe == recipe and loaded.net_config == checkpoint.net_config and loaded.seed == 3
    assert loaded.metrics == checkpoint.metrics and loaded.history == checkpoint.history
    images = fashion.test.images[:64]
    np.testing.assert_array_equal(predict_logits(loaded.net, images), predict_logits(checkpoint.net, images))


class Exploit:
    def __reduce__(self):
        return (print, ("code ran",))


@pytest.mark.parametrize(
    "make_file, message",
    [
        (lambda p: torch.save({"x": Exploit()}, p), "refused, it holds objects other than plain data"),
        (lambda p: p.write_bytes(pickle.dumps(Exploit())), "not a readable PyTorch checkpoint"),
        (lambda p: p.write_bytes(b""), "not a readable PyTorch checkpoint"),
        (lambda p: torch.save({"format": "something else"}, p), "not an edgefmnist checkpoint"),
    ],
)
def test_bad_checkpoints_are_refused(tmp_path: Path, make_file, message: str, capfd) -> None:
    path = tmp_path / "bad.pt"
    make_file(path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    assert "code ran" not in capfd.readouterr().out


def test_checkpoint_of_another_architecture_is_refused(tmp_path: Path, fashion) -> None:
    checkpoint = train("mlp", get_recipe("mlp", "best").with_overrides(epochs=1), subset(fashion, 256, evaluated=500))
    path = tmp_path / "ck.pt"
    path.write_bytes(checkpoint_bytes(checkpoint))
    payload = torch.load(path, weights_only=True)
    payload["net_config"]["arch"] = "cnn"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_checkpoint(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(path)


@pytest.mark.slow
def test_run_training_writes_checkpoint_history_and_curves(tmp_path: Path, real_data_dir: Path) -> None:
    out = tmp_path / "nested" / "mlp.pt"
    report = run_training("mlp", "best", epochs=1, data_dir=real_data_dir, out=out)
    assert Path(report["checkpoint"]) == out and out.is_file()
    history = json.loads(Path(report["history"]).read_text())
    assert len(history) == 1 and history[0]["val_accuracy"] == report["metrics"]["val_accuracy"]
    assert Path(report["curves"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["parameters"] == 266_610 and report["metrics"]["test_accuracy"] > 0.8
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_recipes_are_validated_and_the_schedule_applies_to_sgd() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'cosine'; expected one of constant, onecycle"):
        get_recipe("mlp", "tutorial").with_overrides(schedule="cosine")
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        get_recipe("mlp", "tutorial").with_overrides(optimizer="adam")
    with pytest.raises(ValueError, match="dropout 1.5 is not between 0 and 1"):
        get_recipe("mlp", "best").with_overrides(dropout=1.5)
    with pytest.raises(ValueError, match="rotation_probability -0.1 is not between 0 and 1"):
        get_recipe("cnn", "best").with_overrides(rotation_probability=-0.1)
    with pytest.raises(ValueError, match="rotation_degrees 200 is not between 0 and 180"):
        get_recipe("cnn", "best").with_overrides(rotation_degrees=200)
    recipe = get_recipe("mlp", "tutorial").with_overrides(schedule="onecycle")
    assert recipe.schedule is Schedule.onecycle and recipe.to_dict()["schedule"] == "onecycle"
    optimizer, scheduler = make_optimizer(nn.Linear(2, 2), recipe, steps=10)
    assert isinstance(optimizer, torch.optim.SGD) and scheduler is not None  # SGD no longer ignores its schedule
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert max(rates) == pytest.approx(recipe.lr) and rates[0] < recipe.lr / 10 and rates[-1] < recipe.lr / 10
    assert optimizer.param_groups[0]["momentum"] == 0  # plain SGD: the cycle moves the rate only


def test_the_tutorial_recipe_was_called_seed() -> None:
    with pytest.warns(DeprecationWarning, match="recipe 'seed' is deprecated: use 'tutorial'"):
        assert get_recipe("cnn", "seed") == get_recipe("cnn", "tutorial")
    with pytest.raises(ValueError, match="unknown recipe 'fast'"):
        get_recipe("mlp", "fast")


def test_train_warns_on_stderr_and_runs_the_recipe_a_former_name_stands_for(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgefmnist.training_run

    asked = []

    def dry_run(arch: str, recipe: str, **_: object) -> dict[str, object]:
        asked.append((arch, recipe))
        return {"images": {"train": 1}}

    monkeypatch.setattr(edgefmnist.training_run, "run_training", dry_run)
    result = run_in_process("train", "--arch", "cnn", "--recipe", "seed", "--dry-run")
    assert result.returncode == 0 and asked == [("cnn", "tutorial")]
    assert result.stderr == "edgefmnist: warning: recipe 'seed' is deprecated: use 'tutorial'\n"
    assert result.stdout.startswith("cnn/tutorial: dry run passed")


def test_dry_run_runs_one_batch_of_each_phase_and_writes_nothing(
    tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arch, recipe = "mlp", "photo"  # photo views and one-cycle (make train-dry-run covers every recipe)
    out = tmp_path / "never" / "model.pt"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # photo views would be cached in cache/edgefmnist
    report = run_training(arch, recipe, data_dir=real_data_dir, out=out, dry_run=True)
    batch = get_recipe(arch, recipe).batch_size
    assert report["dry_run"] and report["images"] == {"train": batch, "validation": 2000, "test": 2000}
    assert report["metrics"]["epochs_run"] == 1 and 0.0 <= report["metrics"]["test_accuracy"] <= 1.0
    assert report["checkpoint"] is None and not out.parent.exists()
    assert not (tmp_path / "cache" / "edgefmnist").exists()


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("where", ["/proc", "a file", "a directory"])
def test_an_unwritable_output_is_refused_before_training(
    where: str, dry_run: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded before the output was checked")

    monkeypatch.setattr("edgefmnist.training_run.load_fashion_mnist", no_data)
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder.pt").mkdir()
    out, error = {
        "/proc": (Path("/proc/edgefmnist-x.pt"), WriteFailed),
        "a file": (tmp_path / "file" / "x.pt", WriteFailed),
        "a directory": (tmp_path / "folder.pt", EdgeFmnistError),
    }[where]
    with pytest.raises(error, match="cannot write|is a directory"):
        run_training("mlp", "tutorial", out=out, dry_run=dry_run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder.pt"]


@pytest.mark.parametrize("full_at", ["mlp.pt", "mlp.history.json", "mlp.curves.png"])
def test_a_full_disk_leaves_the_checkpoint_history_and_curves_as_they_were(
    full_at: str, tmp_path: Path, real_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They are written together: a write that fails (torch's own writer raised RuntimeError on a
    full disk) leaves none of the three new, and says so in one line."""
    import errno

    from edgefmnist import atomic
    from edgefmnist.contract import Arch
    from edgefmnist.nets import NetConfig, build_net

    config = NetConfig(arch=Arch.mlp)
    trained = Checkpoint(
        build_net(config),
        config,
        get_recipe("mlp", "tutorial"),
        metrics={"test_accuracy": 0.5, "val_accuracy": 0.5},
        history=[{"epoch": 1, "loss": 1.0, "train_accuracy": 0.5, "val_accuracy": 0.5}],
    )
    monkeypatch.setattr("edgefmnist.training_run.train", lambda *args, **kwargs: trained)
    real_write_all = atomic.write_all
    writing: list[int] = []

    def full_disk(fd: int, data: bytes) -> None:
        writing.append(fd)
        if len(writing) == ["mlp.pt", "mlp.history.json", "mlp.curves.png"].index(full_at) + 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_all(fd, data)

    monkeypatch.setattr(atomic, "write_all", full_disk)
    out = tmp_path / "mlp.pt"
    (tmp_path / "mlp.history.json").write_text("[]")  # an earlier run's, which stays
    with pytest.raises(WriteFailed, match=f"{full_at}: cannot write \\(No space left on device\\)"):
        run_training("mlp", "tutorial", epochs=1, data_dir=real_data_dir, out=out)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mlp.history.json"]
    assert (tmp_path / "mlp.history.json").read_text() == "[]"
