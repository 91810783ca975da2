"""Sphinx configuration: MyST for the Markdown pages, numpydoc for the API reference.

Build: ``sphinx-build -W -b html docs docs/_build`` (the test suite does, warnings as errors).
"""
import fastnplm

project = "fastnplm"
author = "the fastnplm developers"
copyright = "2026, the fastnplm developers"
release = fastnplm.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "numpydoc"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
suppress_warnings = ["myst.xref_missing"]

html_theme = "alabaster"
html_title = "fastnplm"
