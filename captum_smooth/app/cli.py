"""The ``captum-smooth`` command line: explain images with every smoothing method, side by side.

Commands:

* ``captum-smooth explain IMAGE... [--model M] [--methods A,B] [--target T] [--samples N |
  --tolerance T --max-samples N] [--sign] [--weight-noise S] [--seed S] [--kernel K]
  [--out DIR]``: runs each method on each image, writes a comparison grid (``comparison.png``)
  and a table of metrics and wall times (``metrics.json``, ``metrics.csv``), and prints the
  table with a legend of its columns. Without ``--samples`` each smoothing method samples until
  its map's relative Monte-Carlo error is at most 0.2 (at most 128 gradients); NoiseGrad's and
  FusionGrad's weight noise is calibrated for the model (:mod:`captum_smooth.app.calibrate`).
* ``captum-smooth demo [--out DIR]``: the same on the embedded EfficientNet-Lite0 and three
  photos bundled with scikit-image (nothing is downloaded), with :data:`DEMO_METHODS`.
* ``captum-smooth methods``: the method names (:mod:`captum_smooth.app.methods`), and the
  registered noise kernels (named as ``--kernel`` takes them) and reducers.
* ``captum-smooth --version``.
* ``captum-smooth insights [--port P]``: Captum Insights with these methods (captum <= 0.8).
* ``captum-smooth explain-dataset ...``: a whole data set into a resumable store
  (:mod:`captum_smooth.app.dataset_cli`).

Images are fed to the model as RGB in ``[0, 1]``, ``(N, 3, size, size)``. Models (``--model``):
``efficientnet-lite0`` (the default, embedded), ``torchvision:NAME[:WEIGHTS]``, a TorchScript
file, or ``module:callable`` (:mod:`captum_smooth.app.loading`).

Bad input (an unreadable image, an unknown method, a target outside the model's classes or no
class index, an empty text, a seed torch cannot take, a model that does not load) is reported
in one line on stderr naming the option, with exit status 2, before anything is written and,
where the value alone tells, before any model is loaded. Every output folder is written as a
whole (:func:`~captum_smooth.app.report.write_folder`): built beside ``--out``, then swapped
in; a failure leaves the old results (or none), never a mix, and the user's other files in
``--out`` are kept.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .dataset_cli import add_explain_dataset_parser
from .errors import EXIT_BAD_INPUT, EXIT_FAILURE, PROG, CLIError, short, warn
from .explain import DEFAULT_MAX_SAMPLES, DEFAULT_TOLERANCE, Settings, run
from .loading import SAMPLE_PREFIX, LoadedModel, load_model
from .methods import DEFAULT_METHODS
from .options import add_option
from .settings import check_size
from .text import add_explain_text_parser

__all__ = ["CLIError", "LoadedModel", "build_parser", "load_model", "main"]

DEMO_IMAGES = ("chelsea", "coffee", "rocket")
#: The demo's methods: the default ones but SmoothTaylor, whose signed Taylor terms cancel so
#: much that its map needs thousands of roots to reach a relative error of 0.2 on
#: EfficientNet-Lite0 (0.97 after 128 roots on chelsea); ``-m smoothtaylor`` still runs it.
DEMO_METHODS = tuple(m for m in DEFAULT_METHODS if m != "smoothtaylor")
DEMO_NOTE = (
    "demo: SmoothTaylor is left out (its signed Taylor terms need thousands of roots for a "
    "relative Monte-Carlo error of 0.2 on this model); `captum-smooth demo -m smoothtaylor "
    "--max-samples 4096` runs it"
)
DEFAULT_AUC_STEPS = 10
MAX_PORT = 65535


# --------------------------------------------------------------------------------------------
# Insights and the method list


def _check_insights(args: argparse.Namespace) -> None:
    """Refuse bad options before anything is loaded or served."""
    if args.port is not None and not 1 <= args.port <= MAX_PORT:
        raise CLIError(
            f"--port must be in 1..{MAX_PORT} (leave it out for a free one), got {args.port}"
        )
    check_size(args.size)
    if args.images is not None and not args.images:
        raise CLIError("--images is empty: give image files, or leave --images out")


def _run_insights(args: argparse.Namespace) -> int:
    from . import insights
    from .loading import load_images

    _check_insights(args)
    if not insights.insights_available():
        import captum

        print(
            f"{PROG}: Captum Insights is not available: captum {captum.__version__} has no "
            "captum.insights (it was retired after 0.8.0; `make insights-env` builds a captum "
            f"0.8 environment). Use `{PROG} explain IMAGE...` for comparison pictures.",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    sources = args.images or [SAMPLE_PREFIX + n for n in DEMO_IMAGES]
    images, _ = load_images(sources, args.size)
    loaded = load_model(args.model)
    for note in loaded.warnings:
        warn(note)
    port = insights.serve(
        loaded.module, images, classes=loaded.classes, port=args.port, bind_all=args.bind_all
    )
    print(f"Captum Insights: http://localhost:{port}/ (Ctrl-C stops)", flush=True)
    try:
        while True:  # Insights' server thread is not a daemon: wait here until Ctrl-C
            time.sleep(3600)
    except KeyboardInterrupt:
        sys.stdout.flush()
        os._exit(0)  # the Flask thread cannot be stopped otherwise


def _run_methods() -> int:
    from .methods import listing

    print(listing())
    return 0


# --------------------------------------------------------------------------------------------
# Arguments


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line too (with exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _split_methods(values: list[str] | None) -> list[str] | None:
    """``--methods`` values (comma-separated, repeated) as names; an empty name is refused."""
    if values is None:
        return None
    names = [n.strip() for value in values for n in value.split(",")]
    if "" in names:
        given = " ".join(f"-m {v!r}" for v in values)
        raise CLIError(f"--methods has an empty name in {given}: give method names, A,B")
    return names


def _add_run_options(parser: argparse.ArgumentParser, demo: bool) -> None:
    parser.add_argument(
        "--methods",
        "-m",
        action="append",
        metavar="A,B",
        help="methods to run, comma-separated or repeated (default: all available; "
        "see `captum-smooth methods`)",
    )
    parser.add_argument(
        "--samples",
        "-n",
        type=int,
        default=None,
        help="a fixed number of gradient evaluations per image and method (default: each "
        "smoothing method samples until its map's relative Monte-Carlo error is at most "
        f"--tolerance, {DEFAULT_TOLERANCE:g}, under the cap --max-samples)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="the relative Monte-Carlo error ||SE|| / sqrt(||map||^2 - ||SE||^2) (inf: the map "
        "cannot be told from its noise) each smoothing method samples to "
        f"(default: {DEFAULT_TOLERANCE:g}); maps that miss it at the cap are warned about and "
        "marked *",
    )
    parser.add_argument(
        "--max-samples",
        type=int,
        default=None,
        help="the most gradient evaluations per image when sampling to --tolerance "
        f"(default: {DEFAULT_MAX_SAMPLES})",
    )
    add_option(parser, "--seed")
    add_option(parser, "--kernel")
    add_option(
        parser,
        "--sampling",
        default_note="antithetic for smoothgrad and noisegrad, iid for the others: "
        "benchmarks/bench_antithetic.py's verdict per method"
        if demo
        else "iid",
    )
    parser.add_argument(
        "--sign",
        action="store_true",
        help="signed maps (red negative, green positive): every method averages signed "
        "gradients (default: magnitude, the mean of |gradient| per sample)",
    )
    add_option(
        parser,
        "--weight-noise",
        default_note="calibrated for the model, the largest s keeping 95% of its predictions "
        "(or, when every scale searched keeps them, at least s: the output says so); cached",
    )
    add_option(parser, "--out", aliases=["-o"], default=Path("out/demo" if demo else "out/explain"))
    parser.add_argument(
        "--auc-steps",
        type=int,
        default=DEFAULT_AUC_STEPS,
        help="steps of the deletion/insertion curves, 0 to skip them (default: %(default)s)",
    )
    parser.add_argument(
        "--no-controls",
        action="store_true",
        help="leave out the control rows (blurred gradient, edge map, random map)",
    )
    parser.add_argument(
        "--style",
        default="heat_map",
        choices=["heat_map", "blended_heat_map", "alpha_scaling", "masked_image"],
        help="Captum visualisation method of the grid (default: %(default)s)",
    )
    add_option(parser, "--no-progress")


_IMAGES_HELP = "image files (any format Pillow reads) or skimage:NAME for a bundled photo"
_MODEL_HELP = (
    "efficientnet-lite0 (default), torchvision:NAME[:WEIGHTS], a TorchScript file or "
    "module:callable"
)


def _add_explain_parser(sub: argparse._SubParsersAction) -> None:
    explain = sub.add_parser("explain", help="explain image files with every method")
    explain.add_argument("images", nargs="+", metavar="IMAGE", help=_IMAGES_HELP)
    explain.add_argument("--model", default=None, help=_MODEL_HELP)
    explain.add_argument(
        "--target",
        "-t",
        default=None,
        help="class index or name to explain (default: each image's predicted class)",
    )
    add_option(explain, "--size")
    _add_run_options(explain, demo=False)


def _add_insights_parser(sub: argparse._SubParsersAction) -> None:
    insights = sub.add_parser("insights", help="serve Captum Insights with these methods")
    insights.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    insights.add_argument("--model", default=None, help=_MODEL_HELP)
    insights.add_argument(
        "--images", nargs="*", default=None, help=_IMAGES_HELP + " (default: three photos)"
    )
    add_option(insights, "--size")
    insights.add_argument(
        "--bind-all", action="store_true", help="listen on all interfaces, not only localhost"
    )


def version_text() -> str:
    """What ``--version`` prints: this package's version and those it runs with."""
    import captum
    import torch

    from .. import __version__

    return f"{PROG} {__version__} (captum {captum.__version__}, torch {torch.__version__})"


