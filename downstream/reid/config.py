"""Re-ID run configurations: flat YAML mappings of ``run_reid`` keyword arguments.

Format (``downstream/configs/reid/*.yaml``): one mapping whose keys are keyword arguments of
``downstream.reid.run.run_reid`` other than ``backbone``, ``work_dir``, ``data_root``,
``inputs`` and ``on_epoch`` (which are per run), e.g.::

    dataset: market1501          # market1501 | dukemtmcreid
    loss: softmax                # softmax | softmax_triplet
    height: 256
    width: 128
    max_epoch: 60
    backbone_kwargs: {stem: imagenet}

An unknown key is an error that names it. ``load_reid_config(path, **overrides)`` returns the
mapping with ``overrides`` applied (``backbone_kwargs`` is merged key by key, the override
winning), ready for ``run_reid(backbone, work_dir=..., data_root=..., **cfg)``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "reid"
PER_RUN = ("backbone", "work_dir", "data_root", "inputs", "on_epoch")


class ReIDConfigError(ValueError):
    """A re-ID config file that cannot be used."""


#: the keyword arguments of ``run_reid`` a config may set (all but PER_RUN; a test keeps the
#: two lists equal, so the config never has to import the runner)
CONFIG_KEYS = ("dataset", "dataset_label", "loss", "backbone_kwargs", "init_checkpoint",
               "max_epoch", "height", "width", "batch_size", "lr", "seed", "optimizer",
               "weight_decay", "lr_scheduler", "stepsize", "gamma", "num_instances", "margin",
               "weight_t", "weight_x", "label_smooth", "fc_dims", "dropout_p", "transforms",
               "fixbase_epoch", "open_layers", "batch_size_test", "workers", "dist_metric",
               "normalize_feature", "print_freq", "device", "tensorboard", "resume", "log")


def config_keys() -> list[str]:
    return list(CONFIG_KEYS)


def merge_reid_kwargs(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if key == "backbone_kwargs" and isinstance(value, Mapping):
            out[key] = {**dict(out.get(key) or {}), **dict(value)}
        else:
            out[key] = value
    return out


def load_reid_config(path: str | os.PathLike[str], **overrides: Any) -> dict[str, Any]:
    """Read a config (a path, or a bare name like ``'market1501_softmax'`` in CONFIG_DIR)."""
    p = Path(path)
    if not p.exists() and p.suffix == "" and (CONFIG_DIR / f"{p.name}.yaml").exists():
        p = CONFIG_DIR / f"{p.name}.yaml"
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        avail = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
        raise ReIDConfigError(f"{p}: cannot read re-ID config ({exc.strerror}); shipped "
                              f"configs: {avail}") from None
    except yaml.YAMLError as exc:
        raise ReIDConfigError(f"{p}: not valid YAML ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ReIDConfigError(f"{p}: expected a mapping of run_reid arguments, "
                              f"got {type(data).__name__}")
    allowed = config_keys()
    for source, mapping in ((str(p), data), ("overrides", overrides)):
        unknown = sorted(set(mapping) - set(allowed))
        if unknown:
            raise ReIDConfigError(f"{source}: unknown key(s) {unknown}; expected keys among "
                                  f"{allowed}")
    if data.get("backbone_kwargs") is not None and not isinstance(data["backbone_kwargs"],
                                                                  Mapping):
        raise ReIDConfigError(f"{p}: key 'backbone_kwargs' must be a mapping")
    return merge_reid_kwargs(data, overrides)
