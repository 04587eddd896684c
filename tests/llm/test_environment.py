"""The environment ``make setup`` makes runs transformers as a user would: its model classes
import in a fresh interpreter (no shim of ours imported first), and the LLM example of the site
(docs/llm.rst, once the README's) runs there as written, on a tiny random GPT-2 (nothing
downloaded).

A torchvision wheel built for CUDA next to the CPU torch broke both ("operator torchvision::nms
does not exist", raised when transformers imports the torchvision it finds).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None
    or importlib.util.find_spec("tokenizers") is None,
    reason="transformers is not installed (the 'text' extra)",
)

ROOT = Path(__file__).resolve().parents[2]


def run_fresh(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter, from the repository, with a headless plot backend."""
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_transformers_model_classes_import_in_a_fresh_interpreter() -> None:
    code = textwrap.dedent(
        """
        import transformers
        transformers.GPT2LMHeadModel
        transformers.AutoModelForCausalLM
        transformers.BertModel
        import sys
        assert not any(m.startswith("captum_smooth") for m in sys.modules), "a shim was used"
        print("ok")
        """
    )
    out = run_fresh(code)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"


# The user's part of the README's example: a model and its tokenizer (here tiny and random).
_MODEL_AND_TOKENIZER = """
import tokenizers, torch, transformers
words = ["<unk>", "The", "capital", "of", "France", "is", "Paris"]
_tok = tokenizers.Tokenizer(
    tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>")
)
_tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
tok = transformers.PreTrainedTokenizerFast(tokenizer_object=_tok, unk_token="<unk>")
torch.manual_seed(0)
config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=16,
                                 vocab_size=len(words), bos_token_id=0, eos_token_id=0)
model = transformers.GPT2LMHeadModel(config).eval()
"""


def llm_page_example() -> str:
    """The first Python block of the site's Text and LLMs page (docs/llm.rst), dedented."""
    text = (ROOT / "docs" / "llm.rst").read_text()
    start = text.index(".. code-block:: python\n\n") + len(".. code-block:: python\n\n")
    lines = []
    for line in text[start:].splitlines():
        if line.strip() and not line.startswith("   "):
            break
        lines.append(line)
    block = textwrap.dedent("\n".join(lines))
    assert "SmoothLLMGradientAttribution" in block, "the LLM page has no Python example"
    return block


@pytest.mark.slow
def test_the_llm_pages_example_runs_as_written() -> None:
    code = _MODEL_AND_TOKENIZER + llm_page_example() + '\nprint("ok")\n'
    out = run_fresh(code)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
