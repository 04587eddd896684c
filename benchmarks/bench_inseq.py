"""captum_smooth.inseq: time per gradient against inseq's own saliency, at equal gradient counts.

Run: ``python -m benchmarks.bench_inseq`` (``--quick`` for a smaller check). Needs inseq
(``make setup`` installs it); without it the module reports ``skipped``.

Both sides attribute the same given continuation (no generation timed) of a random-weights
GPT-2 (4 layers, width 128) and T5 (2 + 2 layers, width 128), nothing downloaded, through
``model.attribute``, so inseq's own per-step work (formatting, step scores, its output objects)
is in both:

* **smoothgrad, N samples** (N gradients per generated token, batched by our loop) against
  inseq's **saliency on N copies of the prompt** (N gradients per token): the same gradient
  count; target <= 1.1. On T5 inseq batches the copies (the same batch size: like for like); on
  a decoder-only model inseq attributes a given continuation one sequence at a time ("Batched
  constrained decoding is currently not supported"), so there the N copies are N passes;
* **smoothgrad, 1 sample** against saliency on the prompt: the wrapper's fixed overhead;
* **noisegrad, M weight draws** (M sequential gradient passes) against **M calls of inseq's
  saliency**: the same gradient count, weight noise set and restored in place (reference).
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import torch

from benchmarks._harness import PAIRED_RATIO_NOTE, environment, markdown_table, paired_ratio

PROMPT = "the quick brown fox jumps over the lazy dog near the river bank"
CONTINUATION = " and then sleeps near the bank"
TRANSLATION = "le renard brun saute sur le chien pres de la riviere"
WORDS = [*PROMPT.split(), *CONTINUATION.split(), *TRANSLATION.split()]


def _available() -> bool:
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("inseq", "transformers", "tokenizers")
    )


def _model(kind: str) -> Any:
    """inseq's wrapper of a random GPT-2 or T5 with a word-level tokenizer (imports inseq)."""
    if importlib.util.find_spec("torchvision") is not None:
        from captum_smooth.app.models._torchvision import import_torchvision

        import_torchvision()  # transformers imports torchvision; its PyPI build needs the shim
    import inseq
    import tokenizers
    import transformers

    import captum_smooth.inseq  # noqa: F401  -- registers the methods

    vocab = ["<pad>", "</s>", "<unk>", *dict.fromkeys(WORDS)]
    tok = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>")
    )
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    if kind == "t5":
        tok.post_processor = tokenizers.processors.TemplateProcessing(
            single="$A </s>", special_tokens=[("</s>", 1)]
        )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="</s>"
    )
    torch.manual_seed(0)
    if kind == "t5":
        config = transformers.T5Config(
            vocab_size=len(vocab), d_model=128, d_kv=32, d_ff=256, num_layers=2,
            num_decoder_layers=2, num_heads=4, pad_token_id=0, eos_token_id=1,
            decoder_start_token_id=0,
        )  # fmt: skip
        model = transformers.T5ForConditionalGeneration(config)
    else:
        config = transformers.GPT2Config(
            n_layer=4, n_head=4, n_embd=128, n_positions=64, vocab_size=len(vocab),
            bos_token_id=1, eos_token_id=1, pad_token_id=0,
        )  # fmt: skip
        model = transformers.GPT2LMHeadModel(config)
    return inseq.load_model(model.eval(), "saliency", tokenizer=fast)


def _caller(model: Any, method: str, copies: int = 1, **kwargs: Any) -> Any:
    target = TRANSLATION if model.is_encoder_decoder else PROMPT + CONTINUATION

    def call() -> Any:
        return model.attribute(
            [PROMPT] * copies,
            [target] * copies,
            method=method,
            show_progress=False,
            **kwargs,
        )

    return call


def _repeat(fn: Any, times: int) -> Any:
    def call() -> None:
        for _ in range(times):
            fn()

    return call


def measure(kind: str, n_samples: int, n_weight: int, repeats: int) -> dict[str, Any]:
    """The three paired timings on the model ``kind`` (see the module docstring)."""
    model = _model(kind)
    return {
        "smoothgrad_n": paired_ratio(
            _caller(model, "smoothgrad", nt_samples=n_samples, generator=0),
            _caller(model, "saliency", copies=n_samples),
            repeats=repeats,
        ),
        "smoothgrad_1": paired_ratio(
            _caller(model, "smoothgrad", nt_samples=1, generator=0),
            _caller(model, "saliency"),
            repeats=repeats,
        ),
        "noisegrad_m": paired_ratio(
            _caller(model, "noisegrad", n_weight_samples=n_weight, generator=0),
            _repeat(_caller(model, "saliency"), n_weight),
            repeats=repeats,
        ),
    }


KINDS = {"gpt2": "GPT-2 (4 layers, width 128)", "t5": "T5 (2 + 2 layers, width 128)"}


def _rows(kind: str, timings: dict[str, Any], n: int, m: int) -> list[list[Any]]:
    saliency_n = (
        f"saliency on {n} copies (batched)"
        if kind == "t5"
        else f"saliency on {n} copies (inseq: one by one)"
    )
    rows = [
        (f"smoothgrad, {n} samples / {saliency_n}", timings["smoothgrad_n"], "<= 1.1"),
        ("smoothgrad, 1 sample / saliency", timings["smoothgrad_1"], "(overhead)"),
        (f"noisegrad, {m} draws / {m} saliency calls", timings["noisegrad_m"], "(reference)"),
    ]
    return [
        [KINDS[kind], name, t.ratio, f"{t.ratio_low:.3f}-{t.ratio_high:.3f}", target]
        for name, t, target in rows
    ]


def _report(timings: dict[str, dict[str, Any]], settings: dict[str, int]) -> str:
    n, m = settings["n_samples"], settings["n_weight"]
    rows = [row for kind, t in timings.items() for row in _rows(kind, t, n, m)]
    table = markdown_table(
        ["model", "comparison (same gradient count)", "ratio", "pairs", "target"], rows
    )
    return "\n".join([
        "### captum_smooth.inseq against inseq's saliency",
        "",
        f"Random weights, a {len(PROMPT.split())}-word prompt and a given continuation "
        f"(no generation timed), through `model.attribute`; {settings['repeats']} pairs per "
        f"row. One torch thread. {PAIRED_RATIO_NOTE}",
        "",
        table,
    ])  # fmt: skip


def run(quick: bool = False) -> dict[str, Any]:
    """Measure; return the figures and a markdown report (``skipped`` without inseq)."""
    if not _available():
        return {"skipped": True, "markdown": "skipped: inseq is not installed"}
    settings = {"n_samples": 8, "n_weight": 4, "repeats": 4 if quick else 8}
    torch.set_num_threads(1)  # stable ratios on a machine other jobs load
    start = time.perf_counter()
    timings = {
        kind: measure(kind, settings["n_samples"], settings["n_weight"], settings["repeats"])
        for kind in KINDS
    }
    figures: dict[str, float] = {
        f"{kind}_{name}_ratio": t.ratio for kind, per in timings.items() for name, t in per.items()
    }
    figures["seconds"] = time.perf_counter() - start
    return {
        "figures": figures,
        "markdown": _report(timings, settings),
        "seeds": "torch 0 (models), generator 0 (noise)",
        "environment": environment(),
    }


if __name__ == "__main__":
    from benchmarks._harness import run_standalone

    run_standalone(run, __doc__)
