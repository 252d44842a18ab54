"""Where the bundled data lives: the price book and provider profiles.

Its own module so that `pricing` and `profiles` both import it rather than each other.
"""

from __future__ import annotations

from pathlib import Path


def data_dir() -> Path:
    """Where the bundled price book and profiles are: inside the wheel, or the repo root."""
    here = Path(__file__).resolve().parent
    packaged = here / "_data"
    if (packaged / "providers").is_dir():
        return packaged
    return here.parent
