"""Sphinx configuration: the API reference built from the package's docstrings (``make docs``).

The docstrings are Google style (``Args:``, ``Returns:``, ``Raises:``) read by napoleon; their
``Examples::`` blocks stay literal blocks. The build runs with warnings as errors (``-W``); what
is suppressed here is listed with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The package documented is the one in this checkout, whatever is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import captum_smooth

project = "captum-smooth"
author = "captum-smooth developers"
copyright = "captum-smooth developers"
version = release = captum_smooth.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
root_doc = "index"

# autodoc: members in source order, the base classes named (most are Captum's).
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "signature"
autoclass_content = "class"

# napoleon: Google style only.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Cross references that do not resolve (Captum's and torch's names: no intersphinx, the build
# is offline) are plain text, not warnings.
nitpicky = False

html_theme = "alabaster"
html_title = f"captum-smooth {release}"
html_static_path: list[str] = []


def _skip_namedtuple_fields(app, what, name, obj, skip, options):
    """Leave out a NamedTuple's generated field properties ("Alias for field number N").

    Their class's ``Attributes:`` section documents the fields (napoleon writes an attribute
    entry for each); autodoc would document them a second time, a duplicate-object warning.
    """
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


def _only_our_sources(app, *args):
    """viewcode lists a documented tuple's module ("builtins") with a link to a page it never
    writes (tests/docs_site finds the broken link): only this package's sources are listed."""
    modules = getattr(app.env, "_viewcode_modules", {})
    for name in [n for n in modules if not n.startswith("captum_smooth")]:
        del modules[name]
    return []


def setup(app):
    app.connect("autodoc-skip-member", _skip_namedtuple_fields)
    app.connect("html-collect-pages", _only_our_sources, priority=100)  # before viewcode's
