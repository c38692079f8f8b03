"""The one error a data-set problem on disk raises: it names the file or folder and the
expected layout.
"""
from __future__ import annotations


class DatasetError(ValueError):
    """A data set is missing or malformed; the message names the path and the expected layout."""
