"""What ``explain`` and ``demo`` report: the rows, the printed table, metrics.json and metrics.csv.

Results are written to a temporary folder beside ``--out`` and moved into place at the end, so
``--out`` never holds a half-written result.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "METRIC_COLUMNS",
    "PRINTED_COLUMNS",
    "Row",
    "finite",
    "format_report",
    "legend",
    "summarise",
    "versions",
    "write_outputs",
]

#: ``(key, column title)`` of the metrics, in the order of metrics.json and metrics.csv.
METRIC_COLUMNS = (
    ("total_variation", "TV (lower smoother)"),
    ("sparseness", "sparseness (higher)"),
    ("complexity", "complexity (lower)"),
    ("deletion_auc", "deletion AUC (lower)"),
    ("insertion_auc", "insertion AUC (higher)"),
    ("mc_error", "MC error (rel.)"),
    ("samples_used", "samples used"),
    ("gradients_used", "gradients used"),
)
#: The columns of the printed table. Left out: complexity (the entropy of the normalised map
#: sits near ln(pixels), ~10.5 at 224 x 224, for every map: it separates nothing here) and
#: samples used (weight draws for NoiseGrad/FusionGrad: the "grads" column counts gradients).
PRINTED_COLUMNS = ("total_variation", "sparseness", "deletion_auc", "insertion_auc", "mc_error")

_LEGEND = (
    ("grads", "gradient evaluations per image (mean; under a tolerance, those used)"),
    ("s/image", "wall seconds per image, measured after an untimed warm-up call"),
    ("TV", "multi-scale total variation of the map (lower: smoother)"),
    ("sparseness", "Gini index of the map (higher: fewer pixels carry the attribution)"),
    (
        "deletion AUC",
        "target probability while the top-ranked pixels are removed (lower: more faithful; "
        "scattered removal also drops it fast, so the random control can win: compare)",
    ),
    ("insertion AUC", "the same while they are added to a blurred image (higher: more faithful)"),
    (
        "MC error",
        "the map's relative Monte-Carlo error ||SE|| / sqrt(||map||^2 - ||SE||^2): how much of "
        "it is sampling noise (lower: converged; inf: not yet told from noise; - for methods "
        "that do not sample)",
    ),
    (
        "controls",
        "maps that need no method (blurred gradient, edge map, random map): a method should "
        "beat them",
    ),
)


def finite(value: float) -> float | str | None:
    """``value`` rounded to 6 digits for JSON: ``"inf"`` / ``"-inf"`` for an infinite value (an
    infinite Monte-Carlo error says the map cannot be told from its noise; JSON has no
    infinity), None (null) for NaN."""
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return round(float(value), 6)


@dataclass
class Row:
    """One map: an image explained by a method (or a control), with its scores."""

    image: str
    method: str
    label: str
    kind: str
    target: int
    target_class: str
    gradient_evaluations: int
    time_s: float
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        base = {
            "image": self.image,
            "method": self.method,
            "label": self.label,
            "kind": self.kind,
            "target": self.target,
            "target_class": self.target_class,
            "gradient_evaluations": self.gradient_evaluations,
            "time_s": round(self.time_s, 4),
        }
        base.update({k: finite(v) for k, v in self.metrics.items()})
        return base


def _summary_entry(group: list[Row]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "method": group[0].method,
        "label": group[0].label,
        "kind": group[0].kind,
        "gradient_evaluations": group[0].gradient_evaluations,
        "time_s": round(sum(r.time_s for r in group) / len(group), 4),
    }
    for key, _ in METRIC_COLUMNS:
        values = [r.metrics[key] for r in group if key in r.metrics]
        if values:
            entry[key] = finite(sum(values) / len(values))
    if any(r.metrics.get("tolerance_reached") == 0.0 for r in group):
        entry["tolerance_missed"] = True
    return entry


def summarise(rows: list[Row]) -> list[dict[str, Any]]:
    """The mean over images of each method, in the order the methods first appear."""
    order: list[str] = []
    for row in rows:
        if row.method not in order:
            order.append(row.method)
    return [_summary_entry([r for r in rows if r.method == name]) for name in order]


def versions() -> dict[str, Any]:
    """The versions a report was made with."""
    import captum
    import numpy

    from .. import __version__

    return {
        "captum_smooth": __version__,
        "captum": captum.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }


def legend(tolerance: float | None = None) -> dict[str, str]:
    """What each column of the printed table means and which direction is better."""
    entries = dict(_LEGEND)
    if tolerance is not None:
        entries["*"] = (
            f"a map whose MC error stayed above the tolerance {tolerance:g} at the cap (noisy)"
        )
    return entries


def _cell(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    if value is None:
        return "-"
    mark = "*" if key == "mc_error" and entry.get("tolerance_missed") else ""
    return f"{value}{mark}" if isinstance(value, str) else f"{value:.4f}{mark}"


def _table_lines(summary: list[dict[str, Any]]) -> list[str]:
    keys = [k for k in PRINTED_COLUMNS if any(k in e for e in summary)]
    header = ["method", "grads", "s/image"] + [dict(METRIC_COLUMNS)[k] for k in keys]
    table = [header]
    for entry in summary:
        grads = entry.get("gradients_used", entry["gradient_evaluations"])
        cells = [entry["label"], f"{grads:.0f}", f"{entry['time_s']:.3f}"]
        cells += [_cell(entry, key) for key in keys]
        table.append(cells)
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    lines = []
    for n, row in enumerate(table):
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


def format_report(report: dict[str, Any], image_info: list[dict[str, Any]]) -> str:
    """The printed report: the model, each image's prediction, and the mean table."""
    if report.get("tolerance") is None:
        sampling = f"{report['samples']} gradients per image"
    else:
        sampling = (
            f"each smoothing method samples until its map's relative MC error is <= "
            f"{report['tolerance']:g}, at most {report['samples']} gradients per image"
        )
    lines = [
        f"model: {report['model']}; seed: {report['seed']}",
        f"{sampling}; {report.get('convention', 'magnitude')} maps",
    ]
    for info in image_info:
        lines.append(
            f"  {info['name']}: predicted {info['predicted_class']!r} "
            f"({info['probability']:.3f}); explained {info['target_class']!r}"
        )
    lines.append("mean over images (controls are not methods: a method should beat them):")
    lines += _table_lines(report["summary"])
    lines.append("columns:")
    lines += [f"  {key}: {text}" for key, text in report.get("legend", legend()).items()]
    return "\n".join(lines)


