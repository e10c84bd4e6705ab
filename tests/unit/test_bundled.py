"""The bundled model and presets are found in a checkout and in a wheel install, and the wheel carries them all."""

from pathlib import Path

import tomllib

from qadvisor import bundled

ROOT = Path(__file__).resolve().parents[2]


def test_checkout_first_then_the_installed_copy(tmp_path, monkeypatch):
    assert bundled.bundled_dir("profiles") == ROOT / "profiles"
    monkeypatch.setattr(bundled, "CHECKOUT", tmp_path / "no-checkout")
    monkeypatch.setattr(bundled, "INSTALLED", tmp_path / "share" / "qadvisor")
    assert bundled.bundled_dir("profiles") == tmp_path / "share" / "qadvisor" / "profiles"


def test_the_wheel_data_files_cover_every_bundled_file():
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    covered = {p.resolve() for globs in data_files.values() for g in globs for p in ROOT.glob(g)}
    for folder in ("profiles", "assets/qwen2-tiny-stdlib"):
        for path in (ROOT / folder).iterdir():
            assert path.resolve() in covered, path
