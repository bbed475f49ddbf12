"""What the demo measures about a model, and the rich table that compares them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class ModelReport:
    """Accuracy and costs of one model of the demo.

    Attributes:
        name: row label.
        test_accuracy: share of the held-out test split classified correctly.
        val_accuracy: the same on the validation split (what the search maximised).
        flops: FLOPs of one forward pass on one signal.
        params: number of parameters.
        latency_ms: median latency of one forward pass on one signal on this machine, in ms.
        onnxruntime_latency_ms: the same in ONNX Runtime (``None`` without the ``onnx`` extra).
    """

    name: str
    test_accuracy: float
    val_accuracy: float
    flops: int
    params: int
    latency_ms: float
    onnxruntime_latency_ms: float | None = None

    def to_dict(self) -> dict[str, float | int | str | None]:
        """The report as plain JSON-serialisable data."""
        return asdict(self)


def _percent_of(value: float, reference: float) -> str:
    return f"{100 * value / reference:.0f}%" if reference else "-"


def _latency(value: float, reference: float) -> str:
    return f"{value:.3f} ({_percent_of(value, reference)})"


def comparison_table(reports: Sequence[ModelReport]) -> Table:
    """A table with one row per model; costs also as a share of the first (reference) model."""
    if not reports:
        raise ValueError("comparison_table needs at least one model report")
    reference = reports[0]
    table = Table(title="autonas demo: original vs found subnet (MNIST-1D)")
    table.add_column("model")
    table.add_column("test acc", justify="right")
    table.add_column("val acc", justify="right")
    table.add_column("MFLOPs", justify="right")
    table.add_column("params", justify="right")
    table.add_column("latency (ms)", justify="right")
    with_ort = all(report.onnxruntime_latency_ms is not None for report in reports)
    if with_ort:
        table.add_column("ONNX Runtime (ms)", justify="right")
    for report in reports:
        ort = (
            [_latency(report.onnxruntime_latency_ms or 0.0, reference.onnxruntime_latency_ms or 0.0)]
            if with_ort
            else []
        )
        table.add_row(
            report.name,
            f"{100 * report.test_accuracy:.1f}%",
            f"{100 * report.val_accuracy:.1f}%",
            f"{report.flops / 1e6:.2f} ({_percent_of(report.flops, reference.flops)})",
            f"{report.params / 1e3:.1f}K ({_percent_of(report.params, reference.params)})",
            _latency(report.latency_ms, reference.latency_ms),
            *ort,
        )
    return table


def print_comparison(reports: Sequence[ModelReport], console: Console | None = None) -> None:
    """Print :func:`comparison_table` to ``console`` (stdout by default)."""
    (console or Console()).print(comparison_table(reports))
