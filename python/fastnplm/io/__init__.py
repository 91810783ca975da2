"""Data in and out: reading event files, saved models (read by the C++ core too), ONNX export
and the bundled open datasets."""
from . import datasets
from .files import FORMATS, load
from .onnx_export import export_onnx
from .saved_model import SavedModel, load_model, save_model

__all__ = ["FORMATS", "SavedModel", "datasets", "export_onnx", "load", "load_model", "save_model"]
