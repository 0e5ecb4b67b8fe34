"""mypy on the package as it installs, although ``export/``, ``runtime/`` and ``models/`` sit outside ``edgefmnist/``.

    make typecheck          # or: .venv/bin/python scripts/typecheck.py [extra mypy arguments]

setuptools maps those folders into ``edgefmnist.export``, ``edgefmnist.runtime`` and
``edgefmnist.pretrained`` (``[tool.setuptools.package-dir]`` in ``pyproject.toml``), which mypy
cannot read. This script builds that layout as a tree of symlinks under ``.mypy_cache/layout``
(read from ``pyproject.toml``, so it follows any change of the mapping), runs mypy on it with
the ``[tool.mypy]`` settings, and prints each finding with its path in this checkout.
Exit status: mypy's (0 when there are no findings).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from mypy import api

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = ROOT / ".mypy_cache" / "layout"
OTHER_FILES = ("tests", "scripts")  # checked as plain files against the mapped package


def package_dirs(pyproject: Path) -> dict[str, Path]:
    """``{"edgefmnist": ROOT/edgefmnist, "edgefmnist.export": ROOT/export, ...}`` from setuptools' settings."""
    settings = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = settings.get("package-dir", {})
    return {package: ROOT / mapping.get(package, package.replace(".", "/")) for package in settings["packages"]}


def build_layout(packages: dict[str, Path]) -> dict[Path, Path]:
    """Symlink every package's ``.py`` files into ``LAYOUT`` at their import path; return link -> source."""
    shutil.rmtree(LAYOUT, ignore_errors=True)
    links: dict[Path, Path] = {}
    for package, source in packages.items():
        target = LAYOUT.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for module in sorted(source.glob("*.py")):
            (target / module.name).symlink_to(module)
            links[target / module.name] = module
    return links


def main(extra: list[str]) -> int:
    packages = package_dirs(ROOT / "pyproject.toml")
    links = build_layout(packages)
    top = sorted({package.split(".")[0] for package in packages})
    files = [str(LAYOUT / name) for name in top] + [str(ROOT / name) for name in OTHER_FILES if (ROOT / name).is_dir()]
    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), *files, *extra])
    for line in (stdout + stderr).splitlines():
        for link, source in links.items():
            line = line.replace(str(link), str(source.relative_to(ROOT))).replace(
                str(link.relative_to(ROOT)), str(source.relative_to(ROOT))
            )
        print(line)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
