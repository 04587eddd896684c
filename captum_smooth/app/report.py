"""What ``explain`` and ``demo`` report: the rows, the printed table, metrics.json and metrics.csv.

Every output folder of the command line is written as a whole (:func:`write_folder`): the
results are built in a temporary folder beside ``--out``, which then takes ``--out``'s place
(the old folder is set aside, the new one moved in, the old one removed; on a failure the old
one is put back). ``--out`` holds the old results or the new ones, never a mix; files in it that
a run does not write are kept (hard-linked into the new folder). :func:`check_out` refuses,
before any work, an ``--out`` that could not be replaced so.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import platform
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import CLIError, short, warn

__all__ = [
    "METRIC_COLUMNS",
    "OUTPUT_FILES",
    "PRINTED_COLUMNS",
    "Row",
    "check_out",
    "finite",
    "format_report",
    "legend",
    "summarise",
    "versions",
    "write_folder",
    "write_outputs",
]

#: The files ``explain`` and ``demo`` write into ``--out``.
OUTPUT_FILES = ("comparison.png", "metrics.json", "metrics.csv")

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

    def fill(folder: Path) -> None:
        comparison_grid(
            images,
            grid_maps,
            titles=titles,
            row_labels=row_labels,
            path=folder / "comparison.png",
            method=style,
            sign=sign,
            captions=captions,
            colorbar=True,
        )
        (folder / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
        (folder / "metrics.csv").write_text(_csv_text(rows), "utf-8")

    write_folder(out, fill)


# --------------------------------------------------------------------------------------------
# The output folder, written as a whole


def _first_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _holds_working_folder(folder: Path) -> bool:
    """Whether ``folder`` is the working folder or one above it (swapping it away would leave
    the process, and the shell that started it, in a removed folder)."""
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the working folder was removed already: there is none to protect
        return False
    return folder == cwd or folder in cwd.parents


def _check_replaceable(shown: str, target: Path, files: Sequence[str]) -> None:
    """An existing ``--out`` folder: the run must be able to swap it and keep what it holds."""
    if _holds_working_folder(target):
        raise CLIError(
            f"--out {shown} is the working folder or holds it: a run replaces its --out folder "
            "as a whole, give it a folder of its own"
        )
    if os.path.ismount(target):
        raise CLIError(f"--out {shown} is a mount point: give a folder inside it")
    if not os.access(target, os.R_OK | os.X_OK):
        raise CLIError(f"--out {shown}: cannot read the folder")
    for name in files:
        if (target / name).is_dir() and not (target / name).is_symlink():
            raise CLIError(
                f"--out {shown} holds a folder {name!r} where the run writes a file: move it, "
                "or give another --out"
            )


def check_out(out: Path, files: Sequence[str] = OUTPUT_FILES) -> None:
    """Refuse, before any work, an ``--out`` that :func:`write_folder` could not replace.

    Args:
        out: ``--out``.
        files: The names the run writes into it.

    Raises:
        CLIError: ``out`` is a file, lies below a file, is in a folder that cannot be written,
            is the working folder (or holds it), a mount point, or holds a folder named as one
            of ``files``.
    """
    shown = repr(str(out))
    try:
        target = out.resolve()
    except (OSError, RuntimeError) as exc:  # a symbolic-link loop
        raise CLIError(f"--out {shown}: {short(exc)}") from exc
    if target.exists() and not target.is_dir():
        raise CLIError(f"--out {shown} exists and is not a directory")
    ancestor = _first_existing(target.parent)
    if not ancestor.is_dir():
        raise CLIError(f"--out {shown} lies below {str(ancestor)!r}, a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise CLIError(f"--out {shown}: cannot write in {str(ancestor)!r}")
    if target.is_dir():
        _check_replaceable(shown, target, files)


def write_folder(out: Path, fill: Callable[[Path], None]) -> None:
    """Write the folder ``out`` as a whole: ``fill`` writes the files into an empty folder.

    The folder is built beside ``out`` and then takes its place: an existing ``out`` is set
    aside, the new folder moved in, the old one removed (put back if the move fails). Entries
    of the old folder that ``fill`` did not write are kept, hard-linked (else copied) into the
    new one. A failure leaves the old folder as it was (or no folder, if there was none), and
    no folder that this call created.

    Args:
        out: The output folder (a symbolic link: the folder it points to is replaced).
        fill: Writes the outputs into the folder it is given.
    """
    target = out.resolve()
    created = _make_parents(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        _copy_mode(target, staging)
        fill(staging)
        if target.is_dir():
            _carry_over(target, staging)
            _swap(target, staging)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # the parents made for this run, innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, innermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
    return missing


def _copy_mode(target: Path, staging: Path) -> None:
    """The new folder takes the old one's mode, else the umask's (not mkdtemp's 0700)."""
    if target.is_dir():
        os.chmod(staging, stat.S_IMODE(target.stat().st_mode))
        return
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)


def _carry_over(old: Path, new: Path) -> None:
    """Link into ``new`` the entries of ``old`` that ``new`` does not hold (the user's files)."""
    for entry in old.iterdir():
        if not os.path.lexists(new / entry.name):
            _link_copy(entry, new / entry.name)
        elif entry.is_dir() and not entry.is_symlink():
            raise CLIError(
                f"--out {str(old)!r} holds a folder {entry.name!r} where the run writes a file: "
                "nothing was replaced"
            )


def _link_copy(source: Path, destination: Path) -> None:
    if source.is_symlink():
        os.symlink(os.readlink(source), destination)
    elif source.is_dir():
        shutil.copytree(source, destination, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, destination)


def _link_or_copy(source: str | Path, destination: str | Path) -> None:
    try:
        os.link(source, destination)
    except OSError:  # a file system without hard links
        shutil.copy2(source, destination)


def _swap(target: Path, new: Path) -> None:
    """Put the folder ``new`` in ``target``'s place; the old folder back if that fails."""
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    aside.rmdir()  # a free name beside target: os.replace needs it absent everywhere
    os.replace(target, aside)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(aside, target)
        raise
    try:
        shutil.rmtree(aside)
    except OSError as exc:
        warn(f"the previous results could not be removed from {str(aside)!r}: {short(exc)}")
