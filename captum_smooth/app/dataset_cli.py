"""The ``captum-smooth explain-dataset`` subcommand.

Attribute every example of scikit-learn's digits (with the small digits CNN) or of a directory
of images (with the embedded ImageNet EfficientNet-Lite0) into a resumable store::

    captum-smooth explain-dataset --data digits --method adaptgrad --out runs/digits
    captum-smooth explain-dataset --data photos/ --method smoothgrad --out runs/photos \\
        --dtype float16 --reduce-channels abs_sum
    torchrun --nproc_per_node 2 -m captum_smooth.app.dataset_cli explain-dataset --data digits ...

``--method`` takes any name of the method table (:mod:`captum_smooth.app.methods`, the names of
``captum-smooth methods``, the same names as ``explain``), built with the table's arguments at a
budget of ``--nt-samples`` gradient evaluations (``--ig-steps`` for ``ig``); ``--noise-level``,
``--confidence`` and ``--kernel`` replace the table's values for the methods that take them. The
names of earlier versions (``saliency``, ``integrated-gradients``) are refused with the new name.

Bad input (a number out of its option's range, an option without effect on ``--method``, an
unknown device, a missing ``--data`` or ``--weights``) is one line on stderr with exit status 2,
before anything is written. Run again with the same arguments to resume a killed run. Under
``torchrun`` the process group is set up here (gloo on CPU, NCCL on GPU) and rank 0's model
weights are sent to every rank.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..dataset._settings import check_device
from ..dataset.explain import explain_dataset
from ..dataset.store import StoreError
from .errors import EXIT_BAD_INPUT, EXIT_FAILURE, PROG, CLIError, check_seed, short
from .method_spec import MethodSpec, gradient_count
from .methods import cli_method, get_method, resolve_kernel
from .options import add_option

__all__ = ["add_explain_dataset_parser", "main", "run_explain_dataset"]

#: The budgets and image side when not given (``--nt-samples``, ``--ig-steps``, ``--image-size``).
DEFAULT_NT_SAMPLES = 20
DEFAULT_IG_STEPS = 32
DEFAULT_IMAGE_SIZE = 224

_IMAGE_SUFFIXES = {".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}


def _method_name(text: str) -> str:
    """``--method``: a name of the method table; an old name is refused with its new name."""
    try:
        return cli_method(text).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _ImageDirectory(Dataset):
    """Images under a directory, in sorted path order; ``class/image`` layouts give labels.

    A label is the class folder's name as an int (``3/``) or an ImageNet class name
    (``goldfish/``); when some folder name is neither, there are no labels.
    """

    def __init__(self, root: Path, size: int) -> None:
        self.root = root
        self.size = size
        self.files = sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES
        )
        if not self.files:
            raise ValueError(
                f"--data {str(root)!r} holds no image files ({sorted(_IMAGE_SUFFIXES)})"
            )
        self.labels = self._labels()

    def _labels(self) -> list[int] | None:
        from .models.imagenet import imagenet_class_index

        labels = []
        for name in self.files:
            parts = name.split("/")
            if len(parts) != 2:
                return None
            if parts[0].isdigit():
                labels.append(int(parts[0]))
                continue
            try:
                labels.append(imagenet_class_index(parts[0]))
            except ValueError:
                return None
        return labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Any:
        from .data.images import load_image

        image = load_image(self.root / self.files[i], size=self.size)
        return image if self.labels is None else (image, self.labels[i])


def add_explain_dataset_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``explain-dataset`` subcommand to an ``argparse`` subparsers object.

    The subparser's default ``func`` is :func:`run_explain_dataset`.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The new subparser.

    Examples::

        >>> parser = argparse.ArgumentParser(prog="captum-smooth")
        >>> sub = parser.add_subparsers(dest="command")
        >>> _ = add_explain_dataset_parser(sub)
        >>> args = parser.parse_args(["explain-dataset", "--data", "digits", "--out", "x"])
        >>> args.func is run_explain_dataset, args.method, args.batch_size
        (True, 'adaptgrad', 64)
    """
    p = subparsers.add_parser(
        "explain-dataset",
        help="attribute every example of a data set into a resumable on-disk store",
        description=(
            "Attribute every example of a data set into a sharded, resumable store (numpy .npy "
            "shards with checksums; read it with captum_smooth.AttributionStore). Run again "
            "with the same arguments to resume; under torchrun the ranks share the work."
        ),
    )
    p.add_argument(
        "--data",
        required=True,
        help="'digits' (scikit-learn's 1797 digits) or a directory of images (class/image "
        "layouts give labels when the folders are class indices or ImageNet class names)",
    )
    add_option(p, "--out", required=True, default_note="the store, new, empty or to resume")
    p.add_argument(
        "--method",
        type=_method_name,
        default="adaptgrad",
        metavar="NAME",
        help="a method of `captum-smooth methods` (default: adaptgrad)",
    )
    p.add_argument(
        "--model",
        choices=("auto", "digits", "efficientnet-lite0"),
        default="auto",
        help="auto: the digits CNN (trained in seconds, seed 0) for digits, the ImageNet "
        "EfficientNet-Lite0 for images",
    )
    p.add_argument("--weights", help="a state_dict file to load into the model instead")
    p.add_argument(
        "--target",
        choices=("auto", "label", "prediction"),
        default="auto",
        help="auto: the labels when the data have them, else the model's prediction",
    )
    p.add_argument("--batch-size", type=int, default=64, help="default: 64")
    p.add_argument("--shard-size", type=int, default=256, help="default: 256")
    add_option(p, "--seed")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float32")
    p.add_argument("--reduce-channels", choices=("sum", "abs_sum", "mean"), default=None)
    p.add_argument(
        "--nt-samples",
        type=int,
        default=None,
        help=f"gradient evaluations per example of the sampling methods (default: "
        f"{DEFAULT_NT_SAMPLES})",
    )
    add_option(p, "--kernel")
    add_option(p, "--sampling", default_note="iid; antithetic is part of the store's settings")
    add_option(
        p,
        "--weight-noise",
        default_note="the table's 0.2, not calibrated: `captum-smooth explain` calibrates it "
        "per model",
    )
    # None: the table's value; given to a method that does not take it, an error
    add_option(p, "--noise-level", default=None, default_note="0.15")
    p.add_argument("--confidence", type=float, default=None, help="adaptgrad (default: 0.95)")
    p.add_argument("--ig-steps", type=int, default=None, help=f"ig (default: {DEFAULT_IG_STEPS})")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help=f"image side for a folder of images (default: {DEFAULT_IMAGE_SIZE})",
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N examples")
    p.add_argument("--num-workers", type=int, default=0, help="data loader workers")
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK if any, else cpu")
    add_option(p, "--no-progress")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="recompute the finished shards whose data (images, labels) changed since they were "
        "written (default: refuse other data than the store's)",
    )
    p.set_defaults(func=run_explain_dataset)
    return p


