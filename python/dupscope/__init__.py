"""dupscope: find near-duplicate images in very large datasets and look at them.

The compiled core (``dupscope._core``) computes similarity tiles and top-k neighbours; this
package wraps it with a small Python API and the two phases of the tool.
"""

from __future__ import annotations

from ._version import __version__
from .engine import build_info, similarity_matrix, topk
from .store import SimilarityFile, SimilarityWriter, write_similarity

__all__ = [
    "__version__",
    "build_info",
    "similarity_matrix",
    "topk",
    "write_similarity",
    "SimilarityFile",
    "SimilarityWriter",
]