def build_parser() -> argparse.ArgumentParser:
    """The ``captum-smooth`` argument parser.

    Returns:
        The parser, with the sub-commands ``explain``, ``demo``, ``methods``, ``insights`` and
        ``explain-dataset`` (:mod:`captum_smooth.app.dataset_cli`).
    """
    parser = _Parser(
        prog=PROG,
        description="Gradient smoothing for Captum: explain images with SmoothGrad, AdaptGrad, "
        "NoiseGrad, FusionGrad, SmoothTaylor and more, side by side.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_explain_parser(sub)
    demo = sub.add_parser(
        "demo", help="the comparison on the embedded EfficientNet-Lite0 and three sample photos"
    )
    _add_run_options(demo, demo=True)
    sub.add_parser("methods", help="list the method names")
    add_explain_dataset_parser(sub)  # data-set-scale attribution into a resumable store
    add_explain_text_parser(sub)  # token attributions of a sentence model (app/text.py)
    _add_insights_parser(sub)
    return parser


def _interrupted(command: str) -> str:
    """What an interrupt leaves: a store keeps its finished shards; the other outputs nothing."""
    if command == "explain-dataset":
        return "interrupted: the store keeps its finished shards; the same command resumes"
    return "interrupted, nothing written"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for bad input (nothing written), 1 on a failure
        during the run.

    Examples::

        >>> main(["demo", "--out", "out/demo"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help, or a usage error already reported in one line
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return _dispatch(args)
    except CLIError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{PROG}: {_interrupted(args.command)}", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("CAPTUM_SMOOTH_DEBUG"):
            raise
        print(
            f"{PROG}: error: {short(exc)} (CAPTUM_SMOOTH_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def _settings(args: argparse.Namespace) -> Settings:
    """The options of ``explain`` or ``demo`` (the demo fixes the images, model and size)."""
    demo = args.command == "demo"
    return Settings(
        command=args.command,
        images=[SAMPLE_PREFIX + n for n in DEMO_IMAGES] if demo else list(args.images),
        model=None if demo else args.model,
        methods=_demo_methods(args) if demo else _split_methods(args.methods),
        target=None if demo else args.target,
        samples=args.samples,
        seed=args.seed,
        kernel=args.kernel,
        out=args.out,
        size=224 if demo else args.size,
        auc_steps=args.auc_steps,
        controls=not args.no_controls,
        progress=not args.no_progress,
        style=args.style,
        tolerance=args.tolerance,
        max_samples=args.max_samples,
        sign=args.sign,
        weight_noise=args.weight_noise,
        sampling=args.sampling,
        intro=DEMO_NOTE if demo and args.methods is None else None,
    )


def _demo_methods(args: argparse.Namespace) -> list[str]:
    if args.methods is not None:
        return _split_methods(args.methods) or []
    return list(DEMO_METHODS)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "methods":
        return _run_methods()
    if args.command == "insights":
        return _run_insights(args)
    if args.command in ("explain-dataset", "explain-text"):
        return int(args.func(args))
    return run(_settings(args))