def _data(args: argparse.Namespace) -> tuple[Any, str, dict[str, Any]]:
    """``(data, default model, metadata)`` for ``--data``."""
    if args.data == "digits":
        from .models.digits import _digits_arrays

        images, labels = _digits_arrays()
        data: Any = (torch.from_numpy(images), torch.from_numpy(labels))
        if args.limit is not None:
            data = (data[0][: args.limit], data[1][: args.limit])
        return data, "digits", {"data": "digits"}
    root = Path(args.data)
    if not root.is_dir():
        raise ValueError(f"--data must be 'digits' or a directory of images, got {args.data!r}")
    image_size = DEFAULT_IMAGE_SIZE if args.image_size is None else args.image_size
    folder = _ImageDirectory(root, image_size)
    if args.limit is not None:
        folder.files = folder.files[: args.limit]
        folder.labels = None if folder.labels is None else folder.labels[: args.limit]
    listing = "\n".join(folder.files).encode()
    meta = {
        "data": str(root.resolve()),
        "image_size": image_size,
        "files_sha256": hashlib.sha256(listing).hexdigest(),
        "files": folder.files,
    }
    return folder, "efficientnet-lite0", meta


def _model(name: str, weights: str | None) -> nn.Module:
    if name == "digits":
        from .models.digits import DigitsCNN, trained_digits_cnn

        model: nn.Module = DigitsCNN() if weights else trained_digits_cnn(seed=0)
    else:
        from .models.efficientnet_lite import load_efficientnet_lite0

        model = load_efficientnet_lite0(pretrained=weights is None)
    if weights:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def _method(args: argparse.Namespace, model: nn.Module) -> tuple[Any, dict[str, Any]]:
    """The table's method on ``model`` and its ``attribute`` arguments at the given budget."""
    spec, kwargs = _method_kwargs(args)
    return spec.cls(model), kwargs


