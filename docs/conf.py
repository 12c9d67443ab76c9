"""Sphinx configuration for lensenhance."""

import sys
from pathlib import Path

import lensenhance

# docs/_ext: the model zoo and benchmark pages, generated from the cards and the JSON.
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "lensenhance"
author = "The lensenhance developers"
copyright = "2026, The lensenhance developers"
version = release = lensenhance.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_automodapi.automodapi",
    "numpydoc",
    "sphinx_click",
    "sphinx_gallery.gen_gallery",
    "lensenhance_pages",
]
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
automodapi_toctreedirnm = "api"
automodsumm_inherited_members = False
autodoc_typehints = "none"
nitpicky = False
# `name` in the pages is a cross-reference, as in the docstrings (numpydoc).
default_role = "obj"
suppress_warnings = ["toc.not_included"]

# Offline builds: intersphinx inventories cannot be fetched, so none are configured.
intersphinx_mapping = {}

html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_title = f"lensenhance {release}"
html_theme_options = {"navigation_with_keys": False}
exclude_patterns = ["_build"]

# The example gallery: every script in examples/ runs during the build (on the CPU, a
# minute or so each) and its figures and output go into the page.
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
}
exclude_patterns += ["auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                     "auto_examples/*.md5", "auto_examples/*.codeobj.json"]
