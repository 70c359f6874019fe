"""Sphinx configuration of the stagewidget documentation (built by ``scripts/docs``).

Sphinx with the PyData theme and myst-nb, as the Jupyter projects do: myst-nb executes the
tutorial notebooks (nbclient stores their widget state) and embeds that state with the
ipywidgets HTML manager, so the saved views render as real, static views. Everything the
pages load comes from the site itself (``_static/vendor``, from npm through package.json).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

import stagewidget  # noqa: E402

project = "stagewidget"
author = "the stagewidget developers"
copyright = "the stagewidget developers"
release = version = stagewidget.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "publicapi",
]
exclude_patterns = ["_build", "node_modules", ".gitignore", "package*.json"]
suppress_warnings: list[str] = []

# -- Tutorials: notebooks/, executed here -------------------------------------------------
# tutorials/notebooks links to ../notebooks. myst-nb executes a copy of each notebook in
# memory (nbclient, which stores the widget state) in that folder, so 01 finds the script it
# %runs; nothing is written back. STAGEWIDGET_NOTEBOOK_SCALE shortens their pipelines (1 is
# a user's 10-20 s). The runs are recorded in a throwaway data folder. The others render
# the outputs saved in the repository: 05 (a service on a port) and 06 (a Dask cluster)
# need outside parts, and 07 reads the scale as a whole number of study rounds.
EXECUTED = ["01-quickstart", "02-model-training", "03-async-io", "04-cancel-and-retry",
            "07-library-progress", "08-history-and-cache"]
os.environ.setdefault("STAGEWIDGET_NOTEBOOK_SCALE", "0.05")
if "STAGEWIDGET_HOME" not in os.environ:
    _home = tempfile.mkdtemp(prefix="stagewidget-docs-home-")
    atexit.register(shutil.rmtree, _home, ignore_errors=True)
    os.environ["STAGEWIDGET_HOME"] = _home

nb_execution_mode = "force"
nb_execution_excludepatterns = [
    f"tutorials/notebooks/{path.name}" for path in sorted((ROOT / "notebooks").glob("*.ipynb"))
    if path.stem not in EXECUTED
]
nb_execution_timeout = 120
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
# The widget manager and require.js from the site itself, never a CDN (see package.json);
# the manager would fetch modules it does not bundle from a CDN: the views use only the
# bundled @jupyter-widgets/controls and base, so that address is never used.
nb_ipywidgets_js = {
    "vendor/require.js": {},
    "vendor/ipywidgets/embed-amd.js": {"data-jupyter-widgets-cdn": "vendor/ipywidgets/"},
}

# -- API reference ---------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# No intersphinx (the build is offline): references to the standard library and to other
# projects cannot resolve, so nitpicky mode checks only stagewidget's own names: every
# public ``stagewidget.X`` must resolve. Internal types that public signatures name
# (``stagewidget.engine.progress.StageProgress``, type variables, private bases) live in
# submodules, outside the reference, and are left as plain text.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!stagewidget\b).*"),
    (r"py:.*", r"stagewidget\.[a-z_]+\..*"),
]

# -- HTML ------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"stagewidget {version}"
# scripts/docs puts require.js and the widget manager (npm ci, see package.json) in
# $STAGEWIDGET_DOCS_STATIC/vendor; Sphinx copies that folder into the site's _static.
_vendored = os.environ.get("STAGEWIDGET_DOCS_STATIC", "")
if not (Path(_vendored) / "vendor" / "require.js").is_file():
    raise RuntimeError("build the docs with scripts/docs: it vendors the widget manager and "
                       "require.js (npm ci) and sets STAGEWIDGET_DOCS_STATIC to them "
                       f"(got {_vendored!r})")
html_static_path = [_vendored]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_last_updated_fmt = None
html_context = {"default_mode": "auto"}  # the reader's light/dark preference
html_show_sourcelink = False
myst_enable_extensions = ["colon_fence", "deflist"]
highlight_language = "none"  # unlabelled blocks (bench/RESULTS.md's tables) are plain text
myst_heading_anchors = 3
