"""The API reference (docs/api/*.rst, built by ``make docs``) names every public name.

Read from the sources, so a name added to an ``__all__`` fails here until its page documents it:
every name of ``captum_smooth.__all__`` on the top-level page, under ``captum_smooth``; every name
of the other documented modules' ``__all__`` either on that module's page (an ``auto...``
directive, or ``automodule`` with ``:members:``) or, when it is re-exported, as the same object
documented elsewhere. Skipped where Sphinx is not installed (the ``docs`` extra).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("sphinx")

import captum_smooth

API = Path(__file__).resolve().parent.parent / "docs" / "api"
DIRECTIVE = re.compile(r"^\.\. (auto\w+|currentmodule|module)::\s*(\S+)\s*$")
DOCUMENTED_MODULES = (
    "captum_smooth",
    "captum_smooth.core",
    "captum_smooth.core.router",
    "captum_smooth.dataset",
    "captum_smooth.llm",
    "captum_smooth.methods",
    "captum_smooth.metrics",
    "captum_smooth.noise",
    "captum_smooth.registry",
)


def _directives() -> tuple[set[tuple[str, str]], set[str]]:
    """``(module, name)`` of every object directive, and the modules documented with members."""
    named: set[tuple[str, str]] = set()
    with_members: set[str] = set()
    for page in sorted(API.glob("*.rst")):
        module = ""
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            match = DIRECTIVE.match(line)
            if not match:
                continue
            kind, target = match.groups()
            if kind in ("currentmodule", "module", "automodule"):
                module = target
                options = []
                for option in lines[i + 1 :]:
                    if not option.startswith("   :"):
                        break
                    options.append(option.strip())
                if kind == "automodule" and ":members:" in options:
                    with_members.add(target)
                continue
            named.add((module, target))
    return named, with_members


def _resolve(module: str, name: str) -> object:
    obj: object = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_top_level_name_is_on_the_top_level_page() -> None:
    named, _ = _directives()
    top = {name for module, name in named if module == "captum_smooth"}
    missing = sorted(set(captum_smooth.__all__) - top)
    assert not missing, f"not in docs/api/captum_smooth.rst: {missing}"


@pytest.mark.parametrize("module_name", DOCUMENTED_MODULES)
def test_every_public_name_of_a_documented_module_is_documented(module_name: str) -> None:
    named, with_members = _directives()
    module = importlib.import_module(module_name)
    if module_name in with_members:
        return
    documented = {id(_resolve(m, n)) for m, n in named}
    own = {name for m, name in named if m == module_name}
    missing = [
        name
        for name in module.__all__
        if name not in own and id(getattr(module, name)) not in documented
    ]
    assert not missing, f"{module_name}: not in docs/api/*.rst: {missing}"


def test_every_page_is_in_the_api_index() -> None:
    index = (API / "index.rst").read_text().split()
    pages = sorted(p.stem for p in API.glob("*.rst") if p.stem != "index")
    assert [p for p in pages if p not in index] == []


# ------------------------------------------------------------------------ pages made from Markdown


def _md_to_rst():
    spec = importlib.util.spec_from_file_location("md_to_rst", API.parent / "md_to_rst.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmarks_page_is_the_benchmarks_readme() -> None:
    # One source: benchmarks/README.md. Refresh the page with
    # `python docs/md_to_rst.py benchmarks/README.md docs/benchmarks.rst`.
    readme = API.parents[1] / "benchmarks" / "README.md"
    page = (API.parent / "benchmarks.rst").read_text()
    assert page == _md_to_rst().convert(readme.read_text(), "benchmarks/"), (
        "docs/benchmarks.rst is out of date: python docs/md_to_rst.py benchmarks/README.md "
        "docs/benchmarks.rst"
    )


def test_markdown_conversion_of_what_rst_cannot_nest() -> None:
    convert = _md_to_rst().convert
    text = "# T\n\n- **So `demo` draws\n  pairs**, see [`RESULTS.md`](RESULTS.md) and [site](https://x.y)\n"
    assert convert(text, "benchmarks/") == (
        "T\n=\n\n- **So demo draws\n  pairs**, see ``benchmarks/RESULTS.md`` and"
        " `site <https://x.y>`__\n"
    )
    table = "| a | `b`c |\n|---|---|\n| 1 | |\n"
    assert convert("# T\n\n" + table).endswith(
        ".. list-table::\n   :header-rows: 1\n\n   * - a\n     - ``b``\\ c\n   * - 1\n     -\n"
    )
