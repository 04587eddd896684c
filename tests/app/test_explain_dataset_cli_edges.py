"""``captum-smooth explain-dataset`` at its edges (issue #22): bad input is one line on stderr,
exit status 2, naming the option as typed, and nothing written; a corrected run is not refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from captum_smooth import AttributionStore
from captum_smooth.app import cli, dataset_cli

pytest.importorskip("sklearn")  # the digits


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained digits CNN weights: no training in the tests."""
    from captum_smooth.app.models.digits import DigitsCNN

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "digits.pt"
    torch.save(DigitsCNN().eval().state_dict(), path)
    return path


def _argv(out: Path, weights: Path, *extra: str) -> list[str]:
    return [
        "explain-dataset", "--data", "digits", "--out", str(out), "--weights", str(weights),
        "--limit", "12", "--shard-size", "8", "--batch-size", "4", "--no-progress", *extra,
    ]  # fmt: skip


# (the bad arguments, the option the message must name)
BAD = [
    (["--limit", "-5"], "--limit"),  # main: explained all 1,792 examples
    (["--limit", "0"], "--limit"),
    (["--nt-samples", "0"], "--nt-samples"),  # main: "`samples` must be >= 1"
    (["--batch-size", "0"], "--batch-size"),
    (["--shard-size", "-1"], "--shard-size"),
    (["--ig-steps", "0", "--method", "ig"], "--ig-steps"),
    (["--num-workers", "-1"], "--num-workers"),
    (["--image-size", "0"], "--image-size"),
    (["--seed", "-3"], "--seed"),
    (["--seed", str(2**63)], "--seed"),
    (["--confidence", "1.5"], "--confidence"),  # main: exit 1, store.json left
    (["--confidence", "nan"], "--confidence"),
    (["--noise-level", "-1", "--method", "smoothgrad"], "--noise-level"),
    (["--noise-level", "0.1", "--method", "adaptgrad"], "--noise-level"),  # main: ran, ignored
    (["--confidence", "0.9", "--method", "smoothgrad"], "--confidence"),  # main: ran, ignored
    (["--weight-noise", "-1", "--method", "noisegrad"], "--weight-noise"),
    (["--weight-noise", "inf", "--method", "noisegrad"], "--weight-noise"),
    (["--device", "banana"], "--device"),
    (["--data", "no-such-folder"], "--data"),
    (["--model", "efficientnet-lite0"], "--data"),
    (["--kernel", "laplace", "--method", "gradient"], "--kernel"),
    # Budgets and sizes where they change nothing (they had defaults, so this ran, ignored).
    (["--nt-samples", "3", "--method", "gradient"], "--nt-samples"),
    (["--nt-samples", "3", "--method", "ig"], "--nt-samples"),
    (["--ig-steps", "3", "--method", "smoothgrad"], "--ig-steps"),
    (["--image-size", "64"], "--image-size"),  # digits are 8 x 8
]


@pytest.mark.parametrize(("bad", "option"), BAD, ids=[" ".join(b) for b, _ in BAD])
def test_bad_input_is_one_line_exit_two_and_writes_nothing(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str], bad: list[str], option: str
) -> None:
    out = tmp_path / "s"
    assert cli.main(_argv(out, weights, *bad)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], lines
    assert lines[0].startswith("captum-smooth explain-dataset: error: ")
    assert not out.exists()


def test_weights_that_do_not_load_are_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_text("not a state dict")
    out = tmp_path / "s"
    argv = ["explain-dataset", "--data", "digits", "--out", str(out), "--method", "gradient"]
    for weights in (junk, tmp_path / "missing.pt"):
        assert cli.main([*argv, "--weights", str(weights)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--weights" in err[0]
    assert not out.exists()


def test_the_torchrun_entry_point_reports_bad_input_in_one_line_too(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    assert dataset_cli.main(_argv(out, weights, "--limit", "-5")) == 2
    assert dataset_cli.main(_argv(out, weights, "--batch-size", "x")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all("--limit" in lines[0] or "--batch-size" in s for s in lines)
    assert not out.exists()


def test_a_corrected_run_after_a_failed_one_is_not_refused(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    good = _argv(out, weights, "--method", "adaptgrad", "--nt-samples", "2")
    assert cli.main([*good, "--confidence", "1.5"]) == 2  # main: 1, and store.json written
    assert cli.main([*good, "--confidence", "0.9"]) == 0  # main: "other settings", 1
    assert len(AttributionStore(out)) == 12
    assert cli.main([*good, "--confidence", "0.9"]) == 0  # finished: reopened
    capsys.readouterr()


def test_the_defaults_keep_the_settings_of_earlier_stores(weights: Path) -> None:
    # --noise-level and --confidence default to None now (to refuse them where they have no
    # effect); the methods still get the table's 0.15 and 0.95, so earlier stores resume.
    parser = cli.build_parser()
    for method, key, value in (
        ("smoothgrad", "noise_level", 0.15),
        ("adaptgrad", "confidence", 0.95),
    ):
        args = parser.parse_args(_argv(Path("x"), weights, "--method", method))
        _, kwargs = dataset_cli._method_kwargs(args)
        assert kwargs[key] == value


def test_an_interrupted_run_says_the_store_keeps_its_shards(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # Ctrl-C after the first shard: the store keeps it and the same command resumes, so the
    # message must not say "nothing written" (it did, for every subcommand).
    real = dataset_cli._checked_data

    def ctrl_c_after_one_shard(args):
        data, *rest = real(args)

        tensors = data if isinstance(data, tuple) else data.tensors  # (images, labels)

        class CtrlC(torch.utils.data.Dataset):
            def __len__(self) -> int:
                return len(tensors[0])

            def __getitem__(self, i: int):
                if i >= 8:  # the first shard (8 examples) is finished
                    raise KeyboardInterrupt
                return tuple(t[i] for t in tensors)

        return (CtrlC(), *rest)

    monkeypatch.setattr(dataset_cli, "_checked_data", ctrl_c_after_one_shard)
    out = tmp_path / "s"
    assert cli.main(_argv(out, weights, "--method", "gradient")) == 130
    assert "keeps its finished shards" in capsys.readouterr().err
    monkeypatch.undo()
    assert cli.main(_argv(out, weights, "--method", "gradient")) == 0
    assert len(AttributionStore(out)) == 12
