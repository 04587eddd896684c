"""The library (the LLM classes included) imports and works without transformers."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_import_with_transformers_hidden() -> None:
    code = textwrap.dedent(
        """
        import sys
        for name in ("transformers", "tokenizers", "safetensors"):
            sys.modules[name] = None  # any import of them raises ImportError
        import captum_smooth
        from captum_smooth import SmoothLLMAttribution, SmoothLLMGradientAttribution
        assert "SmoothLLMGradientAttribution" in captum_smooth.__all__
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
