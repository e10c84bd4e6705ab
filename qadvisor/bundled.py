"""Where the data that ships with qadvisor lives: the model in `assets/`, the preset `profiles/`, and the package's
own tables (`qadvisor/data/*.json`: shapes, published figures, measured memory), read through `package_data`.

A source checkout (the README's `pip install -e`) reads them in place; a wheel installs copies under
`<prefix>/share/qadvisor` (pyproject's data-files). Nothing here imports more than the standard library.
"""

from __future__ import annotations

import json
import sysconfig
from functools import cache
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
INSTALLED = Path(sysconfig.get_path("data")) / "share" / "qadvisor"


def bundled_dir(name: str) -> Path:
    """`assets` or `profiles`: the checkout's folder, else the installed copy (which may be missing)."""
    checkout = CHECKOUT / name
    return checkout if checkout.is_dir() else INSTALLED / name


@cache
def package_data(name: str) -> dict:
    """One of qadvisor's own JSON tables (qadvisor/data/NAME), read once: the one reader of package data."""
    from importlib import resources

    return json.loads(resources.files("qadvisor.data").joinpath(name).read_text(encoding="utf-8"))
