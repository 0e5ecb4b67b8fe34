"""Pass/fail results of a check (export's parity, verify's accuracy): one mechanism for exit code 3.

    edgefmnist verify runs/mlp.int8.onnx --checkpoint runs/mlp.pt   # exit 3 when the check fails

A check result lists its failures; :meth:`Verdict.raise_if_failed` turns a failed one into
:class:`edgefmnist.errors.ValidationFailed` (exit code 3), for ``export`` and ``verify`` alike.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from edgefmnist.errors import ValidationFailed


class Verdict:
    """Pass/fail from a list of failures; mixed into the (dataclass) check results."""

    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}  # type: ignore[call-overload]

    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL: " + "; ".join(self.failures)

    def summary(self) -> str:
        """One line: what was compared, the figures, and :meth:`verdict`."""
        raise NotImplementedError

    def raise_if_failed(
        self, subject: str, reports: list[dict[str, Any]] | None = None, summary_shown: bool = False
    ) -> None:
        """Raise :class:`ValidationFailed` (exit code 3) naming ``subject`` when any check failed,
        with ``reports`` (by default ``[``:meth:`to_dict```]``) for a ``--json`` caller. The message
        holds the :meth:`summary`, or only the failures when ``summary_shown`` (the caller printed it)."""
        if not self.passed:
            told = "; ".join(self.failures) if summary_shown else self.summary()
            raise ValidationFailed(f"{subject}, validation failed: {told}", reports or [self.to_dict()])
