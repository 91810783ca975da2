"""Presentation: plots, the HTML report, the command line and the demos."""
from . import plot  # matplotlib is imported only when a plot is drawn
from .html_report import report

__all__ = ["plot", "report"]
