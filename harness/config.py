"""params.yaml: one file, several profiles, validated against typed dataclasses.

Layout::

    profile: smoke             # which block of `profiles` is active
    seeds: [0]
    search_runs: [...]         # search methods, and ablation names, the pipeline runs
    ablations: {name: {method: dcpnas, table: "4.2", set: {tangent: false}}}
    reference_backbones: [...] # hand-designed 1-bit backbones trained for comparison
    backbones: [...]           # what detection / re-ID transfer (run or backbone names)
    paths: {data: data, runs: runs, results: results}
    profiles:
      smoke: {data: {...}, search: {...}, train: {...}, detect: {...}, reid: {...}}
      paper: {...}

Every key is checked: an unknown or mistyped key stops with its full path and the closest
valid key, before any work starts.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from backbones.search.base import CommonSearchConfig

T = TypeVar("T")


class ConfigError(ValueError):
    """A params.yaml key that is unknown, mistyped or missing."""


def _type_ok(value: Any, typ: Any) -> bool:
    origin = typing.get_origin(typ)
    if typ is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, t) for t in typing.get_args(typ))
    if typ is type(None):
        return value is None
    if typ is bool:
        return isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (list, tuple):
        args = typing.get_args(typ)
        return isinstance(value, (list, tuple)) and (
            not args or all(_type_ok(v, args[0]) for v in value))
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(typ, type):
        return isinstance(value, typ)
    return True


def _type_name(typ: Any) -> str:
    return getattr(typ, "__name__", None) or str(typ).replace("typing.", "")


#: integer settings where zero or a negative value makes no sense (counts and sizes): checked
#: in every section and every search method's Config (``epochs: -1`` used to write a genotype
#: after 0 steps)
POSITIVE_INTS = frozenset({
    "C", "layers", "epochs", "batch_size", "max_steps_per_epoch", "teacher_epochs",
    "partial_channels", "samples_per_round", "max_val_batches", "ggn_samples", "image_size",
    "lr_scale_batch", "cifar_train", "cifar_test", "coco_train", "coco_val", "coco_size",
    "market_ids", "market_cams", "train_subset", "test_subset", "sweeps", "rounds",
    "parent_every", "runs", "throughput_batch", "test_images", "num_classes"})
#: integer settings that may be zero but not negative
NON_NEGATIVE_INTS = frozenset({"num_workers", "cutout", "warmup"})


def _range_problem(key: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if key in POSITIVE_INTS and value < 1:
        return f"expected an integer >= 1, got {value!r}"
    if key in NON_NEGATIVE_INTS and value < 0:
        return f"expected an integer >= 0, got {value!r}"
    return None


def unknown_key_error(key: str, valid: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(sorted(valid))}"
    return ConfigError(f"{where}: unknown key {key!r}{hint}")


def build_dataclass(cls: type[T], data: Any, where: str) -> T:
    """cls(**data) with every key and type checked; nested dataclasses are built recursively."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise unknown_key_error(str(key), names, where)
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            kwargs[key] = build_dataclass(typ, value, f"{where}.{key}")
            continue
        if not _type_ok(value, typ):
            raise ConfigError(f"{where}.{key}: expected {_type_name(typ)}, got {value!r}")
        problem = _range_problem(key, value)
        if problem:
            raise ConfigError(f"{where}.{key}: {problem}")
        kwargs[key] = float(value) if typ is float else value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # a Config's own __post_init__ checks
        raise ConfigError(f"{where}: {exc}") from None


# ---- sections -----------------------------------------------------------------------------

@dataclass
class DataSection:
    name: str = "cifar10"            # cifar10 | imagenet
    root: str = "data/smoke/cifar10"
    num_workers: int = 0
    image_size: int = 32             # imagenet only
    cutout: int = 0
    lighting: float = 0.0            # imagenet only: AlexNet PCA lighting noise std (official 0.1)
    train_subset: int | None = None  # first N training images only (quick runs)
    test_subset: int | None = None


@dataclass
class SmokeDataSection:
    """What `harness prepare` generates (the smoke profile's own data, in the real formats)."""
    cifar_train: int = 2000
    cifar_test: int = 500
    coco_train: int = 48
    coco_val: int = 16
    coco_size: int = 96
    market_ids: int = 12
    market_cams: int = 3


