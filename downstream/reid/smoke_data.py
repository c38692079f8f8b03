"""A tiny synthetic data set in the Market-1501 layout, read by torchreid's own ``Market1501``.

``generate_market_smoke(root)`` writes::

    root/market1501/Market-1501-v15.09.15/{bounding_box_train,query,bounding_box_test}/
        NNNN_cCsS_FFFFFF_BB.jpg          # person id, camera 1..6, sequence 1, frame, box
    root/market1501/SMOKE.json           # the generator's parameters (a stamp)

and returns ``root`` (the ``data_root`` of ``run_reid``). Each identity is a person-like figure
with its own upper/lower-body colours and pattern; each camera changes the illumination, the
background and the noise, so the task is learnable but not trivial. Train and test identities
are disjoint (like Market); each test identity is seen by >= 2 cameras, its queries come from
all but its last camera and every other image goes to the gallery, so every query has a
same-id gallery image from a different camera (torchreid discards same-camera matches).
The gallery also holds distractors (id 0000) and junk images (id -1, ignored by torchreid).
Deterministic for given arguments; written into a temporary folder that is renamed into place.
"""
from __future__ import annotations

import argparse
import colorsys
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from backbones.atomic import atomic_write_bytes, atomic_write_json, storage_errors
from downstream.reid.data import SPLITS, ReIDDataError

GENERATOR = "market-smoke/1"
DATA_SUBDIR = "Market-1501-v15.09.15"


