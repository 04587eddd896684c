"""Sphinx configuration: the API reference built from the package's docstrings, and the
tutorials executed at build time (``make docs``).

The docstrings are Google style (``Args:``, ``Returns:``, ``Raises:``) read by napoleon; their
``Examples::`` blocks stay literal blocks. The build runs with warnings as errors (``-W``); what
is suppressed here is listed with the reason.
"""

from __future__ import annotations

import os
import sys
import warnings
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
    "sphinx_gallery.gen_gallery",
]

# The gallery's header is read by sphinx-gallery (it becomes tutorials/_gallery/index), not by
# Sphinx as a page of its own.
exclude_patterns = ["_build", "tutorials/GALLERY_HEADER.rst"]
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

# The tutorials: docs/tutorials/plot_*.py, executed at every build from a clean checkout (CI's),
# their printed output and matplotlib figures captured into the pages (tutorials/_gallery,
# generated, ignored by git). An exception in a tutorial fails the build. Locally, a script
# whose text has not changed since the last build is not run again: delete
# docs/tutorials/_gallery to run them all.
sphinx_gallery_conf = {
    "examples_dirs": "tutorials",
    "gallery_dirs": "tutorials/_gallery",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "image_scrapers": ("matplotlib",),
    "min_reported_time": 0,
    "backreferences_dir": None,
    "doc_module": (),
    # No timing page at the root of docs/ (it would be a generated file outside _gallery); each
    # tutorial's page states its own running time.
    "write_computation_times": False,
    "show_signature": False,
}

# The tutorials run offline (transformers reads the MiniLM wheel's files only) and print no
# progress bars into the pages.
os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
# Captum's Saliency warns on every call that it set requires_grad on the inputs, which it does
# by design: not news for the reader.
warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")

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
