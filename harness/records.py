"""metrics.json: one pydantic model per stage, the only schema of what the stages write and
what the report reads.

The stages (and the downstream runners) build a record and write it with ``write_record``;
``harness report`` reads every file with ``read_record``. Nothing else knows the keys. A file
may carry keys a record does not declare (kept, for files from other versions), but a writer
may not: ``write_record`` refuses a record with undeclared fields, so a misspelt key fails
where it is written, not in the report.

Rules every record follows: numbers are JSON ints or floats, finite, never true/false; counts
and costs are >= 0; percentages (top-1, mAP, Rank-k) lie in [0, 100]; the cost unit matches the
device kind (CPU-hours on CPU, GPU-days on GPU). This module imports no torch (the report
runs without it).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter,
                      ValidationError, field_validator, model_serializer, model_validator)

from backbones.atomic import atomic_write_text
from backbones.settings import Count, NonNegativeFloat, NonNegativeInt, describe_error

COST_UNITS = {"cpu": "CPU-hours", "gpu": "GPU-days"}
DISTANCE_ALIASES = {"fnorm": "fnorm", "f-norm": "fnorm", "f_norm": "fnorm", "frobenius": "fnorm",
                    "fro": "fnorm", "l2": "fnorm", "l1": "l1", "cosine": "cosine", "cos": "cosine"}

Name = Annotated[str, StringConstraints(pattern=r"\S")]       # a non-blank string
Amount = NonNegativeFloat                                       # seconds, costs, sizes, OPs
Percent = Annotated[float, Field(ge=0, le=100)]
CostUnit = Literal["CPU-hours", "GPU-days"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)


class AblationTag(_Record):
    """Which ablation a run belongs to: the params.yaml ablation's name, table and label, and
    the settings it changed (any method setting: extra keys)."""
    table: Name
    name: str | None = None
    label: str | None = None
    tangent: bool | None = None
    recon: bool | None = None
    distance: str | None = None
    second_order: str | None = None

    @field_validator("distance")
    @classmethod
    def _known_distance(cls, value: str | None) -> str | None:
        if value is not None and value.lower() not in DISTANCE_ALIASES:
            raise ValueError(f"unknown distance {value!r} (expected fnorm, l1 or cosine)")
        return value

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: Any) -> dict[str, Any]:
        """Only the keys the ablation has (its key in the report is made of them)."""
        return {k: v for k, v in handler(self).items() if v is not None}

    @model_validator(mode="after")
    def _table_keys(self) -> AblationTag:
        needed = {"4.2": ("tangent", "recon"), "4.4": ("distance",)}.get(self.table, ())
        missing = [k for k in needed if getattr(self, k) is None]
        if missing:
            raise ValueError(f"missing required key(s) {', '.join(missing)} for table "
                             f"{self.table}")
        return self


class Provenance(_Record):
    """What made the result (``harness.provenance``): the code (commit, dirty flag and a digest
    of the stage's source files), the versions of the stack, the parts of the fingerprint that
    a resume compares, the data's digest (files and the sample of a subset), when it started
    and how long this invocation ran."""
    commit: str | None
    dirty: bool | None
    code_digest: Name
    code_paths: list[str]
    versions: dict[str, str | None]
    fingerprint: dict[str, str]
    data: dict[str, Any] | None = None
    started: Name
    seconds: Amount
    command: list[str] = Field(default_factory=list)


class RecordBase(_Record):
    """What every stage records: which run it was, where it ran and what made it
    (``provenance``: required of every writer; a file of an older version without it is still
    read, its commit shown as unknown)."""
    method: Name
    seed: int
    profile: Name
    dataset: Name
    device: Name
    device_kind: Literal["cpu", "gpu"]
    ablation: AblationTag | None = None
    run: str | None = None
    world_size: Count | None = None
    provenance: Provenance | None = None

    @model_validator(mode="after")
    def _cost_unit_matches_device(self) -> RecordBase:
        """search_cost_unit / train_cost_unit (the stages that record a cost) vs device_kind."""
        key = f"{getattr(self, 'stage', '')}_cost_unit"
        unit = getattr(self, key, None)
        if unit is not None and unit != COST_UNITS[self.device_kind]:
            raise ValueError(f"{key} {unit!r} does not match device_kind {self.device_kind!r} "
                             f"(expected {COST_UNITS[self.device_kind]!r})")
        return self


class SearchRecord(RecordBase):
    stage: Literal["search"] = "search"
    search_seconds: Amount
    search_cost_value: Amount
    search_cost_unit: CostUnit
    peak_memory_mb: Amount
    epochs: NonNegativeInt
    genotype: Name
    supernet_top1: Percent | None = None
    peak_memory_kind: str | None = None
    alphas: dict[str, Any] = Field(default_factory=dict)
    resumed_from_epoch: int | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    compiled_modules: NonNegativeInt = 0
    #: the found cell: {normal,reduce}_{param_free,skip} edge counts, params_m / ops_m of its
    #: 1-bit network at the profile's retraining size (``harness.stages.search.cell_summary``)
    cell: dict[str, Any] | None = None
    #: search steps run and their mean wall time (the step only: no data loading, evaluation
    #: or checkpointing), the batch per process and the input side they ran at
    steps: NonNegativeInt | None = None
    seconds_per_step: Amount | None = None
    batch_size: NonNegativeInt | None = None
    image_size: NonNegativeInt | None = None
    #: the class-balanced search sample (ImageNet): fractions, seed, images per part, the
    #: digest of its file lists and the file that holds them (``sample.json`` in the run folder)
    sample: dict[str, Any] | None = None
    final: dict[str, Any] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)


class TrainRecord(RecordBase):
    stage: Literal["train"] = "train"
    top1: Percent
    top5: Percent
    params_m: Amount
    flops_m: Amount
    bops_m: Amount
    ops_m: Amount
    memory_mbit: Amount
    train_seconds: Amount
    train_cost_value: Amount
    train_cost_unit: CostUnit
    epochs: NonNegativeInt
    #: DCP-NAS-S / DCP-NAS-L: which paper model a run stands for (used by the claims)
    size: Literal["S", "L"] | None = None
    best_top1: Percent | None = None
    best_top5: Percent | None = None
    best_epoch: NonNegativeInt | None = None
    binarizer: str | None = None
    kd_teacher: str | None = None
    cp_loss: dict[str, Any] | None = None   # CP-NAS's training-stage loss as applied
    two_step: bool | None = None
    resumed_from_epoch: dict[str, int | None] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)
    genotype: str | None = None


class DetectRecord(RecordBase):
    stage: Literal["detect"] = "detect"
    detector: Literal["faster_rcnn", "retinanet", "ssd"]
    bbox_mAP: Percent
    bbox_mAP_50: Percent
    metric: str | None = None
    train_seconds: Amount | None = None
    wall_seconds: Amount | None = None
    epochs: NonNegativeInt | None = None
    backbone: str | None = None
    backbone_kwargs: dict[str, Any] = Field(default_factory=dict)
    init_checkpoint: str | None = None
    config: str | None = None
    out_channels: list[int] = Field(default_factory=list)
    strides: list[int] = Field(default_factory=list)
    level_strides: list[int] = Field(default_factory=list)
    raw_metrics: dict[str, Any] = Field(default_factory=dict)


class ReidRecord(RecordBase):
    stage: Literal["reid"] = "reid"
    loss: Literal["softmax", "softmax_triplet"]
    mAP: Percent
    rank1: Percent
    rank5: Percent
    rank10: Percent
    train_seconds: Amount | None = None
    backbone: str | None = None
    max_epoch: NonNegativeInt | None = None
    num_params: NonNegativeInt | None = None
    num_train_ids: NonNegativeInt | None = None
    num_query: NonNegativeInt | None = None
    num_gallery: NonNegativeInt | None = None
    init_checkpoint: str | None = None


class DeployRecord(RecordBase):
    stage: Literal["deploy"] = "deploy"
    run: Name
    backbone: Name
    paper_size: bool
    trained: bool
    binary_convs: NonNegativeInt
    binary_capable_convs: NonNegativeInt
    ops_m: Amount
    fp_ops_m: Amount
    #: binary IR vs FP32 IR; None for a real-valued network (no binary IR: real_valued)
    predicted_speedup: Amount | None
    measured_speedup_1t: Amount | None
    measured_speedup_all: Amount | None
    agreement: dict[str, Any]
    engines: dict[str, Any]
    cpu_model: Name
    threads_all: Count
    checkpoint: str | None = None
    input_shape: list[int] = Field(default_factory=list)
    openvino_version: str | None = None
    kept_fp32: dict[str, str] = Field(default_factory=dict)   # layer -> why not binary
    runtime_binary_kernels: dict[str, int] = Field(default_factory=dict)  # kernel -> layers
    params_m: Amount | None = None
    flops_m: Amount | None = None
    bops_m: Amount | None = None
    #: no 1-bit conv: deployed as FP32 IR and PyTorch only (the full-precision point)
    real_valued: bool = False


RECORDS: dict[str, type[RecordBase]] = {
    "search": SearchRecord, "train": TrainRecord, "detect": DetectRecord, "reid": ReidRecord,
    "deploy": DeployRecord}
STAGES = tuple(RECORDS)
Record = Annotated[Union[tuple(RECORDS.values())], Field(discriminator="stage")]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Record)


class RecordError(ValueError):
    """A metrics file that is not a valid record: one line per problem, each naming the file
    and the key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _problem(err: Any, where: str) -> str:
    loc = [str(p) for p in err["loc"]]
    stage = loc.pop(0) if loc and loc[0] in STAGES else None    # the union's tag
    key = ".".join(loc)
    kind = err["type"]
    if kind == "json_invalid":
        return f"{where}: not valid JSON ({err['msg']})"
    if kind == "union_tag_invalid":
        return (f"{where}: key 'stage': unknown stage {err['ctx']['tag']!r} (expected one of "
                f"{', '.join(STAGES)})")
    if kind == "union_tag_not_found":
        return f"{where}: missing required key 'stage'"
    if kind == "missing":
        return (f"{where}: missing required key '{key}' for stage '{stage}' (a file from an "
                f"older version: rerun its stage, e.g. `dvc repro`, to regenerate it)")
    if kind in ("model_attributes_type", "dict_type", "model_type") and not loc:
        return f"{where}: expected a JSON object at top level"
    if kind == "value_error":
        msg = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        return f"{where}: key '{key}': {msg}" if key else f"{where}: {msg}"
    if kind == "less_than_equal" and err.get("ctx", {}).get("le") == 100:
        return f"{where}: key '{key}': {err['input']!r} is not a percentage in [0, 100]"
    if kind == "greater_than_equal" and err.get("ctx", {}).get("ge") == 0:
        return f"{where}: key '{key}': {err['input']!r} must not be negative"
    if kind == "string_pattern_mismatch":
        return f"{where}: key '{key}': expected a non-empty string"
    return f"{where}: key '{key}': {describe_error(err)}"


def parse_record(text: str | bytes, where: str) -> RecordBase:
    """The record in a metrics file's text; RecordError naming ``where`` and each bad key."""
    try:
        return _ADAPTER.validate_json(text)
    except ValidationError as exc:
        raise RecordError([_problem(e, where) for e in exc.errors()]) from None


def read_record(path: str | Path) -> RecordBase:
    """Read and validate one metrics.json."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise RecordError([f"{path}: cannot be read ({exc})"]) from None
    return parse_record(text, str(path))


def write_record(path: str | Path, record: RecordBase) -> None:
    """Write ``record`` atomically as JSON (sorted keys). A record built with a key its model
    does not declare is refused (the writer and the reader share one schema), and so is one
    without its provenance."""
    if record.model_extra:
        raise TypeError(f"{type(record).__name__} has no field(s) "
                        f"{', '.join(sorted(record.model_extra))}: declare them in "
                        f"harness/records.py")
    if record.provenance is None:
        raise TypeError(f"{type(record).__name__} for {path} has no provenance: every record "
                        f"says what made it (harness.provenance.provenance)")
    data = json.loads(record.model_dump_json())
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
