"""Former home of the model view; kept only until the branches that import it are merged.

Import from :mod:`pipeline.graph.load` (load, prepare, sha256_file, load_view),
:mod:`pipeline.graph.view` (ModelView, WeightedOp, analyze, check_input_spec) and
:mod:`pipeline.graph.rewrite` (with_outputs, with_range_outputs) instead.
"""

from pipeline.graph.load import MIN_OPSET, load, load_view, prepare, sha256_file
from pipeline.graph.rewrite import with_outputs, with_range_outputs
from pipeline.graph.view import ModelView, WeightedOp, analyze, check_input_spec

__all__ = [
    "MIN_OPSET",
    "ModelView",
    "WeightedOp",
    "analyze",
    "check_input_spec",
    "load",
    "load_view",
    "prepare",
    "sha256_file",
    "with_outputs",
    "with_range_outputs",
]
