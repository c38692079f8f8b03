"""Person re-ID transfer: harness backbones as torchreid models (see run.run_reid)."""
from downstream.reid.config import load_reid_config
from downstream.reid.data import ReIDDataError, check_reid_data_root
from downstream.reid.model import (
    HarnessReIDModel,
    build_reid_model,
    register_harness_model,
    register_harness_models,
)
from downstream.reid.run import run_reid
from downstream.reid.smoke_data import generate_market_smoke

__all__ = ["HarnessReIDModel", "ReIDDataError", "build_reid_model", "check_reid_data_root",
           "generate_market_smoke", "load_reid_config", "register_harness_model",
           "register_harness_models", "run_reid"]