def _method_kwargs(args: argparse.Namespace) -> tuple[MethodSpec, dict[str, Any]]:
    """The table's entry and its ``attribute`` arguments at the given budget, with the options.

    Raises:
        ValueError: An option that has no effect on the method, or an unknown ``--kernel``.
    """
    spec = get_method(args.method)
    kwargs = spec.kwargs(_budget(args, spec))
    for key, option in (("noise_level", "--noise-level"), ("confidence", "--confidence")):
        value = getattr(args, key, None)
        if value is None:
            continue
        if key not in kwargs:
            raise ValueError(f"{option} has no effect on --method {spec.name}")
        kwargs[key] = value
    weight_noise = getattr(args, "weight_noise", None)
    if "weight_stdev" in kwargs:
        if weight_noise is None:
            print(
                f"explain-dataset: weight noise s = {kwargs['weight_stdev']} (the method table's "
                "default, not calibrated for this model; --weight-noise S sets it)",
                file=sys.stderr,
            )
        else:
            kwargs["weight_stdev"] = weight_noise
    elif weight_noise is not None:
        raise ValueError(f"--weight-noise has no effect on --method {spec.name}")
    kernel = getattr(args, "kernel", None)
    if kernel is not None:
        if not spec.uses_kernel:
            raise ValueError(f"--kernel {kernel} has no effect on --method {spec.name}")
        try:
            kwargs["kernel"] = resolve_kernel(kernel)
        except ValueError as exc:
            raise ValueError(f"--kernel: {exc}") from None
    return spec, _sampled(spec, kwargs, getattr(args, "sampling", None))


def _budget(args: argparse.Namespace, spec: MethodSpec) -> int:
    """The method's budget: ``--ig-steps`` for ig, else ``--nt-samples`` (or their defaults).

    Raises:
        ValueError: The budget option of another kind of method, or a budget given to a
            method whose arguments do not depend on it (one gradient).
    """
    given = {"--nt-samples": args.nt_samples, "--ig-steps": args.ig_steps}
    option = "--ig-steps" if spec.name == "ig" else "--nt-samples"
    for other, value in given.items():
        if other != option and value is not None:
            raise ValueError(f"{other} has no effect on --method {spec.name}")
    one_gradient = all(spec.arguments(n) == spec.arguments(1) for n in (2, 3, 8))
    if given[option] is not None and one_gradient:
        raise ValueError(f"{option} has no effect on --method {spec.name}")
    default = DEFAULT_IG_STEPS if spec.name == "ig" else DEFAULT_NT_SAMPLES
    return default if given[option] is None else given[option]


