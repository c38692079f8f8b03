"""params.yaml: one file, several profiles, parsed into strict pydantic models.

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

Every key is checked before any work starts: each setting declares its type and range once,
in the models below (or in its search method's ``Config``); every problem is reported on one
line naming the file, the dotted key and what was expected, and an unknown key also names the
closest valid one (pydantic does not).
"""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, PrivateAttr, StringConstraints, model_validator

from backbones.binary import Binarizer
from backbones.search.base import CommonSearchConfig
from backbones.losses import CPKernel
from backbones.settings import (Count, Fraction, NonNegativeFloat, NonNegativeInt,
                                PositiveFloat, Settings)
from harness.config_errors import ConfigError, unknown_key_error, validate


# ---- sections -----------------------------------------------------------------------------

class DataSection(Settings):
    name: Literal["cifar10", "imagenet"] = "cifar10"
    root: str = "data/smoke/cifar10"
    num_workers: NonNegativeInt = 0
    image_size: Count = 32             # imagenet only
    cutout: NonNegativeInt = 0
    lighting: NonNegativeFloat = 0.0   # imagenet only: AlexNet PCA lighting noise std (official 0.1)
    train_subset: Count | None = None  # first N training images only (quick runs)
    test_subset: Count | None = None


class SmokeDataSection(Settings):
    """What `harness prepare` generates (the smoke profile's own data, in the real formats)."""
    cifar_train: Count = 2000
    cifar_test: Count = 500
    coco_train: Count = 48
    coco_val: Count = 16
    coco_size: Count = 96
    market_ids: Count = 12
    market_cams: Count = 3
    #: the ImageNet-layout folder (train/<wnid>/*.JPEG, val/...) of profile smoke-imagenet
    imagenet_classes: Count = 5
    imagenet_train_per_class: Count = 40
    imagenet_val_per_class: Count = 8
    imagenet_size: Count = 48


SampleFraction = Annotated[float, Field(gt=0, le=1)]


class SampleSection(Settings):
    """profiles.<name>.search.sample: search on a class-balanced sample of an ImageNet-style
    training folder (PC-DARTS: 10 % of every class for the weights, 2.5 % for the
    architecture), drawn with its own seed (the same sample for every search seed)."""
    weights: SampleFraction = 0.1
    arch: SampleFraction = 0.025
    seed: NonNegativeInt = 0

    @model_validator(mode="after")
    def _fits(self) -> "SampleSection":
        if self.weights + self.arch > 1:
            raise ValueError(f"weights {self.weights:g} + arch {self.arch:g} > 1: a sample "
                             "larger than the folder; expected fractions adding up to at most 1")
        return self


class SearchSection(CommonSearchConfig):
    """profiles.<name>.search: the shared supernet settings (only the keys a profile sets
    override a method's own defaults: ``model_fields_set``), the data split, and per-method
    blocks validated against each method's Config."""
    batch_size: Count = 64
    #: the batch w_lr is given for: w_lr (and w_lr_min) scale by batch_size x processes /
    #: lr_scale_batch (linear scaling; PC-DARTS ImageNet: 0.5 at 1024). None: no scaling
    lr_scale_batch: Count | None = None
    train_portion: Annotated[float, Field(gt=0, lt=1)] = 0.5
    #: a class-balanced sample instead of the train_portion split (ImageNet search)
    sample: SampleSection | None = None
    max_steps_per_epoch: Count | None = None
    #: also curve every N-th step's scalars (dvclive-steps/; 0: per epoch only), for long epochs
    log_every: NonNegativeInt = 0
    per_method: dict[str, dict[str, Any]] = Field(default_factory=dict)
    binarizer: Binarizer = "official"  # weight binarizer of the 1-bit supernet
    compile: bool = False              # torch.compile the supernets edge by edge (accel.py)


