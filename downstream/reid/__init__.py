"""Person re-ID transfer: harness backbones as torchreid models (see run.run_reid).

Names are imported lazily so that ``python -m downstream.reid.smoke_data`` does not
import its own module twice.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_reid_config": "downstream.reid.config",
    "ReIDDataError": "downstream.reid.data",
    "check_reid_data_root": "downstream.reid.data",
    "HarnessReIDModel": "downstream.reid.model",
    "build_reid_model": "downstream.reid.model",
    "register_harness_model": "downstream.reid.model",
    "register_harness_models": "downstream.reid.model",
    "run_reid": "downstream.reid.run",
    "generate_market_smoke": "downstream.reid.smoke_data",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
