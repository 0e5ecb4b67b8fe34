"""The install instructions keep pip from pulling PyTorch's multi-GB CUDA build on x86."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_pip_users_are_told_to_take_the_cpu_build_first() -> None:
    readme = (REPO / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start") : readme.index("## Command line")]
    commands = [line.split("#")[0].strip() for line in quick_start.splitlines() if line.startswith("pip install")]
    cpu_torch = commands.index("pip install torch --index-url https://download.pytorch.org/whl/cpu")
    assert commands.index("pip install '.[train]'") > cpu_torch, "the CPU build must come first"
    assert "make setup" in quick_start and "recommended" in quick_start


def test_make_setup_installs_the_pinned_torch_before_the_project() -> None:
    recipe = (REPO / "Makefile").read_text().split("$(VENV)/.installed: pyproject.toml")[1].split("\n\n")[0]
    torch_line = next(i for i, line in enumerate(recipe.splitlines()) if re.search(r"pip install .*torch==", line))
    project_line = next(i for i, line in enumerate(recipe.splitlines()) if "-e '.[train" in line)
    assert torch_line < project_line
