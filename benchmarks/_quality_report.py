"""The quality benchmark's tables and report text: scores per method, paired verdicts, claims.

A :class:`Table` holds one task's scores (one number per model seed, or per photo);
:func:`render_table` writes it as markdown; :func:`compare` is the paired verdict of two
methods on one metric; :func:`claims` checks the papers' claims against the measured numbers.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from benchmarks._harness import markdown_table
from benchmarks._quality_methods import CONFIDENCES, QualityRow

__all__ = [
    "Table",
    "Verdict",
    "claims",
    "compare",
    "control_report",
    "render_table",
]

_SG = "SmoothGrad (Captum NoiseTunnel)"
_AG = "AdaptGrad c=0.95"


@dataclass
class Table:
    """Scores of one task: ``values[label][metric]`` holds one number per seed (or photo)."""

    title: str
    metrics: list[tuple[str, str]]  # (name, "higher" | "lower" | "info")
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    spread: str = "std over the model seeds"

    def add(self, label: str, scores: dict[str, float], seconds_per_image: float) -> None:
        row = self.values.setdefault(label, {})
        for name, value in scores.items():
            row.setdefault(name, []).append(float(value))
        self.times.setdefault(label, []).append(seconds_per_image)

    def stat(self, label: str, metric: str) -> tuple[float, float] | None:
        vals = [v for v in self.values.get(label, {}).get(metric, []) if not math.isnan(v)]
        if not vals:
            return None
        return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def _fmt(stat: tuple[float, float] | None) -> str:
    if stat is None:
        return "n/a"
    return f"{stat[0]:.3f} ± {stat[1]:.3f}"


def render_table(table: Table, specs: list[QualityRow]) -> str:
    arrows = {"higher": " ↑", "lower": " ↓", "info": ""}
    header = ["method", "grad evals"] + [m + arrows[d] for m, d in table.metrics] + ["ms / image"]
    rows = []
    for spec in specs:
        if spec.skipped:
            rows.append([spec.label, spec.evaluations] + ["skipped"] * len(table.metrics) + [""])
            continue
        if spec.label not in table.values:
            continue
        cells = [_fmt(table.stat(spec.label, m)) for m, _ in table.metrics]
        ms = 1000 * statistics.fmean(table.times[spec.label])
        rows.append([spec.label, spec.evaluations, *cells, f"{ms:.1f}"])
    notes = "".join(f"\n- {n}" for n in table.notes)
    return f"### {table.title}\n\nMean ± {table.spread}.{notes}\n\n" + markdown_table(header, rows)


@dataclass(frozen=True)
class Verdict:
    """``a`` against ``b`` on one metric, paired by seed (or photo).

    ``verdict`` is ``better`` / ``worse`` when the mean paired difference (in the metric's
    good direction) exceeds its standard deviation over the pairs, i.e. the difference holds
    consistently across seeds; otherwise ``tie``.
    """

    verdict: str
    a: tuple[float, float]
    b: tuple[float, float]
    diff: tuple[float, float]  # mean and std of (a - b) over the pairs, in metric units


def compare(table: Table, metric: str, a: str, b: str) -> Verdict | None:
    """Paired comparison of ``a`` and ``b`` (None if either was not measured)."""
    sa, sb = table.stat(a, metric), table.stat(b, metric)
    if sa is None or sb is None:
        return None
    va, vb = table.values[a][metric], table.values[b][metric]
    pairs = [x - y for x, y in zip(va, vb) if not (math.isnan(x) or math.isnan(y))]
    if not pairs:
        return None
    mean = statistics.fmean(pairs)
    std = statistics.stdev(pairs) if len(pairs) > 1 else 0.0
    good = -mean if dict(table.metrics)[metric] == "lower" else mean
    verdict = "tie"
    if abs(good) > std and good != 0.0:
        verdict = "better" if good > 0 else "worse"
    return Verdict(verdict, sa, sb, (mean, std))


def _claim(table: Table, metric: str, a: str, b: str) -> str:
    found = compare(table, metric, a, b)
    if found is None:
        return f"- {metric}: not measured (a method was skipped)."
    word = {"better": "better than", "worse": "worse than", "tie": "tied with"}
    return (
        f"- {metric} ({dict(table.metrics)[metric]} is better): {a} {found.a[0]:.3f} ± "
        f"{found.a[1]:.3f} vs {b} {found.b[0]:.3f} ± {found.b[1]:.3f} (paired difference "
        f"{found.diff[0]:+.3f} ± {found.diff[1]:.3f}): **{word[found.verdict]}**."
    )


def control_report(table: Table, specs: list[QualityRow]) -> str:
    """For each metric: which methods the best control beats or ties."""
    controls = [s.label for s in specs if s.kind == "control" and s.label in table.values]
    methods = [s.label for s in specs if s.kind == "method" and s.label in table.values]
    lines = []
    for metric, direction in table.metrics:
        if direction == "info":
            continue
        beaten: dict[str, list[str]] = {}
        for control in controls:
            for method in methods:
                found = compare(table, metric, control, method)
                if found is None or found.verdict == "worse":
                    continue
                tag = "beats" if found.verdict == "better" else "ties"
                beaten.setdefault(f"{control} {tag}", []).append(method)
        if not beaten:
            lines.append(f"- {metric}: every method beats every control.")
        else:
            parts = [
                f"{who} all {len(ms)} methods"
                if len(ms) == len(methods)
                else f"{who} " + ", ".join(ms)
                for who, ms in beaten.items()
            ]
            lines.append(f"- {metric}: " + "; ".join(parts) + ".")
    return "\n".join(lines)


_CLAIMS_INTRO = (
    "Comparisons are paired (the same model seed, or the same photo, for both methods): "
    "a verdict is *better* / *worse* only when the mean paired difference exceeds its "
    "standard deviation over the pairs (the difference holds consistently); otherwise "
    "*tied*. With 3 pairs this is a weak test: read *better* as 'consistent across the "
    "seeds measured', not as significance.\n"
)
_NOISE_METRICS = ("sparseness", "total variation")


def _blur_notes(table: Table, specs: list[QualityRow]) -> list[str]:
    """Where the blurred-gradient control beats or ties AdaptGrad c=0.95 on sparseness / TV."""
    blur = next((s.label for s in specs if s.label.startswith("control: blur")), None)
    if not blur or blur not in table.values:
        return []
    notes = []
    for metric in _NOISE_METRICS:
        if metric not in dict(table.metrics):
            continue
        found = compare(table, metric, blur, _AG)
        if found and found.verdict != "worse":
            verb = "beats" if found.verdict == "better" else "ties"
            notes.append(
                f"- note: the blurred-gradient control ({found.a[0]:.3f}) {verb} "
                f"AdaptGrad on {metric}."
            )
    return notes


def _adaptgrad_claims(tables: dict[str, Table], specs: dict[str, list[QualityRow]]) -> list[str]:
    out = ["### AdaptGrad sparser and less noisy (lower total variation) than SmoothGrad?\n"]
    for key, table in tables.items():
        out.append(f"{table.title}:")
        out += [
            _claim(table, metric, f"AdaptGrad c={c}", _SG)
            for metric in _NOISE_METRICS
            if metric in dict(table.metrics)
            for c in CONFIDENCES
        ]
        out += _blur_notes(table, specs[key])
        out.append("")
    return out


def _smoothtaylor_claims(tables: dict[str, Table]) -> list[str]:
    out = ["### SmoothTaylor less noisy (lower total variation) than Integrated Gradients?\n"]
    for table in tables.values():
        if "total variation" in dict(table.metrics):
            out.append(f"{table.title}:")
            out.append(_claim(table, "total variation", "SmoothTaylor", "Integrated Gradients"))
            out.append("")
    return out


def _noisegrad_claims(tables: dict[str, Table], specs: dict[str, list[QualityRow]]) -> list[str]:
    out = ["### NoiseGrad / FusionGrad localise better than SmoothGrad?\n"]
    if "patch" not in tables:
        return [*out, "(the ground-truth task was not run)\n"]
    table = tables["patch"]
    fusion = next((s.label for s in specs["patch"] if s.label.startswith("FusionGrad")), "")
    for metric in ("relevance mass", "rank accuracy", "pointing game"):
        out.append(_claim(table, metric, "NoiseGrad", _SG))
        out.append(_claim(table, metric, fusion, _SG))
    out.append("")
    return out


def _control_claims(tables: dict[str, Table], specs: dict[str, list[QualityRow]]) -> list[str]:
    out = ["### Where a control ties or beats a method\n"]
    for key, table in tables.items():
        out.append(f"{table.title}:")
        out.append(control_report(table, specs[key]))
        out.append("")
    return out


def claims(tables: dict[str, Table], specs: dict[str, list[QualityRow]]) -> str:
    """The paper claims, checked against the measured numbers (generated text)."""
    out = ["## Paper claims, checked against these numbers\n", _CLAIMS_INTRO]
    out += _adaptgrad_claims(tables, specs)
    out += _smoothtaylor_claims(tables)
    out += _noisegrad_claims(tables, specs)
    out += _control_claims(tables, specs)
    return "\n".join(out)
