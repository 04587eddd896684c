"""The README and the site's promises, checked.

The README is the newcomer's page: its code block runs as it is, and its links resolve. The
promises live on the site (docs/*.rst): every promise (a top-level bullet that starts in bold)
names a test, and every test the pages or the README name exists: the file (or folder), and the
test function in it. The usage page's lists of kernels and reducers are the registries' (a
registered part cannot go unlisted), and the "Extending" page's three blocks run as they are.
"""

from __future__ import annotations

import fnmatch
import math
import re
from functools import cache
from pathlib import Path

import pytest
import torch
from captum.attr import Saliency

from captum_smooth import SmoothTunnel, kernel_names, reducer_names
from captum_smooth.core.reducers import REDUCERS
from captum_smooth.noise.kernels import KERNELS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# The pages that hold promises (bullets in bold, each naming its test).
PROMISE_PAGES = ("guarantees.rst", "cli.rst", "llm.rst", "inseq.rst")
# Every page whose test references must resolve: the hand-written pages and the README.
REFERRING = [*sorted(DOCS.glob("*.rst")), README]
LITERAL = re.compile(r"``([^`]+)``|(?<!`)`([^`]+)`(?!`)")
TEST_PATH = re.compile(r"^(tests/[\w/.-]*)(?:::([\w*\[\]-]+))?$")
RELATIVE = re.compile(r"^\.\.\.::([\w*\[\]-]+)$")
BARE = re.compile(r"^test_[\w*]+$")


# ------------------------------------------------------------------------ the README