def _sampled(spec: MethodSpec, kwargs: dict[str, Any], sampling: str | None) -> dict[str, Any]:
    """``kwargs`` under ``--sampling`` (the counts it pairs rounded up to even, said on stderr).

    ``iid`` (the default) adds nothing, so the settings of earlier stores stay the same; an
    antithetic run's ``sampling`` is in its kwargs and so in the store's settings fingerprint.
    """
    if sampling is None or sampling == "iid":
        return kwargs
    if not spec.samples_noise:
        raise ValueError(f"--sampling {sampling} has no effect on --method {spec.name}")
    paired = spec.sampled(kwargs, sampling)
    if gradient_count(paired) != gradient_count(kwargs):
        print(
            f"explain-dataset: antithetic pairs need even counts: {gradient_count(kwargs)} -> "
            f"{gradient_count(paired)} gradients per example",
            file=sys.stderr,
        )
    return paired


def _init_distributed() -> bool:
    """Join the torchrun process group if there is one to join; return whether we did."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True


def _sync_weights(model: nn.Module) -> None:
    """Give every rank rank 0's weights (the digits CNN is trained on each rank)."""
    import torch.distributed as dist

    if dist.is_initialized():
        with torch.no_grad():
            for tensor in model.state_dict().values():
                dist.broadcast(tensor, src=0)


#: The integer options: ``--option`` -> (its attribute, its smallest value).
_INT_MINIMUMS = {
    "--batch-size": ("batch_size", 1),
    "--shard-size": ("shard_size", 1),
    "--nt-samples": ("nt_samples", 1),
    "--ig-steps": ("ig_steps", 1),
    "--image-size": ("image_size", 8),  # as explain's --size
    "--limit": ("limit", 1),
    "--num-workers": ("num_workers", 0),
    "--seed": ("seed", 0),
}
#: explain_dataset's seeds lie in [0, 2**63).
_SEED_BITS = 63


def _check_numbers(args: argparse.Namespace) -> None:
    """Refuse a number out of its option's range (before anything is loaded or written)."""
    for option, (dest, minimum) in _INT_MINIMUMS.items():
        value = getattr(args, dest)
        if value is not None and value < minimum:
            raise CLIError(f"{option} must be >= {minimum}, got {value}")
    check_seed(args.seed, bits=_SEED_BITS)
    reals = (
        ("--confidence", args.confidence, "strictly between 0 and 1", lambda v: 0 < v < 1),
        ("--noise-level", args.noise_level, "a finite number >= 0", lambda v: v >= 0),
        ("--weight-noise", args.weight_noise, "a finite number >= 0", lambda v: v >= 0),
    )
    for option, value, requirement, within in reals:
        if value is not None and not (math.isfinite(value) and within(value)):
            raise CLIError(f"{option} must be {requirement}, got {value}")


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse an ``--out`` that is a file, missing ``--weights``, and a ``--data``/``--model``
    pair that does not go together."""
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {str(args.out)!r} exists and is not a directory")
    if args.weights is not None and not Path(args.weights).is_file():
        raise CLIError(f"--weights {args.weights!r}: no such file")
    if args.data != "digits" and not Path(args.data).is_dir():
        raise CLIError(f"--data must be 'digits' or a directory of images, got {args.data!r}")
    if args.model == "digits" and args.data != "digits":
        raise CLIError("--model digits takes --data digits (8 x 8 grey images)")
    if args.model == "efficientnet-lite0" and args.data == "digits":
        raise CLIError("--data digits needs --model digits (or auto)")
    if args.image_size is not None and args.data == "digits":
        raise CLIError("--image-size has no effect on --data digits (8 x 8 images)")


def _device(args: argparse.Namespace) -> torch.device:
    """``--device``, else ``cuda:LOCAL_RANK`` when there is CUDA, else the CPU."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    default = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    try:
        device = check_device(args.device or default)
    except ValueError as exc:
        raise CLIError(f"--device: {exc}") from None
    assert device is not None
    return device


