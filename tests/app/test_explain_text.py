"""``captum-smooth explain-text`` on the real MiniLM model, end to end and offline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from captum_smooth.app import text
from captum_smooth.app.cli import build_parser, main

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None
    or importlib.util.find_spec("all_minilm_l6_v2") is None,
    reason="the text extra (transformers) or the MiniLM model wheel is not installed",
)


def test_the_subcommand_is_registered() -> None:
    args = build_parser().parse_args(["explain-text", "--methods", "plain,noisegrad"])
    assert args.func is text.run_explain_text and args.methods == ("plain", "noisegrad")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["explain-text", "--methods", "plain,gradcam"])


@needs_minilm
@pytest.mark.slow
def test_explain_text_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "out"
    argv = ["explain-text", "--samples", "2", "--steps", "8", "--out", str(out), "--seed", "1"]
    assert main(argv) == 0
    report = json.loads((out / "text_attributions.json").read_text())
    # The published model's similarity for this pair (sentence-transformers reports ~0.67).
    assert abs(report["similarity"] - 0.667) < 0.01
    rows = {r["method"]: r for r in report["methods"]}
    assert list(rows) == list(text.TEXT_METHODS)
    for name, row in rows.items():
        assert row["tokens"][0] == "[CLS]" and "guitar" in row["tokens"]
        # The instrument word carries the similarity, whatever the method.
        top = max(zip(row["scores"], row["tokens"]))[1]
        assert top == "guitar", (name, row)
        assert (row["relative_error"] == 0) == (name == "plain")
    assert rows["noisegrad"]["samples"] == 2 and rows["smoothgrad"]["samples"] == 2
    html = (out / "text_attributions.html").read_text()
    assert html.count("<mark") == 4 * len(rows["plain"]["tokens"])
    assert (out / "text_attributions.png").stat().st_size > 5000
    lines = (out / "text_attributions.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 * len(rows["plain"]["tokens"])