@dataclass
class SearchSection(CommonSearchConfig):
    batch_size: int = 64
    train_portion: float = 0.5
    max_steps_per_epoch: int | None = None
    per_method: dict[str, dict[str, Any]] = field(default_factory=dict)
    binarizer: str = "official"      # weight binarizer of the 1-bit supernet: official | mean_abs
    compile: bool = False            # torch.compile the method's compilable networks (accel.py)
    # keys set in params.yaml (filled by load_params): only those override a method's defaults
    explicit: list[str] = field(default_factory=list, repr=False)


@dataclass
class CPLossSection:
    """CP-NAS's kernel-level Child-Parent loss in retraining (Eq. 4.18): a real-valued Parent of
    the same genotype trains beside the 1-bit network on cross-entropy; the 1-bit network adds
    weight / 2 * sum of per-filter MSE(Parent kernel, its kernel) (+ compact_weight * the
    intra-class compactness of its features). weight 0 = off."""
    weight: float = 0.0
    kernel: str = "binarized"        # binarized (its 1-bit kernel) | latent (its real weights)
    compact_weight: float = 0.0


@dataclass
class KDSection:
    teacher: str = "none"            # none | real_nas | torchvision:<name> (e.g. resnet34)
    teacher_checkpoint: str | None = None  # trained here for teacher_epochs when absent
    teacher_epochs: int = 1
    temperature: float = 1.0
    weight: float = 1.0              # loss = (1 - weight) * CE + weight * KL


@dataclass
class TrainSection:
    C: int = 36
    layers: int = 20
    stem: str = "cifar"              # cifar | imagenet
    epochs: int = 600
    batch_size: int = 96
    optimizer: str = "adamw"         # adamw | sgd
    lr: float = 1e-3                 # scaled by batch_size * world_size / lr_scale_batch
    lr_scale_batch: int = 512
    weight_decay: float = 1e-5
    momentum: float = 0.9
    label_smoothing: float = 0.0
    grad_clip: float = 0.0           # 0: none (official recipe)
    lr_min: float = 0.0              # cosine schedule floor (official: 1e-5)
    binarizer: str = "official"      # weight binarizer: official (MConv) | mean_abs
    two_step: bool = False           # step 1: binary activations only; step 2: fully binary
    step2_weight_decay: float = 0.0
    max_steps_per_epoch: int | None = None
    size: str | None = None          # "S" / "L": which DCP-NAS model size a run stands for
    reference_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {width: 16}
    compile: bool = False            # torch.compile the network (harness/accel.py)
    amp: bool = True                 # CUDA only: bf16 autocast of forward passes (accel.py)
    channels_last: bool = True       # CUDA only
    kd: KDSection = field(default_factory=KDSection)
    cp_loss: CPLossSection = field(default_factory=CPLossSection)


@dataclass
class PaperSizeSection:
    """The network size `harness deploy --paper-size` builds (DCP-NAS-L: REFERENCE.md 3)."""
    C: int = 108
    layers: int = 10
    stem: str = "imagenet"
    image_size: int = 224
    num_classes: int = 1000


@dataclass
class DeploySection:
    """profiles.<name>.deploy: `harness deploy` (OpenVINO binary IR vs FP32 IR vs PyTorch)."""
    runs: int = 50                   # timed batch-1 inferences per engine and thread count
    warmup: int = 10
    throughput_batch: int = 32       # batch of the throughput measurement and agreement check
    test_images: int | None = None   # agreement check on the first N test images (None: all)
    paper_size: PaperSizeSection = field(default_factory=PaperSizeSection)


@dataclass
class Profile:
    data: DataSection = field(default_factory=DataSection)
    smoke_data: SmokeDataSection = field(default_factory=SmokeDataSection)
    search: SearchSection = field(default_factory=SearchSection)
    train: TrainSection = field(default_factory=TrainSection)
    detect: dict[str, Any] = field(default_factory=dict)  # validated by downstream.detection
    reid: dict[str, Any] = field(default_factory=dict)    # validated by downstream.reid
    deploy: DeploySection = field(default_factory=DeploySection)


@dataclass
class Ablation:
    method: str = "dcpnas"
    table: str = ""
    label: str = ""
    set: dict[str, Any] = field(default_factory=dict)


@dataclass
class Paths:
    data: str = "data"
    runs: str = "runs"
    results: str = "results"