def _csv_text(rows: list[Row]) -> str:
    buffer = io.StringIO()
    fields: list[str] = []
    for row in rows:  # every column any row has, in first-seen order
        fields += [key for key in row.as_dict() if key not in fields]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.as_dict().items()})
    return buffer.getvalue()


def _move_into_place(staging: Path, out: Path) -> None:
    if not out.exists():
        os.replace(staging, out)
        return
    for item in staging.iterdir():
        os.replace(item, out / item.name)
    staging.rmdir()


def write_outputs(
    out: Path,
    style: str,
    images: Tensor,
    grid_maps: dict[str, Tensor],
    titles: dict[str, str],
    row_labels: list[str],
    report: dict[str, Any],
    rows: list[Row],
    *,
    captions: dict[str, list[str]] | None = None,
    sign: str = "absolute_value",
) -> None:
    """Write comparison.png, metrics.json and metrics.csv into ``out``, all or nothing.

    ``captions`` (per column, one per image) are printed under the maps; ``sign`` is Captum's
    (``absolute_value`` or ``all`` for the signed view).
    """
    from .visualization import comparison_grid

    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would become --out's mode
        comparison_grid(
            images,
            grid_maps,
            titles=titles,
            row_labels=row_labels,
            path=staging / "comparison.png",
            method=style,
            sign=sign,
            captions=captions,
            colorbar=True,
        )
        (staging / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
        (staging / "metrics.csv").write_text(_csv_text(rows), "utf-8")
        _move_into_place(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
