"""The one benchmark command: speed, memory and explanation quality, written to RESULTS.md.

Usage::

    python -m benchmarks                 # every benchmarks/bench_*.py, full sizes
    python -m benchmarks --quick         # smaller sizes (a couple of minutes)
    python -m benchmarks --only quality scaling
    python -m benchmarks --list
    python -m benchmarks --device cuda   # the GPU module on a CUDA device -> RESULTS-gpu.md
    python -m benchmarks --device cpu-dry-run   # the same at tiny sizes on the CPU (layout)

Every module ``benchmarks/bench_<name>.py`` with a ``run(quick: bool) -> dict`` is run in turn
(alphabetical order), each in a fresh Python process (so no module inherits another's thread
settings, memory or random state) with torch's global generator seeded to 0, under a wall-time
limit (``--timeout``, default 900 s per module, 300 s with ``--quick``). A module that fails to
import, raises or runs out of time is reported (with the end of its traceback) and the others
still run.
From each result the report takes ``markdown`` (or ``report``), ``plots`` (PNG paths; copied
under ``benchmarks/results/`` when written elsewhere), ``seeds`` and ``environment``.

The report goes to ``benchmarks/RESULTS.md`` (``RESULTS-quick.md`` with ``--quick``, so a quick
check never overwrites the full results), with the versions, thread count, seeds, per-module
wall times and the total. The exit status is 1 when a module failed.

``--device`` (default ``cpu``: everything as always) reaches the modules through the
environment variable ``CAPTUM_SMOOTH_BENCH_DEVICE`` of their child processes. With ``cuda`` or
``cpu-dry-run`` the run takes the modules that measure on a chosen device (:data:`DEVICE_MODULES`,
unless ``--only`` names others) and writes ``RESULTS-gpu.md`` (``RESULTS-gpu-dry-run.md``). A
module that returns ``skipped`` (the GPU module without CUDA) is listed as skipped.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmarks._harness import BENCH_DEVICES, DEVICE_ENV

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
#: The modules that measure on the device given by ``--device`` (the others are CPU figures).
DEVICE_MODULES = ("gpu",)


@dataclass
class Outcome:
    """What one benchmark module gave."""

    name: str
    seconds: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def status(self) -> str:
        if not self.ok:
            return "**FAILED**"
        return "skipped" if self.result.get("skipped") else "ok"


def discover() -> list[str]:
    """The names ``<name>`` of every ``benchmarks/bench_<name>.py``, sorted."""
    paths = glob.glob(os.path.join(HERE, "bench_*.py"))
    return sorted(os.path.basename(p)[len("bench_") : -len(".py")] for p in paths)


def _jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, non-string keys as strings, other objects as ``str``."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def run_module(name: str, quick: bool) -> Outcome:
    """Import ``benchmarks.bench_<name>`` and call its ``run(quick)`` here, catching failures."""
    outcome = Outcome(name)
    start = time.perf_counter()
    try:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        if not callable(getattr(module, "run", None)):
            raise AttributeError(f"benchmarks.bench_{name} has no run(quick) function")
        torch.manual_seed(0)
        result = module.run(quick=quick)
        if not isinstance(result, dict):
            raise TypeError(f"run() returned {type(result).__name__}, not a dict")
        outcome.result = result
    except Exception:  # one module's failure must not stop the others
        lines = traceback.format_exc().strip().splitlines()
        outcome.error = "\n".join(lines[-12:])
    outcome.seconds = time.perf_counter() - start
    return outcome


def run_isolated(name: str, quick: bool, timeout: float | None, device: str = "cpu") -> Outcome:
    """Run one module in a fresh Python process (its own thread settings, memory and global
    random state), with a wall-time limit; the result comes back as JSON. ``device`` reaches
    the module through :data:`~benchmarks._harness.DEVICE_ENV`."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "result.json")
        command = [sys.executable, "-m", "benchmarks", "--run-one", name, "--json", path]
        if quick:
            command.append("--quick")
        try:
            done = subprocess.run(
                command,
                cwd=os.path.dirname(HERE),
                timeout=timeout,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, DEVICE_ENV: device},
            )
        except subprocess.TimeoutExpired:
            return Outcome(
                name, time.perf_counter() - start, error=f"timed out after {timeout:.0f} s"
            )
        seconds = time.perf_counter() - start
        if not os.path.isfile(path):
            tail = "\n".join((done.stderr or "").strip().splitlines()[-12:])
            return Outcome(name, seconds, error=f"exit status {done.returncode}\n{tail}")
        with open(path) as f:
            data = json.load(f)
    return Outcome(
        name, data.get("seconds", seconds), data.get("result", {}), data.get("error", "")
    )


def _plots(outcome: Outcome) -> list[str]:
    """The module's PNG files, as paths relative to ``benchmarks/`` (copied under results/)."""
    paths = outcome.result.get("plots") or []
    if isinstance(paths, str):
        paths = [paths]
    relative = []
    for path in paths:
        if not isinstance(path, str) or not os.path.isfile(path):
            continue
        path = os.path.abspath(path)
        if os.path.dirname(path) != RESULTS_DIR:
            os.makedirs(RESULTS_DIR, exist_ok=True)
            target = os.path.join(RESULTS_DIR, f"{outcome.name}_{os.path.basename(path)}")
            shutil.copyfile(path, target)
            path = target
        relative.append(os.path.relpath(path, HERE))
    return relative


