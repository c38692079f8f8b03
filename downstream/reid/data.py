"""Checks a re-ID data root before torchreid sees it.

torchreid's dataset classes try to *download* a data set whose folder is missing (impossible
here, and slow to fail) and otherwise fail with an opaque ``RuntimeError('"..." is not found')``
or an ``AttributeError`` on a file name that does not match. ``check_reid_data_root`` raises one
``ReIDDataError`` that names the path and the expected layout instead.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# torchreid's own pattern (Market1501/DukeMTMCreID.process_dir), searched in the *full* path.
TORCHREID_PID_CAM = re.compile(r"([-\d]+)_c(\d)")
MARKET_NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
SPLITS = ("bounding_box_train", "query", "bounding_box_test")


class ReIDDataError(ValueError):
    """A re-ID data root without the layout torchreid expects (an input error, not a storage
    failure: the CLI prints it as one line with exit status 2)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


@dataclass(frozen=True)
class Layout:
    torchreid_name: str
    dataset_dir: str       # under the data root (torchreid's ``dataset_dir``)
    data_subdir: str       # holding the three split folders
    file_pattern: str
    max_cam: int


LAYOUTS: dict[str, Layout] = {
    "market1501": Layout("market1501", "market1501", "Market-1501-v15.09.15",
                         "NNNN_cCsS_FFFFFF_BB.jpg (e.g. 0002_c1s1_000451_03.jpg)", 6),
    "dukemtmcreid": Layout("dukemtmcreid", "dukemtmc-reid", "DukeMTMC-reID",
                           "NNNN_cC_fFFFFFFF.jpg (e.g. 0001_c2_f0046182.jpg)", 8),
}


def expected_layout(data_root: Path, dataset: str) -> str:
    lay = LAYOUTS[dataset]
    base = Path(data_root) / lay.dataset_dir / lay.data_subdir
    return f"{base}/{{{','.join(SPLITS)}}}/{lay.file_pattern}"


def check_reid_data_root(data_root: str | os.PathLike[str], dataset: str) -> Path:
    """Return the folder holding the split folders, or raise one ReIDDataError."""
    if dataset not in LAYOUTS:
        raise ReIDDataError(f"unknown re-ID data set {dataset!r}: expected one of "
                            f"{sorted(LAYOUTS)}")
    root = Path(data_root).expanduser().absolute()
    lay = LAYOUTS[dataset]

    def fail(problem: str) -> ReIDDataError:
        return ReIDDataError(f"{root}: no {dataset} data set ({problem}); expected the layout "
                             f"{expected_layout(root, dataset)}")

    base = root / lay.dataset_dir / lay.data_subdir
    if dataset == "market1501" and not base.is_dir() and all(
            (root / lay.dataset_dir / s).is_dir() for s in SPLITS):
        base = root / lay.dataset_dir  # torchreid's deprecated flat layout also loads
    if not base.is_dir():
        missing = next(p for p in (root, root / lay.dataset_dir, base) if not p.is_dir())
        raise fail(f"{missing} is not a directory")
    for split in SPLITS:
        folder = base / split
        if not folder.is_dir():
            raise fail(f"{folder} is not a directory")
        jpgs = sorted(folder.glob("*.jpg"))
        if not jpgs:
            raise fail(f"{folder} holds no .jpg images")
        for jpg in jpgs:
            # torchreid parses the full path: the first match must be the file name's own.
            m = TORCHREID_PID_CAM.search(str(jpg))
            own = TORCHREID_PID_CAM.match(jpg.name)
            if own is None or m is None or m.start() != len(str(jpg)) - len(jpg.name):
                raise fail(f"{jpg} does not parse as person-id_cCAMERA with torchreid's "
                           f"pattern {TORCHREID_PID_CAM.pattern!r}"
                           + ("" if own is None else
                              " (the directory path itself matches it: move the data)"))
            pid, cam = int(own.group(1)), int(own.group(2))
            if not (pid == -1 or 0 <= pid <= 1501) or not 1 <= cam <= lay.max_cam:
                raise fail(f"{jpg}: person id {pid} / camera {cam} out of range")
    return base
