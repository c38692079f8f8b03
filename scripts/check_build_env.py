"""Check a venv's build environment for mmcv's sdist before anything compiles.

Run with the venv's python (scripts/install.sh does, before and after the build dependencies go
in). Prints one line naming what is wrong and exits 1, or prints nothing and exits 0. Kept apart
from install.sh so that tests/test_install.py can run it against a deliberately broken venv.
"""
from __future__ import annotations

import shutil
import sys
import warnings


def problem() -> str | None:
    """The first thing wrong with this interpreter's build environment, or None."""
    try:
        import setuptools
    except ImportError as e:
        return f"setuptools is not importable in {sys.prefix} ({e}); mmcv's build needs it"
    try:
        with warnings.catch_warnings():   # "pkg_resources is deprecated": expected here
            warnings.simplefilter("ignore")
            import pkg_resources  # noqa: F401  (mmcv 2.1.0's setup.py imports it)
    except ImportError:
        return (f"setuptools {setuptools.__version__} in {sys.prefix} has no pkg_resources, which "
                "mmcv 2.1.0's setup.py imports: scripts/constraints.txt must cap setuptools (<80) "
                "for every pip call (PIP_CONSTRAINT)")
    try:
        import torch  # noqa: F401
    except Exception as e:  # noqa: BLE001  (a broken torch raises more than ImportError)
        return (f"torch is not importable in {sys.prefix} ({type(e).__name__}: {e}); mmcv would "
                "silently build without its ops")
    try:
        import wheel  # noqa: F401
    except ImportError:
        return f"the 'wheel' package is missing in {sys.prefix}; pip cannot build mmcv's wheel"
    if shutil.which("ninja") is None and shutil.which("ninja", path=f"{sys.prefix}/bin") is None:
        return f"ninja is not installed in {sys.prefix}; torch's extension builder needs it"
    return None


if __name__ == "__main__":
    msg = problem()
    if msg:
        print(f"[install] error: {msg}", file=sys.stderr)
        sys.exit(1)