def _device_rows(device: str) -> dict[str, str]:
    rows = {"benchmark device": device}
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        rows["gpu"] = f"{props.name}, {props.total_memory / (1 << 30):.0f} GiB"
        rows["cuda"] = str(torch.version.cuda)
    return rows


def _versions(device: str = "cpu") -> dict[str, str]:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("torch", "captum", "numpy", "captum_smooth", "sklearn", "matplotlib"):
        try:
            versions[package] = str(importlib.import_module(package).__version__)
        except Exception:
            versions[package] = "not installed"
    versions["torch threads"] = str(torch.get_num_threads())
    versions["torch interop threads"] = str(torch.get_num_interop_threads())
    versions["cpu cores"] = str(os.cpu_count())
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        versions[var] = os.environ.get(var, "unset")
    if device != "cpu":
        versions.update(_device_rows(device))
    return versions


def _sizes(quick: bool, device: str) -> str:
    if device == "cpu-dry-run":
        return "tiny, CPU dry run"
    return "quick" if quick else "full"


def render(
    outcomes: list[Outcome],
    quick: bool,
    total: float,
    command: str,
    timeout: float | None = None,
    device: str = "cpu",
) -> str:
    """The RESULTS.md text."""
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `{command}` ({_sizes(quick, device)} sizes) in "
        f"**{total:.0f} s** wall time. Every number below comes from this run; the quality "
        "numbers are deterministic (fixed seeds) and reproduce exactly on the same machine, "
        "torch build and thread count; timings drift between runs and machines: compare them "
        "as ratios measured side by side. Each module ran in its own fresh process"
        + (f" with a limit of {timeout:.0f} s." if timeout else "."),
        "",
        "## Environment",
        "",
        "| what | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in _versions(device).items()]
    lines += ["", "## Modules", "", "| module | status | wall time (s) | seeds |"]
    lines.append("|---|---|---|---|")
    for o in outcomes:
        seeds = o.result.get("seeds", "")
        lines.append(f"| bench_{o.name} | {o.status} | {o.seconds:.1f} | {seeds} |")
    for o in outcomes:
        lines += ["", f"## bench_{o.name}", ""]
        if not o.ok:
            lines += ["**Failed**:", "", "```", o.error, "```"]
            continue
        text = o.result.get("markdown") or o.result.get("report")
        if not text:
            text = "(no markdown report; figures: `" + repr(o.result.get("figures"))[:2000] + "`)"
        lines.append(text.strip())
        for path in _plots(o):
            if path not in text:
                lines += ["", f"![{o.name}]({path})"]
        env = o.result.get("environment")
        if env:
            lines += ["", f"Environment reported by the module: `{env}`"]
    return "\n".join(lines) + "\n"


def _selected(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The modules to run: ``--only``, else every module (the device modules off the CPU)."""
    names = discover()
    if not args.only:
        if args.device == "cpu":
            return names
        return [n for n in names if n in DEVICE_MODULES]
    wanted = [n.removeprefix("bench_").removesuffix(".py") for n in args.only]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; available: {', '.join(names)}")
    return [n for n in names if n in wanted]


def _default_report(args: argparse.Namespace) -> str:
    if args.device != "cpu":
        return "RESULTS-gpu.md" if args.device == "cuda" else "RESULTS-gpu-dry-run.md"
    return "RESULTS-quick.md" if args.quick else "RESULTS.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Run the benchmarks and write RESULTS.md."
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (minutes)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these modules")
    parser.add_argument("--output", help="report path (default benchmarks/RESULTS.md)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="wall-time limit per module in seconds (default 900; 300 with --quick)",
    )
    parser.add_argument(
        "--device",
        choices=BENCH_DEVICES,
        default="cpu",
        help="cpu (default, every module); cuda or cpu-dry-run: the GPU module (see above)",
    )
    parser.add_argument("--list", action="store_true", help="list the modules and exit")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:  # the child process of run_isolated
        outcome = run_module(args.run_one, args.quick)
        payload = {"seconds": outcome.seconds, "result": outcome.result, "error": outcome.error}
        with open(args.json, "w") as f:
            json.dump(_jsonable(payload), f)
        return 0
    if args.list:
        print("\n".join(discover()))
        return 0
    names = _selected(parser, args)
    timeout = args.timeout if args.timeout is not None else (300.0 if args.quick else 900.0)
    output = args.output or os.path.join(HERE, _default_report(args))
    command = "python -m benchmarks" + (" --quick" if args.quick else "")
    if args.device != "cpu":
        command += f" --device {args.device}"
    if args.only:
        command += " --only " + " ".join(names)
    outcomes = []
    start = time.perf_counter()
    for name in names:
        print(f"[benchmarks] bench_{name} ...", file=sys.stderr, flush=True)
        outcome = run_isolated(name, args.quick, timeout, args.device)
        state = outcome.status.strip("*").lower()
        print(f"[benchmarks] bench_{name}: {state} in {outcome.seconds:.1f} s", file=sys.stderr)
        if not outcome.ok:
            print(outcome.error, file=sys.stderr)
        outcomes.append(outcome)
    total = time.perf_counter() - start
    with open(output, "w") as f:
        f.write(render(outcomes, args.quick, total, command, timeout, args.device))
    print(f"[benchmarks] wrote {output} ({total:.0f} s in all)", file=sys.stderr)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