def _colour(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _identity(pid: int, rng: np.random.Generator) -> dict:
    golden = 0.6180339887
    return {
        "upper": _colour(pid * golden, 0.55 + 0.4 * rng.random(), 0.55 + 0.4 * rng.random()),
        "lower": _colour(pid * golden + 0.37 + 0.2 * rng.random(), 0.5 + 0.5 * rng.random(),
                         0.3 + 0.5 * rng.random()),
        "accent": _colour(rng.random(), 0.8, 0.9),
        "stripes": int(rng.integers(0, 4)),     # 0: plain, else stripe period index
        "width": 0.45 + 0.25 * rng.random(),
    }


def _camera(cam: int, rng: np.random.Generator) -> dict:
    return {
        "gain": (0.75 + 0.5 * rng.random(3)).astype(np.float32),
        "offset": float(rng.uniform(-0.08, 0.08)),
        "background": _colour(rng.random(), 0.25, 0.35 + 0.4 * rng.random()),
        "noise": float(0.02 + 0.04 * rng.random()),
    }


def _render(ident: dict, cam: dict, size: tuple[int, int], rng: np.random.Generator) -> bytes:
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = cam["background"] * (0.8 + 0.4 * yy[..., None] / h)
    cx = w / 2 + rng.uniform(-0.08, 0.08) * w
    top = rng.uniform(0.03, 0.08) * h
    half = ident["width"] * w / 2 * rng.uniform(0.9, 1.1)
    head = ((xx - cx) ** 2 / (0.12 * w) ** 2 + (yy - top - 0.07 * h) ** 2 / (0.07 * h) ** 2) < 1
    img[head] = _colour(0.08, 0.45, 0.85)
    body = (np.abs(xx - cx) < half) & (yy >= top + 0.14 * h)
    upper = body & (yy < top + 0.52 * h)
    lower = body & (yy >= top + 0.52 * h) & (np.abs(xx - cx) > 0.06 * w) & (yy < 0.98 * h)
    img[upper] = ident["upper"]
    if ident["stripes"]:
        period = 2 + 2 * ident["stripes"]
        stripe = upper & (((yy - top).astype(np.int64) // period) % 2 == 1)
        img[stripe] = ident["accent"]
    img[lower] = ident["lower"]
    img = img * cam["gain"] + cam["offset"]
    img += rng.normal(0.0, cam["noise"], img.shape).astype(np.float32)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(
        buf, "JPEG", quality=95)
    return buf.getvalue()


def _distractor(size: tuple[int, int], rng: np.random.Generator) -> bytes:
    h, w = size
    img = rng.random((4, 2, 3)).astype(np.float32)
    img = np.kron(img, np.ones((h // 4 + 1, w // 2 + 1, 1), np.float32))[:h, :w]
    img += rng.normal(0, 0.05, img.shape).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(
        buf, "JPEG", quality=95)
    return buf.getvalue()


def generate_market_smoke(root: str | os.PathLike[str], n_ids: int = 16, n_cams: int = 4,
                          imgs_per_id_cam: int = 3, size: tuple[int, int] = (64, 32),
                          seed: int = 0, n_distractors: int = 4, n_junk: int = 2) -> Path:
    """Write the smoke data set (see the module docstring); returns ``root``.

    ``n_ids`` identities in all: the first ceil(n_ids/2) are train ids, the rest test ids.
    ``size`` is (height, width). An existing smoke data set made with the same arguments is
    kept as it is; a folder that is not one of ours is never overwritten.
    """
    if n_ids < 4 or not 2 <= n_cams <= 6 or imgs_per_id_cam < 1:
        raise ValueError("need n_ids >= 4, 2 <= n_cams <= 6 (Market has 6 cameras), "
                         "imgs_per_id_cam >= 1")
    root = Path(root)
    params = {"generator": GENERATOR, "n_ids": n_ids, "n_cams": n_cams,
              "imgs_per_id_cam": imgs_per_id_cam, "size": list(size), "seed": seed,
              "n_distractors": n_distractors, "n_junk": n_junk}
    target = root / "market1501"
    stamp = target / "SMOKE.json"
    if target.exists():
        try:
            old = json.loads(stamp.read_text())
        except (OSError, ValueError):
            raise ReIDDataError(f"{target} exists and is not a smoke data set made by "
                                f"{__name__} (no readable {stamp.name}); not overwriting it"
                                ) from None
        if old.get("params") == params:
            return root

    rng = np.random.default_rng(seed)
    cams = {c: _camera(c, rng) for c in range(1, n_cams + 1)}
    n_train = (n_ids + 1) // 2
    pids = [1 + 2 * i + int(rng.integers(0, 2)) for i in range(n_ids)]  # sparse, like Market
    files: dict[str, dict[str, bytes]] = {s: {} for s in SPLITS}
    frame = {c: 0 for c in cams}

    def name(pid: int, cam: int) -> str:
        frame[cam] += int(rng.integers(1, 40))
        p = "-1" if pid < 0 else f"{pid:04d}"
        return f"{p}_c{cam}s1_{frame[cam]:06d}_{int(rng.integers(1, 4)):02d}.jpg"

    for i, pid in enumerate(pids):
        ident = _identity(pid, rng)
        k = int(rng.integers(2, n_cams + 1))
        id_cams = sorted(rng.choice(np.arange(1, n_cams + 1), size=k, replace=False).tolist())
        query_cams = set(id_cams[:-1][:2])  # never the last camera: its images stay in gallery
        for cam in id_cams:
            for j in range(imgs_per_id_cam):
                data = _render(ident, cams[cam], size, rng)
                if i < n_train:
                    split = "bounding_box_train"
                elif cam in query_cams and j == 0:
                    split = "query"
                else:
                    split = "bounding_box_test"
                files[split][name(pid, cam)] = data
    for pid, count in ((0, n_distractors), (-1, n_junk)):
        for _ in range(count):
            cam = int(rng.integers(1, n_cams + 1))
            files["bounding_box_test"][name(pid, cam)] = _distractor(size, rng)

    with storage_errors(target):   # one line for a full disk, not a traceback
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".market1501.", dir=root))
        try:
            for split, items in files.items():
                folder = tmp / DATA_SUBDIR / split
                folder.mkdir(parents=True)
                for fname, data in items.items():
                    atomic_write_bytes(folder / fname, data)
            counts = {s: len(v) for s, v in files.items()}
            atomic_write_json(tmp / "SMOKE.json", {"params": params, "counts": counts,
                                                   "train_ids": pids[:n_train],
                                                   "test_ids": pids[n_train:]})
            old_dir = None
            if target.exists():
                old_dir = Path(tempfile.mkdtemp(prefix=".market1501.old.", dir=root))
                os.replace(target, old_dir / "market1501")
            os.replace(tmp, target)
            if old_dir is not None:
                shutil.rmtree(old_dir, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the synthetic Market-1501-layout smoke set.")
    ap.add_argument("root", type=Path, help="data root (gets market1501/...)")
    ap.add_argument("--n-ids", type=int, default=16)
    ap.add_argument("--n-cams", type=int, default=4)
    ap.add_argument("--imgs-per-id-cam", type=int, default=3)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    out = generate_market_smoke(a.root, n_ids=a.n_ids, n_cams=a.n_cams,
                                imgs_per_id_cam=a.imgs_per_id_cam, size=(a.height, a.width),
                                seed=a.seed)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
