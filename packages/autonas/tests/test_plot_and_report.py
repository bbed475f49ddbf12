"""The candidate plot and the comparison table of the demo."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from rich.console import Console

from autonas.demo.plot import plot_candidates
from autonas.demo.report import ModelReport, comparison_table, print_comparison


def test_plot_writes_a_png(tmp_path) -> None:
    candidates = [{"metric": m, "constraints": {"flops": f}} for f, m in [(2e6, 0.8), (3e6, 0.9), (4e6, 0.85)]]
    path = plot_candidates(
        candidates,
        tmp_path / "plots" / "candidates.png",
        flops_limit=4.5e6,
        chosen=(3e6, 0.9),
        original=(9e6, 0.95),
    )
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (840, 540)  # 7 x 4.5 inches at 120 dpi
    assert [p.name for p in path.parent.iterdir()] == ["candidates.png"]  # written atomically, nothing left over


def _report(name: str, scale: float) -> ModelReport:
    return ModelReport(name, 0.97 * scale, 0.96 * scale, int(8e6 * scale), int(2e5 * scale), 0.4 * scale)


def test_table_shows_every_model_with_costs_relative_to_the_first() -> None:
    out = io.StringIO()
    print_comparison([_report("original", 1.0), _report("found", 0.5)], Console(file=out, width=200))
    text = out.getvalue()
    rows = {line.split()[1]: line for line in text.splitlines() if line.startswith("│")}
    original_row, found_row = rows["original"], rows["found"]
    assert "97.0%" in original_row and "8.00 (100%)" in original_row and "200.0K (100%)" in original_row
    assert "48.5%" in found_row and "4.00 (50%)" in found_row and "100.0K (50%)" in found_row
    assert "0.200 (50%)" in found_row


def test_table_shows_onnxruntime_latency_only_when_every_model_has_it() -> None:
    out = io.StringIO()
    reports = [_report("original", 1.0), _report("found", 0.5)]
    timed = [
        replace(report, onnxruntime_latency_ms=0.3 * scale) for report, scale in zip(reports, (1.0, 0.25), strict=True)
    ]
    print_comparison(timed, Console(file=out, width=200))
    text = out.getvalue()
    found_row = next(line for line in text.splitlines() if line.startswith("│ found"))
    assert "ONNX Runtime (ms)" in text and found_row.rstrip(" │").endswith("0.075 (25%)")
    out = io.StringIO()
    print_comparison([reports[0], timed[1]], Console(file=out, width=200))
    assert "ONNX Runtime" not in out.getvalue()
    assert (
        timed[1].to_dict()["onnxruntime_latency_ms"] == 0.075 and reports[0].to_dict()["onnxruntime_latency_ms"] is None
    )


def test_table_needs_a_model() -> None:
    with pytest.raises(ValueError, match="at least one"):
        comparison_table([])
