"""Views of a run: pure formatting (``format``) and a plain-text view (``text``).

The widget view lives in its own module and is not imported here, so importing the
views never needs ipywidgets.
"""

from .text import TextView

__all__ = ["TextView"]