@dataclass
class Params:
    profile: str = "smoke"
    seeds: list[int] = field(default_factory=lambda: [0])
    search_runs: list[str] = field(default_factory=list)
    ablations: dict[str, Ablation] = field(default_factory=dict)
    reference_backbones: list[str] = field(default_factory=list)
    backbones: list[str] = field(default_factory=list)
    deploy_paper_size: list[str] = field(default_factory=list)
    paths: Paths = field(default_factory=Paths)
    profiles: dict[str, Profile] = field(default_factory=dict)
    source: str = "params.yaml"

    @property
    def active(self) -> Profile:
        return self.profiles[self.profile]


def load_params(path: str | Path = "params.yaml", profile: str | None = None) -> Params:
    """Read and validate params.yaml; ``profile`` overrides its ``profile`` key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found (run from the repository root, "
                          f"or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    where = str(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    profiles_raw = raw.get("profiles", {})
    ablations_raw = raw.get("ablations", {}) or {}
    top = {k: v for k, v in raw.items() if k not in ("profiles", "ablations")}
    params = build_dataclass(Params, top, where)
    params.source = where
    bad = [s for s in params.seeds if s < 0]
    if bad or not params.seeds:
        raise ConfigError(f"{where}: seeds: expected a non-empty list of integers >= 0, got "
                          f"{params.seeds!r}")
    if not isinstance(profiles_raw, dict) or not profiles_raw:
        raise ConfigError(f"{where}: key 'profiles' must map profile names to settings")
    params.profiles = {name: build_dataclass(Profile, body, f"{where}: profiles.{name}")
                       for name, body in profiles_raw.items()}
    for name, body in profiles_raw.items():  # which shared search keys the profile sets
        search_raw = (body or {}).get("search") or {}
        params.profiles[name].search.explicit = sorted(search_raw)
    if not isinstance(ablations_raw, dict):
        raise ConfigError(f"{where}: key 'ablations' must map names to ablation settings")
    params.ablations = {name: build_dataclass(Ablation, body, f"{where}: ablations.{name}")
                        for name, body in ablations_raw.items()}
    if profile is not None:
        params.profile = profile
    if params.profile not in params.profiles:
        raise unknown_key_error(params.profile, list(params.profiles), f"{where}: profile")
    _check_methods(params, where)
    return params


def _check_methods(params: Params, where: str) -> None:
    from backbones.binary import BINARIZERS
    from backbones.search.base import get_search_method, list_search_methods
    for pname, prof in params.profiles.items():
        for section in ("search", "train"):
            value = getattr(prof, section).binarizer
            if value not in BINARIZERS:
                raise ConfigError(f"{where}: profiles.{pname}.{section}.binarizer: expected one "
                                  f"of {', '.join(BINARIZERS)}, got {value!r}")
    known = list_search_methods()
    for m in params.search_runs:
        if m not in known and m not in params.ablations:
            raise unknown_key_error(m, known + list(params.ablations), f"{where}: search_runs")
    for name, abl in params.ablations.items():
        if abl.method not in known:
            raise unknown_key_error(abl.method, known, f"{where}: ablations.{name}.method")
        method_config(get_search_method(abl.method), params.active.search, abl.set,
                      f"{where}: ablations.{name}.set")
    for pname, prof in params.profiles.items():
        for m, overrides in prof.search.per_method.items():
            if m not in known:
                raise unknown_key_error(m, known, f"{where}: profiles.{pname}.search.per_method")
            method_config(get_search_method(m), prof.search, {},
                          f"{where}: profiles.{pname}.search")


def method_config(method_cls: type, search: SearchSection, extra: dict[str, Any],
                  where: str) -> Any:
    """The method's Config: its own defaults, overridden by the shared search keys the profile
    sets explicitly, then by its per_method block, then by ``extra`` (an ablation's settings).
    (Shared keys left unset do not override, so e.g. PC-DARTS keeps K=4 and its own lrs.)"""
    cfg_cls = method_cls.Config
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    common = {f.name: getattr(search, f.name) for f in dataclasses.fields(CommonSearchConfig)
              if f.name in names and f.name in search.explicit}
    specific = dict(search.per_method.get(method_cls.name, {}))
    cfg = build_dataclass(cfg_cls, {**common, **specific},
                          f"{where}.per_method.{method_cls.name}")
    if extra:
        cfg = build_dataclass(cfg_cls, {**dataclasses.asdict(cfg), **extra}, where)
    return cfg
