"""warmline.assets: from a checkout the app serves the top-level static/ and templates/;
installed from a wheel, the copies the build put inside the package (test_wheel.py
runs that case for real)."""

from __future__ import annotations

from pathlib import Path

from warmline import assets
from warmline.app import create_app
from warmline.assets import asset_dir

ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_serves_the_top_level_folders() -> None:
    assert assets.PACKAGE == ROOT / "warmline"
    assert asset_dir("static") == ROOT / "static"
    assert asset_dir("templates") == ROOT / "templates"
    assert (asset_dir("static") / "css" / "app.css").is_file()
    assert (asset_dir("templates") / "login.html").is_file()


def test_the_folder_inside_the_package_wins(tmp_path, monkeypatch) -> None:
    package = tmp_path / "site-packages" / "warmline"
    (package / "static").mkdir(parents=True)
    (tmp_path / "site-packages" / "templates").mkdir()
    monkeypatch.setattr(assets, "PACKAGE", package)
    assert asset_dir("static") == package / "static"
    # Not in the package: the folder beside it, as in a checkout.
    assert asset_dir("templates") == tmp_path / "site-packages" / "templates"


def test_the_app_serves_the_checkout_folders(settings) -> None:
    # Built, not served: the folders are fixed when the app is made.
    app = create_app(settings, redis_url="redis://127.0.0.1:9/0")
    assert Path(app.static_folder) == ROOT / "static"
    assert Path(app.root_path, app.template_folder) == ROOT / "templates"
