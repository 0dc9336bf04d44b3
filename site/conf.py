"""Sphinx configuration of the course website (``make site``; see tools/website.py).

The pages are built from the committed notebooks with MyST-NB, never executed. Everything the
pages load comes from the built folder (MathJax from vendor/, the theme's own files), so the
site works from a folder with no network.
"""

import os

project = "Deep learning from scratch"
author = "The course's authors"
language = os.environ.get("COURSE_SITE_LANGUAGE", "en")
extensions = ["myst_nb"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

# Notebooks are shown with their committed outputs.
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # widgets are shown as the pictures of the committed run (tools/static_outputs.py)
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "html_image"]
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]

html_theme = "furo"
html_title = "深度学习从零开始" if language.startswith("zh") else "Deep learning from scratch"
html_static_path = ["_static"]
html_extra_path = ["_extra"]
html_css_files = ["course.css"]
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None

# MathJax from the vendored copy (tools/website.py copies vendor/mathjax into _static/mathjax); it finds
# its fonts next to the script.
mathjax_path = "mathjax/es5/tex-chtml-full.js"
# An unknown macro is a visible error (and one the browser test finds), not red text.
mathjax3_config = {"tex": {"packages": {"[-]": ["noundefined"]}}}
