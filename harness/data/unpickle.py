"""Safe unpickling: CIFAR's python batches are pickles, and pickle can call any importable
function, so they are read by an unpickler that allows numpy arrays, lists, numbers and
strings only.
"""
from __future__ import annotations

import _compat_pickle
import pickle
from typing import Any

import numpy as np

# Pickle can call any importable function, so a downloaded "data set" could run code. CIFAR
# pickles need only numpy array reconstruction (py2 files name numpy.core, numpy>=2 writes
# numpy._core), _codecs.encode (how protocol 2 stores bytes from Python 3) and plain builtins.
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}

_SAFE_BUILTINS = {
    "list", "dict", "tuple", "set", "frozenset", "bytes", "bytearray",
    "str", "int", "float", "complex", "bool",
}


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle naming a global outside the allowed set (the message is its name)."""


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array/dtype reconstruction and harmless builtins."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 module names (e.g. __builtin__), mapped as pickle's fix_imports does.
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _NUMPY_GLOBALS:
            import numpy._core.multiarray as multiarray  # avoid numpy.core deprecation warnings

            return {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar,
                    "ndarray": np.ndarray, "dtype": np.dtype}[name]
        if module == "_codecs" and name == "encode":
            import _codecs

            return _codecs.encode
        if module == "builtins" and name in _SAFE_BUILTINS:
            import builtins

            return getattr(builtins, name)
        raise ForbiddenGlobal(f"{module}.{name}")


def restricted_load(fh: Any) -> Any:
    """Unpickle an open binary file with the restricted unpickler (bytes keys kept as bytes);
    a forbidden global raises ``ForbiddenGlobal`` naming it."""
    return _RestrictedUnpickler(fh, encoding="bytes").load()
