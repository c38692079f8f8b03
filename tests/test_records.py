"""metrics.json records (harness/records.py): one schema for the stages that write and the
report that reads."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.records import (RECORDS, RecordError, SearchRecord, TrainRecord, read_record,
                             write_record)

PROVENANCE = {"commit": "0" * 40, "dirty": False, "code_digest": "abc", "code_paths": ["backbones"],
              "versions": {"torch": "2.0"}, "fingerprint": {"settings": "x"},
              "started": "2026-12-03T10:00:00+00:00", "seconds": 1.0}
COMMON = {"method": "dcpnas", "seed": 0, "profile": "smoke", "dataset": "cifar10",
          "device": "cpu", "device_kind": "cpu", "provenance": PROVENANCE}
TRAIN = {**COMMON, "top1": 12.5, "top5": 50.0, "params_m": 0.1, "flops_m": 1.0, "bops_m": 2.0,
         "ops_m": 1.03, "memory_mbit": 0.4, "train_seconds": 3.0, "train_cost_value": 0.001,
         "train_cost_unit": "CPU-hours", "epochs": 3}


def test_a_record_round_trips_through_its_file(tmp_path: Path) -> None:
    rec = TrainRecord(**TRAIN, ablation={"name": "dcpnas-l1", "table": "4.4", "distance": "l1",
                                         "mu": 0.2},
                      best_top1=13.0, best_epoch=2, history=[{"epoch": 0, "top1": 10.0}])
    write_record(tmp_path / "metrics.json", rec)
    back = read_record(tmp_path / "metrics.json")
    assert isinstance(back, TrainRecord) and back == rec
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["stage"] == "train"
    # the ablation keeps the keys it has (its extra setting too), and no nulls
    assert on_disk["ablation"] == {"name": "dcpnas-l1", "table": "4.4", "distance": "l1",
                                   "mu": 0.2}


def test_the_writer_refuses_a_record_without_provenance(tmp_path: Path) -> None:
    """Every record says what made it; a file of an older version without it still reads."""
    rec = TrainRecord(**{**TRAIN, "provenance": None})
    with pytest.raises(TypeError, match="no provenance"):
        write_record(tmp_path / "metrics.json", rec)
    assert not (tmp_path / "metrics.json").exists()
    old = {k: v for k, v in TRAIN.items() if k != "provenance"}
    (tmp_path / "old.json").write_text(json.dumps({**old, "stage": "train"}))
    assert read_record(tmp_path / "old.json").provenance is None


def test_the_writer_refuses_a_key_the_schema_does_not_declare(tmp_path: Path) -> None:
    """A misspelt key fails where it is written, not silently in the report."""
    with pytest.raises(TypeError, match="TrainRecord has no field.*top_1"):
        write_record(tmp_path / "metrics.json", TrainRecord(**TRAIN, top_1=3.0))
    assert not (tmp_path / "metrics.json").exists()


def test_the_writer_checks_types_and_ranges() -> None:
    with pytest.raises(ValueError, match="top1"):
        TrainRecord(**{**TRAIN, "top1": 120.0})
    with pytest.raises(ValueError, match="does not match device_kind"):
        TrainRecord(**{**TRAIN, "train_cost_unit": "GPU-days"})
    with pytest.raises(ValueError, match="epochs"):
        TrainRecord(**{**TRAIN, "epochs": 3.5})


def test_a_file_written_before_the_schema_module_still_loads(tmp_path: Path) -> None:
    """The dict the search stage wrote by hand before harness/records.py existed (keys as
    then, an ablation with the settings it changed, descriptive extras)."""
    old = {"stage": "search", **COMMON, "world_size": 1, "run": "dcpnas-parent2",
           "ablation": {"name": "dcpnas-parent2", "table": "speed", "label": "Parent every 2nd",
                        "parent_every": 2},
           "search_seconds": 12.0, "search_cost_value": 0.0033, "search_cost_unit": "CPU-hours",
           "peak_memory_mb": 300.0, "peak_memory_kind": "rss", "epochs": 2,
           "genotype": "genotype.json", "alphas": {"normal": [[0.1, 0.2]]},
           "resumed_from_epoch": None, "config": {"C": 4}, "compiled_modules": 0,
           "final": {"loss": 2.3}, "history": [{"epoch": 0, "loss": 2.3}]}
    p = tmp_path / "metrics.json"
    p.write_text(json.dumps(old))
    rec = read_record(p)
    assert isinstance(rec, SearchRecord) and rec.ablation is not None
    assert rec.ablation.model_dump() == old["ablation"]
    assert rec.model_dump(exclude_unset=True)["search_seconds"] == 12.0


def test_a_missing_field_says_which_and_how_to_regenerate(tmp_path: Path) -> None:
    p = tmp_path / "metrics.json"
    p.write_text(json.dumps({"stage": "train", **{k: v for k, v in TRAIN.items()
                                                   if k != "memory_mbit"}}))
    with pytest.raises(RecordError) as info:
        read_record(p)
    (line,) = info.value.problems
    assert line.startswith(str(p)) and "missing required key 'memory_mbit'" in line
    assert "for stage 'train'" in line and "dvc repro" in line


@pytest.mark.parametrize("text, expect", [
    ('{"stage": "train", "top1": NaN}', "key 'top1': expected a finite number"),
    ("[1, 2]", "expected a JSON object at top level"),
    ('{"stage": ', "not valid JSON"),
    ('{"method": "x"}', "missing required key 'stage'"),
])
def test_bad_files_name_the_file_and_the_key(tmp_path: Path, text: str, expect: str) -> None:
    p = tmp_path / "metrics.json"
    p.write_text(text)
    with pytest.raises(RecordError) as info:
        read_record(p)
    assert any(line.startswith(str(p)) and expect in line for line in info.value.problems), \
        info.value.problems


def test_every_stage_has_one_record_model() -> None:
    assert set(RECORDS) == {"search", "train", "detect", "reid", "deploy"}
    for stage, model in RECORDS.items():
        assert model.model_fields["stage"].default == stage
