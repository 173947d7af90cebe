"""Where the views' static files and templates are: inside the package in a wheel (the
build maps the top-level static/ and templates/ there), at the top of a checkout otherwise."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def asset_dir(name: str) -> Path:
    """The folder ``name`` (``static`` or ``templates``) this installation serves."""
    installed = PACKAGE / name
    return installed if installed.is_dir() else PACKAGE.parent / name