def _checked_method(args: argparse.Namespace) -> tuple[MethodSpec, dict[str, Any]]:
    """:func:`_method_kwargs`, its errors (options without effect, kernels) as bad input."""
    try:
        return _method_kwargs(args)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _checked_data(args: argparse.Namespace) -> tuple[Any, str, dict[str, Any], str]:
    """:func:`_data` and the target it takes, as bad input when they do not go together."""
    try:
        data, default_model, metadata = _data(args)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    has_labels = isinstance(data, tuple) or data.labels is not None
    if args.target == "label" and not has_labels:
        raise CLIError(
            f"--target label: the images of --data {args.data!r} have no labels (class/image "
            "folders named by class index or ImageNet name); use --target prediction"
        )
    target = args.target if args.target != "auto" else "label" if has_labels else "prediction"
    return data, default_model, metadata, target


def _loaded_model(name: str, weights: str | None, device: torch.device) -> nn.Module:
    """:func:`_model` on ``device``; weights that do not load are bad input."""
    if weights is None:
        return _model(name, weights).to(device)
    try:
        model = _model(name, weights)
    except Exception as exc:  # torch.load and load_state_dict raise many types
        message = f"--weights {weights!r} do not load into the {name} model: {short(exc)}"
        raise CLIError(message) from None
    return model.to(device)


def _bad_input(exc: CLIError) -> int:
    """Report bad input in one line on stderr; the exit status for it."""
    print(f"{PROG} explain-dataset: error: {short(exc)}", file=sys.stderr)
    return EXIT_BAD_INPUT


def run_explain_dataset(args: argparse.Namespace) -> int:
    """Run the ``explain-dataset`` subcommand.

    Every option is checked, and the data and model loaded, before the store is touched: bad
    input writes nothing.

    Args:
        args: The parsed arguments of :func:`add_explain_dataset_parser`'s subparser.

    Returns:
        The exit status: 0 on success, 2 with one line on stderr for bad input (nothing
        written), 1 with a message on stderr for a store or data error during the run.

    Examples::

        >>> import argparse
        >>> parser = argparse.ArgumentParser()
        >>> _ = add_explain_dataset_parser(parser.add_subparsers())
        >>> args = parser.parse_args(["explain-dataset", "--data", "digits", "--out",
        ...                           "runs/digits", "--limit", "64"])  # doctest: +SKIP
        >>> run_explain_dataset(args)  # doctest: +SKIP
        0
    """
    import torch.distributed as dist

    try:
        _check_numbers(args)
        _check_paths(args)
        device = _device(args)
    except CLIError as exc:
        return _bad_input(exc)
    started = _init_distributed()
    try:
        try:
            data, default_model, metadata, target = _checked_data(args)
            spec, kwargs = _checked_method(args)
            model_name = default_model if args.model == "auto" else args.model
            model = _loaded_model(model_name, args.weights, device)
        except CLIError as exc:
            return _bad_input(exc)
        _sync_weights(model)
        metadata.update(model=model_name, weights=args.weights, limit=args.limit)
        start = time.perf_counter()
        store = explain_dataset(
            spec.cls(model),
            data,
            args.out,
            batch_size=args.batch_size,
            target=target,
            dtype=args.dtype,
            reduce_channels=args.reduce_channels,
            shard_size=args.shard_size,
            seed=args.seed,
            show_progress=not args.no_progress,
            overwrite=args.overwrite,
            num_workers=args.num_workers,
            device=device,
            metadata=metadata,
            **kwargs,
        )
        rank = dist.get_rank() if dist.is_initialized() else 0
        if rank == 0:
            print(
                f"{len(store)} attributions of shape {tuple(store.shape)} ({args.dtype}) in "
                f"{args.out}: {len(store.shard_paths)} shards, "
                f"{time.perf_counter() - start:.1f} s"
            )
        return 0
    except (StoreError, ValueError, TypeError, ImportError, OSError) as exc:
        print(f"captum-smooth explain-dataset: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if started:
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m captum_smooth.app.dataset_cli explain-dataset ...``.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for bad input (one line on stderr, nothing written),
        1 for a store or data error during the run.
    """
    from .cli import _Parser  # usage errors in one line, exit status 2 (cli imports this module)

    parser = _Parser(prog=PROG)
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_explain_dataset_parser(subparsers)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already reported in one line
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
