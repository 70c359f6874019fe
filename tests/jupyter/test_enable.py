"""Installing stagewidget enables its Jupyter Server extension, the way Jupyter
extensions do: a file in ``jupyter_server_config.d`` that the wheel installs under
``etc/jupyter``; ``jupyter server extension enable stagewidget`` finds it importable."""

from __future__ import annotations

import tomllib
from pathlib import Path

from jupyter_server.extension.config import ExtensionConfigManager
from jupyter_server.extension.manager import ExtensionPackage

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "jupyter-config/jupyter_server_config.d/stagewidget.json"


def test_the_package_installs_a_config_file_that_enables_the_extension() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data_files = project["tool"]["setuptools"]["data-files"]
    assert data_files["etc/jupyter/jupyter_server_config.d"] == [CONFIG]
    manager = ExtensionConfigManager(read_config_path=[str(ROOT / "jupyter-config")])
    assert manager.get_jpserver_extensions() == {"stagewidget": True}


def test_the_extension_point_loads_and_validates() -> None:
    package = ExtensionPackage(name="stagewidget", enabled=True)
    assert list(package.extension_points) == ["stagewidget.jupyter"]
    assert package.validate()
