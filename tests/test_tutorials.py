"""The tutorials (docs/tutorials/plot_*.py, executed by ``make docs`` through sphinx-gallery).

Fast checks read the scripts: each is a gallery script (a docstring with a title first), the
site's configuration runs every one of them, the gallery is in the site's table of contents,
and they import the library's names from its top level, ``captum_smooth.__all__`` (a renamed or
removed name fails here, before a docs build). Running them is the docs build's part: ``make
docs`` (CI runs it) executes every tutorial and fails when one raises or its checks fail.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import captum_smooth

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("plot_*.py"))
TITLE = re.compile(r'^"""\n(?P<title>[^\n]+)\n(?P<rule>=+)\n', re.MULTILINE)


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_there_are_tutorials() -> None:
    assert len(TUTORIALS) >= 4, [p.name for p in TUTORIALS]


@pytest.mark.parametrize("path", TUTORIALS, ids=_ids(TUTORIALS))
def test_each_tutorial_opens_with_a_titled_docstring(path: Path) -> None:
    # sphinx-gallery takes the page's title and introduction from the first docstring.
    match = TITLE.match(path.read_text())
    assert match, f"{path.name} must open with a docstring: a title line, then '===' under it"
    assert len(match["rule"]) == len(match["title"]), f"{path.name}: the title's rule length"


def test_the_site_runs_every_tutorial_and_lists_the_gallery() -> None:
    conf: dict[str, object] = {"__file__": str(DOCS / "conf.py")}
    source = (DOCS / "conf.py").read_text()
    exec(compile(source, str(DOCS / "conf.py"), "exec"), conf)  # our own configuration
    gallery = conf["sphinx_gallery_conf"]
    assert isinstance(gallery, dict)
    assert "sphinx_gallery.gen_gallery" in conf["extensions"]  # type: ignore[operator]
    assert gallery["examples_dirs"] == "tutorials"
    pattern = re.compile(gallery["filename_pattern"])
    assert all(pattern.search(str(p)) for p in TUTORIALS)
    index = (DOCS / "index.rst").read_text()
    assert re.search(rf"^\s+{re.escape(gallery['gallery_dirs'])}/index\s*$", index, re.MULTILINE)
    assert (DOCS / "tutorials" / "GALLERY_HEADER.rst").exists()


def _library_imports(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` of every ``from captum_smooth... import name`` outside the app."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = node.module
            library = module == "captum_smooth" or module.startswith("captum_smooth.")
            if library and not module.startswith("captum_smooth.app"):
                found += [(module, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("path", TUTORIALS, ids=_ids(TUTORIALS))
def test_tutorials_import_public_names_only(path: Path) -> None:
    # As a user would: the library's names from the top level, ``from captum_smooth import``
    # (the application's models, photos and MiniLM loader come from captum_smooth.app).
    imports = _library_imports(path)
    assert imports, f"{path.name} imports nothing from captum_smooth"
    public = set(captum_smooth.__all__)
    private = [
        f"{module}.{name}"
        for module, name in imports
        if module != "captum_smooth" or name not in public
    ]
    assert not private, f"{path.name} imports names outside captum_smooth.__all__: {private}"


def test_the_import_check_sees_a_private_name(tmp_path: Path) -> None:
    script = tmp_path / "plot_x.py"
    script.write_text(
        "from captum_smooth import SmoothGrad\nfrom captum_smooth.core.loop import call_inner\n"
        "from captum_smooth.app.text import load_minilm\n"
    )
    assert _library_imports(script) == [
        ("captum_smooth", "SmoothGrad"),
        ("captum_smooth.core.loop", "call_inner"),
    ]
    with pytest.raises(AssertionError, match="call_inner"):
        test_tutorials_import_public_names_only(script)
