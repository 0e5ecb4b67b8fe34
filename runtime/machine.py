"""What CPU a benchmark ran on: model, cores and the instruction sets that decide int8 speed.

    edgefmnist bench --json     # the "machine" object of the report

int8 pays off where the CPU has int8 dot-product instructions: AVX-512 VNNI, AVX-VNNI or
AMX on x86; ``asimddp`` on ARM (a Raspberry Pi 5's Cortex-A76 has it, a Pi 4's A72 does not).
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import onnxruntime

from edgefmnist.cores import available_cores

X86_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
ARM_FLAGS = ("asimd", "asimdhp", "asimddp", "i8mm", "sve")
INT8_DOT_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"}
ARM_CORES = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd0b": "Cortex-A76",
    "0xd0d": "Cortex-A77",
    "0xd41": "Cortex-A78",
}


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """The CPU's name and its flags from ``/proc/cpuinfo`` (x86 ``model name``/``flags``, ARM ``Features``)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    name = fields.get("model name") or ""
    if not name and fields.get("cpu part") in ARM_CORES:
        name = ARM_CORES[fields["cpu part"]]
    board = fields.get("model", "")
    if board and not board.isdigit():  # x86 gives a model number here, a Raspberry Pi its board name
        name = f"{name} ({board})" if name else board
    return name or platform.processor() or platform.machine(), flags


def machine_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """The machine section of a benchmark report."""
    try:
        name, flags = parse_cpuinfo(cpuinfo.read_text(errors="replace"))
    except OSError:
        name, flags = platform.processor() or platform.machine(), set()
    arch = platform.machine()
    relevant = ARM_FLAGS if arch.lower() in ("aarch64", "arm64") else X86_FLAGS
    return {
        "cpu": name,
        "arch": arch,
        "cores": available_cores(),
        "flags": [flag for flag in relevant if flag in flags],
        "int8_dot_product": bool(flags & INT8_DOT_FLAGS),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