def _python_blocks_md(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_use_block_runs(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = _python_blocks_md(README.read_text())
    assert len(blocks) == 1, "the README keeps one short use block"
    exec(compile(blocks[0], "README-use.py", "exec"), {})
    errors, samples = capsys.readouterr().out.split("]) tensor([")
    assert errors.startswith("tensor([") and len(samples.split(",")) == 4  # one per example


def test_readme_links_resolve_and_reach_the_site() -> None:
    text = README.read_text()
    links = [u for u in re.findall(r"\]\(([^)\s]+)\)", text) if not u.startswith("http")]
    missing = [u for u in links if not (ROOT / u).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
    for page in ("docs/guarantees.rst", "docs/usage.rst", "docs/cli.rst", "docs/api/index.rst"):
        assert page in links, f"the README does not link {page}"
    assert "make demo" in text and "make test" in text and "docs/_build/html" in text


# ------------------------------------------------------------------------ promises and tests


def _references(text: str) -> list[str]:
    """The literals of ``text`` that name tests (paths under tests/, ``...::name``, test_x)."""
    found = [a or b for a, b in LITERAL.findall(text)]
    return [f for f in found if TEST_PATH.match(f) or RELATIVE.match(f) or BARE.match(f)]


@cache
def _test_names(path: str) -> tuple[str, ...]:
    return tuple(re.findall(r"^\s*(?:async )?def (test_\w+)", (ROOT / path).read_text(), re.M))


def _defined(name: str, path: str) -> bool:
    pattern = name.split("[")[0]  # a parametrised case names its function
    return any(fnmatch.fnmatchcase(n, pattern) for n in _test_names(path))


def _unresolved(text: str) -> list[str]:
    """Every test reference of ``text`` that does not resolve, in the page's order.

    A path must exist; ``path::name`` must define ``name`` (``*`` allowed); ``...::name`` is a
    test of the file named last before it; a bare ``test_name`` is a test of a file the page
    names.
    """
    refs = _references(text)
    files = [m.group(1) for r in refs if (m := TEST_PATH.match(r)) and r.endswith(".py")]
    files += [m.group(1) for r in refs if (m := TEST_PATH.match(r)) and "::" in r]
    bad, last = [], ""
    for ref in refs:
        if m := TEST_PATH.match(ref):
            path, name = m.groups()
            if not (ROOT / path).exists() or (name and not _defined(name, path)):
                bad.append(ref)
            last = path if path.endswith(".py") else last
        elif m := RELATIVE.match(ref):
            if not last or not _defined(m.group(1), last):
                bad.append(f"{ref} (after {last or 'no file'})")
        elif not any(_defined(ref, f) for f in files if f.endswith(".py")):
            bad.append(f"{ref} (in none of {sorted(set(files))})")
    return bad


@pytest.mark.parametrize("page", REFERRING, ids=lambda p: p.name)
def test_every_test_named_exists(page: Path) -> None:
    assert _unresolved(page.read_text()) == []


def _promises(text: str) -> list[str]:
    """The top-level bullets that start in bold, each with its continuation and sub-bullets."""
    items = re.split(r"\n(?=- |\S)", text)
    return [item for item in items if item.startswith("- **")]


@pytest.mark.parametrize("page", PROMISE_PAGES)
def test_every_promise_names_its_test(page: str) -> None:
    text = (DOCS / page).read_text()
    promises = _promises(text)
    assert promises or page == "inseq.rst", f"{page} lists no promise"
    unnamed = [p.split("\n")[0] for p in promises if not _references(p)]
    assert unnamed == [], f"{page}: promises without a test"


def test_the_reference_checker_catches_a_wrong_name() -> None:
    text = "``tests/core/test_tunnel_math.py::test_memory_is_bounded_by_the_chunk``"
    assert _unresolved(text) == []
    assert _unresolved(text.replace("bounded", "unbounded")) != []
    assert _unresolved("``tests/core/no_such_file.py``") != []
    assert _unresolved(text + " ``...::test_inputs_are_never_modified``") == []
    assert _unresolved(text + " ``test_no_such_test``") != []
    assert _promises("- **A.** no test\n  here\n- **B.** ``tests/core/``\n") == [
        "- **A.** no test\n  here",
        "- **B.** ``tests/core/``\n",
    ]


# ------------------------------------------------------------------------ usage and extending


def _rst_python_blocks(text: str) -> list[str]:
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text)
    return [re.sub(r"^   ", "", b, flags=re.M) for b in blocks]


@pytest.mark.parametrize(("row", "names"), [("kernels", kernel_names), ("reducers", reducer_names)])
def test_usage_lists_every_registered_part(row: str, names) -> None:
    usage = (DOCS / "usage.rst").read_text()
    listed = re.search(rf"\* - {row}\b.*\n\s+- (.*?), or your own", usage)
    assert listed is not None, f"docs/usage.rst has no {row} row"
    assert [n.strip() for n in listed.group(1).split(",")] == names()


@pytest.fixture
def extending() -> dict:
    """The three blocks of docs/extending.rst executed as three files; registries restored."""
    blocks = _rst_python_blocks((DOCS / "extending.rst").read_text())
    assert len(blocks) == 3
    namespace: dict = {}
    try:
        for i, block in enumerate(blocks):
            exec(compile(block, f"extending-{i}.py", "exec"), namespace)
        yield namespace
    finally:
        KERNELS.unregister("logistic")
        REDUCERS.unregister("median")


class _Recorder:
    """A reducer keeping every sample, to check the page's median from outside."""

    made: list[_Recorder] = []

    def __init__(self, batch_size: int) -> None:
        self.rows: list[list[torch.Tensor]] = [[] for _ in range(batch_size)]
        _Recorder.made.append(self)

    def update(self, attributions, k, rows=None):
        rows = range(len(self.rows)) if rows is None else rows.tolist()
        for i, row in enumerate(rows):
            self.rows[row].append(attributions[0][i * k : (i + 1) * k])

    def result(self):
        return (torch.stack([torch.cat(r).mean(0) for r in self.rows]),)


def test_extending_blocks_run_and_plug_in(extending: dict) -> None:
    assert "logistic" in kernel_names() and "median" in reducer_names()
    model = torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    tunnel = SmoothTunnel(Saliency(model))
    options = dict(kernel="logistic", stdevs=extending["StdShareSigma"](0.2), nt_samples=20)
    median = tunnel.attribute(x, target=0, abs=False, nt_type="median", generator=3, **options)
    _Recorder.made.clear()
    tunnel.attribute(x, target=0, abs=False, reducer=_Recorder, generator=3, **options)
    samples = torch.stack([torch.cat(r) for r in _Recorder.made[0].rows])  # (B, N, 6)
    assert median.shape == x.shape
    torch.testing.assert_close(median, samples.median(dim=1).values)


def test_extending_kernel_has_unit_std(extending: dict) -> None:
    n = 200_000
    t = extending["LogisticKernel"]().sample((n,), generator=torch.Generator().manual_seed(0))
    # The sample std of a logistic (kurtosis 4.2) has standard error ~ sqrt((4.2 - 1) / (4 n)).
    assert abs(float(t.std()) - 1.0) < 5 * math.sqrt(3.2 / (4 * n))
    assert abs(float(t.mean())) < 5 / math.sqrt(n)