class CPLossSection(Settings):
    """CP-NAS's kernel-level Child-Parent loss in retraining (Eq. 4.18): a real-valued Parent of
    the same genotype trains beside the 1-bit network on cross-entropy; the 1-bit network adds
    weight / 2 * sum of per-filter MSE(Parent kernel, its kernel) (+ compact_weight * the
    intra-class compactness of its features). weight 0 = off; unset (the default) = the
    published recipe of the searched method: a CP-NAS cell retrains with the CP loss of its
    search (CP-NAS's training stage: its cp_weight and cp_kernel), every other network without."""
    weight: NonNegativeFloat | None = None
    kernel: CPKernel | None = None     # binarized (its 1-bit kernel) | latent (its real weights)
    compact_weight: NonNegativeFloat = 0.0


class KDSection(Settings):
    #: none | real_nas (a real-valued network of the same genotype) | torchvision:<name>
    teacher: Annotated[str, StringConstraints(
        pattern=r"^(none|real_nas|torchvision:[A-Za-z_][A-Za-z0-9_]*)$")] = "none"
    teacher_checkpoint: str | None = None  # trained here for teacher_epochs when absent
    teacher_epochs: Count = 1
    temperature: PositiveFloat = 1.0
    weight: Fraction = 1.0             # loss = (1 - weight) CE + weight KL


class TrainSection(Settings):
    C: Count = 36
    layers: Count = 20
    stem: Literal["cifar", "imagenet"] = "cifar"
    epochs: Count = 600
    batch_size: Count = 96
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: PositiveFloat = 1e-3           # scaled by batch_size * world_size / lr_scale_batch
    lr_scale_batch: Count = 512
    weight_decay: NonNegativeFloat = 1e-5
    momentum: Fraction = 0.9
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    grad_clip: NonNegativeFloat = 0.0  # 0: none (official recipe)
    lr_min: NonNegativeFloat = 0.0     # cosine schedule floor (official: 1e-5)
    binarizer: Binarizer = "official"  # weight binarizer: official (MConv) | mean_abs
    two_step: bool = False             # step 1: binary activations only; step 2: fully binary
    step2_weight_decay: NonNegativeFloat = 0.0
    max_steps_per_epoch: Count | None = None
    #: also curve every N-th step's scalars (dvclive-steps/; 0: per epoch only), for long epochs
    log_every: NonNegativeInt = 0
    size: Literal["S", "L"] | None = None  # which DCP-NAS model size a run stands for
    #: keyword arguments per reference backbone, e.g. {bireal_resnet18: {width: 16}}
    reference_kwargs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    compile: bool = False              # torch.compile the network (harness/accel.py)
    #: CUDA only: bf16 autocast of forward passes (accel.py). Off: the official retraining runs
    #: in fp32; turn it on for speed (a named departure, recorded with the run's settings)
    amp: bool = False
    channels_last: bool = True         # CUDA only
    kd: KDSection = Field(default_factory=KDSection)
    cp_loss: CPLossSection = Field(default_factory=CPLossSection)


class DetectSection(Settings):
    """profiles.<name>.detect: `harness transfer --task detection --detector NAME` (an mmdet
    config by path per detector name; the pipeline runs the top-level ``detectors``)."""
    configs: dict[str, str] = Field(default_factory=lambda: {
        "faster_rcnn": "downstream/configs/detection/faster-rcnn_harness_fpn_smoke.py",
        "retinanet": "downstream/configs/detection/retinanet_harness_fpn_smoke.py",
        "ssd": "downstream/configs/detection/ssd_harness_smoke.py"})
    data_root: str = "data/smoke/coco"
    max_epochs: Count | None = None
    backbone_kwargs: dict[str, Any] = Field(default_factory=lambda: {"stem": "imagenet"})
    cfg_options: dict[str, Any] = Field(default_factory=dict)
    launcher: Literal["none", "pytorch"] = "none"   # pytorch: under torchrun (mmengine's)


class ReidSection(Settings):
    """profiles.<name>.reid (``overrides`` are run_reid keyword arguments, checked there)."""
    config: str = "downstream/configs/reid/smoke.yaml"
    data_root: str = "data/smoke/reid"
    overrides: dict[str, Any] = Field(default_factory=dict)


