"""The library imports without inseq; only ``captum_smooth.inseq`` needs it, and says how."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
sys.modules["inseq"] = None  # as if not installed
import captum_smooth
assert "captum_smooth.inseq" not in sys.modules
try:
    import captum_smooth.inseq
except ImportError as error:
    assert "--no-deps inseq==0.7.1" in str(error), error
else:
    raise AssertionError("captum_smooth.inseq imported without inseq")
"""


def test_library_imports_without_inseq() -> None:
    subprocess.run([sys.executable, "-c", CODE], check=True, timeout=300)
