"""Sphinx configuration: MyST pages, executed notebooks (myst-nb), numpydoc via napoleon, autosummary API."""

from __future__ import annotations

import shutil
from datetime import date
from importlib.metadata import version as _pkg_version
from pathlib import Path

HERE = Path(__file__).parent

# tutorials live at the repository root (tutorials/) so they are easy to find and run;
# they are copied here at build time and executed by myst-nb, so they cannot rot.
_tut_src, _tut_dst = HERE.parent / "tutorials", HERE / "tutorials"
if _tut_src.is_dir():
    shutil.rmtree(_tut_dst, ignore_errors=True)
    _tut_dst.mkdir()
    for f in sorted(_tut_src.iterdir()):
        if f.suffix in {".md", ".ipynb"}:
            shutil.copy(f, _tut_dst / f.name)

project = "annshard"
author = "annshard developers"
copyright = f"{date.today().year}, {author}"
release = _pkg_version("annshard")
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
autosummary_generate = True
autodoc_member_order = "groupwise"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "inherited-members": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
myst_enable_extensions = ["colon_fence", "deflist"]
nb_execution_mode = "cache"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_excludepatterns: list[str] = []
# offline: no intersphinx inventories are fetched (the build machine has no network)
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "jupyter_execute"]
html_theme = "sphinx_book_theme"
html_title = "annshard"
suppress_warnings = ["mystnb.unknown_mime_type"]
nitpicky = False