class PaperSizeSection(Settings):
    """The network size `harness deploy --paper-size` builds (DCP-NAS-L: docs/network.md)."""
    C: Count = 108
    layers: Count = 10
    stem: Literal["cifar", "imagenet"] = "imagenet"
    image_size: Count = 224
    num_classes: Count = 1000


class DeploySection(Settings):
    """profiles.<name>.deploy: `harness deploy` (OpenVINO binary IR vs FP32 IR vs PyTorch)."""
    runs: Count = 50                   # timed batch-1 inferences per engine and thread count
    warmup: NonNegativeInt = 10
    throughput_batch: Count = 32       # batch of the throughput measurement and agreement check
    test_images: Count | None = None   # agreement check on the first N test images (None: all)
    paper_size: PaperSizeSection = Field(default_factory=PaperSizeSection)


class Profile(Settings):
    data: DataSection = Field(default_factory=DataSection)
    smoke_data: SmokeDataSection = Field(default_factory=SmokeDataSection)
    search: SearchSection = Field(default_factory=SearchSection)
    train: TrainSection = Field(default_factory=TrainSection)
    detect: DetectSection = Field(default_factory=DetectSection)
    reid: ReidSection = Field(default_factory=ReidSection)
    deploy: DeploySection = Field(default_factory=DeploySection)


class Ablation(Settings):
    method: str = "dcpnas"
    table: str = ""
    label: str = ""
    set: dict[str, Any] = Field(default_factory=dict)  # checked against the method's Config


class Paths(Settings):
    data: str = "data"
    runs: str = "runs"
    results: str = "results"


