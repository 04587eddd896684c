"""The command-line options that several subcommands take, each defined once.

``explain``, ``demo``, ``explain-dataset``, ``explain-text`` and ``insights`` add these with
:func:`add_option`, so that an option shared by two subcommands has one spelling, one type and
one help text there (only its default, and what the default means, may differ). Spellings of
earlier versions are refused with the new one (:func:`add_renamed`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.antithetic import SAMPLING_MODES
from .methods import kernel_cli_names

__all__ = ["SHARED_OPTIONS", "add_option", "add_renamed"]

#: ``argparse`` arguments of each shared option; ``{default}`` in a help text becomes
#: "default: " and the subcommand's ``default_note`` (what its default means, else the value),
#: or "required" and the note for a required option; ``{kernels}``, the kernels registered when
#: the parser is built (a plug-in's too).
SHARED_OPTIONS: dict[str, dict[str, Any]] = {
    "--seed": {"type": int, "default": 0, "help": "seed of every random draw ({default})"},
    "--kernel": {
        "default": None,
        "metavar": "K",
        "help": "input-noise kernel of the methods that draw input noise, named as in the "
        "method names: {kernels} (default: gaussian)",
    },
    "--weight-noise": {
        "type": float,
        "default": None,
        "metavar": "S",
        "help": "weight-noise scale s of noisegrad and fusiongrad (every weight times "
        "N(1, s^2); {default})",
    },
    "--noise-level": {
        "type": float,
        "metavar": "L",
        "help": "input-noise sigma, as a share of the input's range, of the methods that take "
        "it ({default})",
    },
    "--sampling": {
        "choices": SAMPLING_MODES,
        "default": None,
        "help": "how the smoothing methods draw their noise: iid (independent draws, Captum's "
        "numbers) or antithetic (input noise in mirrored pairs t, -t, weight noise eta, 2 - eta: "
        "unbiased, its error from the pairs; counts it pairs are rounded up to even) "
        "({default})",
    },
    "--size": {"type": int, "default": 224, "help": "image side in pixels ({default})"},
    "--out": {"type": Path, "metavar": "DIR", "help": "the output folder ({default})"},
    "--no-progress": {"action": "store_true", "help": "no progress bars"},
}


def add_option(
    parser: argparse.ArgumentParser,
    option: str,
    *,
    aliases: Sequence[str] = (),
    default_note: str | None = None,
    **changes: Any,
) -> argparse.Action:
    """Add the shared ``option`` (a key of :data:`SHARED_OPTIONS`) to ``parser``.

    Args:
        parser: A subcommand's parser.
        option: The option, e.g. ``"--weight-noise"``.
        aliases: Short spellings (``-n``) added beside it.
        default_note: What the default means, for the help (default: the default's value).
        **changes: This subcommand's ``default`` or ``required`` (the only arguments that may
            differ).

    Returns:
        The argparse action.

    Raises:
        KeyError: An option that is not shared.
        ValueError: A change other than ``default`` or ``required`` (it would make the option
            differ).
    """
    if set(changes) - {"default", "required"}:
        raise ValueError(f"{option}: only the default may differ between subcommands")
    arguments = {**SHARED_OPTIONS[option], **changes}
    # argparse formats help with %: a note's own percent signs are kept literal.
    note = "%(default)s" if default_note is None else default_note.replace("%", "%%")
    note = ("required: " if changes.get("required") else "default: ") + note
    kernels = ", ".join(kernel_cli_names())
    arguments["help"] = arguments["help"].format(default=note, kernels=kernels)
    return parser.add_argument(option, *aliases, **arguments)


class _Renamed(argparse.Action):
    """An option of an earlier version: using it is a usage error naming the new spelling."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        # The parser's prog names the subcommand: "captum-smooth explain-text: error: ...".
        parser.error(f"{option_string} is now {self.new}")


def add_renamed(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """Refuse ``old`` (hidden from the help) with a one-line usage error naming ``new``.

    Args:
        parser: A subcommand's parser.
        old: The earlier spelling (``--weight-stdev``).
        new: The spelling that replaced it (``--weight-noise``).
    """
    parser.add_argument(
        old, action=_Renamed, new=new, dest="_renamed_" + old.lstrip("-").replace("-", "_")
    )