class Params(Settings):
    profile: str = "smoke"
    seeds: Annotated[list[NonNegativeInt], Field(min_length=1)] = Field(
        default_factory=lambda: [0])
    search_runs: list[str] = Field(default_factory=list)
    #: the profile of the ImageNet-search stages (search_imagenet, train_imagenet): a profile
    #: whose data is an ImageNet-style folder; its runs go to <paths.runs>/<imagenet_profile>
    imagenet_profile: str | None = None
    #: search methods and ablations the ImageNet-search stages run (Table 4.3)
    imagenet_search_runs: list[str] = Field(default_factory=list)
    ablations: dict[str, Ablation] = Field(default_factory=dict)
    reference_backbones: list[str] = Field(default_factory=list)
    backbones: list[str] = Field(default_factory=list)
    #: what the deploy stage puts on bit-packed kernels (1-bit networks of ``backbones``)
    deploy_backbones: list[str] = Field(default_factory=list)
    #: detectors the pipeline's detect stage runs (names of the profile's detect.configs)
    detectors: list[str] = Field(default_factory=lambda: ["faster_rcnn"])
    deploy_paper_size: list[str] = Field(default_factory=list)
    paths: Paths = Field(default_factory=Paths)
    profiles: Annotated[dict[str, Profile], Field(min_length=1)]
    _source: str = PrivateAttr(default="params.yaml")

    @property
    def source(self) -> str:
        """The file these parameters were read from (for error messages)."""
        return self._source

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
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    where = str(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    params = validate(Params, raw, where)
    params._source = where
    if profile is not None:
        params.profile = profile
    if params.profile not in params.profiles:
        raise unknown_key_error(params.profile, list(params.profiles), f"{where}: profile")
    _check_names(params, where)
    _check_methods(params, where)
    _check_imagenet_profile(params, where)
    _check_detectors(params, where)
    return params


def _check_imagenet_profile(params: Params, where: str) -> None:
    name = params.imagenet_profile
    if name is None:
        return
    if name not in params.profiles:
        raise unknown_key_error(name, list(params.profiles), f"{where}: imagenet_profile")
    data = params.profiles[name].data
    if data.name != "imagenet":
        raise ConfigError(f"{where}: imagenet_profile: profile {name!r} has data.name "
                          f"{data.name!r}; expected a profile whose data.name is imagenet")


def _check_detectors(params: Params, where: str) -> None:
    """Every name in ``detectors`` has a config in the active profile's detect.configs."""
    configs = params.active.detect.configs
    missing = [d for d in params.detectors if d not in configs]
    if missing:
        raise ConfigError(f"{where}: detectors: {missing} not in profiles.{params.profile}."
                          f"detect.configs (which has {sorted(configs)})")


def _check_names(params: Params, where: str) -> None:
    """Names that become folder names (profiles, ablations, runs, backbones) are plain names."""
    from backbones.registry import prefixed_factory
    from harness.runs import RunNameError, check_name
    problems: list[str] = []
    named = [("profiles", list(params.profiles)), ("ablations", list(params.ablations)),
             ("search_runs", params.search_runs),
             ("imagenet_search_runs", params.imagenet_search_runs),
             ("reference_backbones", params.reference_backbones),
             ("detectors", params.detectors),
             ("backbones", params.backbones),
             ("deploy_paper_size", params.deploy_paper_size),
             ("deploy_backbones", params.deploy_backbones)]
    for key, names in named:
        for name in names:
            if ":" in name:     # dvc.yaml makes run-folder paths of these entries
                dashed = name.replace(":", "-", 1)
                problems.append(
                    f"{where}: {key}: {name!r}: dvc.yaml names run folders after these entries; "
                    + (f"write {dashed!r} (the same model, its folder's spelling)"
                       if prefixed_factory(dashed) is not None else
                       f"a 'package.module:function' backbone runs from the command line "
                       f"(`harness transfer --backbone {name}`), not in the pipeline"))
                continue
            try:
                check_name(name, "name")
            except RunNameError as exc:
                problems.append(f"{where}: {key}: {exc}")
    if problems:
        raise ConfigError("\n".join(problems), problems)


def _check_methods(params: Params, where: str) -> None:
    """Search runs and ablations name known methods; every per-method block and ablation's
    settings are valid for its method's Config (all problems at once)."""
    from backbones.search.base import get_search_method, list_search_methods
    known = list_search_methods()
    problems: list[str] = []

    def collect(check: typing.Callable[[], Any]) -> None:
        try:
            check()
        except ConfigError as exc:
            problems.extend(exc.problems)

    for key in ("search_runs", "imagenet_search_runs"):
        for m in getattr(params, key):
            if m not in known and m not in params.ablations:
                problems.append(str(unknown_key_error(m, known + list(params.ablations),
                                                      f"{where}: {key}")))
    for name, abl in params.ablations.items():
        if abl.method not in known:
            problems.append(str(unknown_key_error(abl.method, known,
                                                  f"{where}: ablations.{name}.method")))
            continue
        collect(lambda: method_config(get_search_method(abl.method), params.active.search,
                                      abl.set, where, search_at=f"profiles.{params.profile}"
                                      ".search", extra_at=f"ablations.{name}.set"))
    for pname, prof in params.profiles.items():
        for m in prof.search.per_method:
            if m not in known:
                problems.append(str(unknown_key_error(
                    m, known, f"{where}: profiles.{pname}.search.per_method")))
        for m in known:   # the shared keys and the method's own block, for every method
            collect(lambda: method_config(get_search_method(m), prof.search, {}, where,
                                          search_at=f"profiles.{pname}.search"))
    if problems:
        raise ConfigError("\n".join(problems), problems)


def method_config(method_cls: type, search: SearchSection, extra: dict[str, Any],
                  source: str, *, search_at: str = "search", extra_at: str = "set") -> Any:
    """The method's Config: its own defaults, overridden by the shared search keys the profile
    sets explicitly, then by its per_method block, then by ``extra`` (an ablation's settings).
    Errors name ``search_at`` / ``extra_at`` as where the keys were set. (Shared keys left
    unset do not override, so e.g. PC-DARTS keeps K=4 and its own lrs.)"""
    cfg_cls = method_cls.Config
    common = {k: getattr(search, k) for k in CommonSearchConfig.model_fields
              if k in cfg_cls.model_fields and k in search.model_fields_set}
    specific = dict(search.per_method.get(method_cls.name, {}))
    cfg = validate(cfg_cls, {**common, **specific}, source,
                   f"{search_at}.per_method.{method_cls.name}")
    if extra:
        cfg = validate(cfg_cls, {**cfg.model_dump(), **extra}, source, extra_at)
    return cfg
