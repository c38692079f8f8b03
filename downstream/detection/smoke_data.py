"""A generated COCO-format detection set for smoke runs (no download possible here).

Layout under ``root``::

    train/000000.jpg ...           val/000000.jpg ...
    annotations/instances_train.json   annotations/instances_val.json

Each image has 1-4 filled shapes on a noisy background; the class decides the shape and its
colour (square/red, disc/green, triangle/blue, then diamond, cross, ring), so the task is
learnable. Boxes are the exact pixel extents of the drawn shapes ([x, y, w, h], COCO style),
``area`` is the shape's pixel count. Same arguments + seed -> the same bytes. Writes are
atomic and the annotation files come last, so a killed run never leaves a set that looks
complete; a finished set with the same parameters is reused.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from backbones.atomic import atomic_write_bytes

SHAPES = ("square", "disc", "triangle", "diamond", "cross", "ring")
COLOURS = ((220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 200, 40), (200, 60, 220),
           (40, 210, 220))
FORMAT = "harness-coco-smoke/1"


def smoke_classes(num_classes: int = 3) -> tuple[str, ...]:
    if not 1 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes must be in 1..{len(SHAPES)}, got {num_classes}")
    return SHAPES[:num_classes]


def _draw(draw: ImageDraw.ImageDraw, shape: str, x0: int, y0: int, s: int,
          fill: int | tuple[int, ...]) -> None:
    x1, y1 = x0 + s - 1, y0 + s - 1
    if shape == "square":
        draw.rectangle([x0, y0, x1, y1], fill=fill)
    elif shape == "disc":
        draw.ellipse([x0, y0, x1, y1], fill=fill)
    elif shape == "triangle":
        draw.polygon([(x0 + (s - 1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "diamond":
        cx, cy = x0 + (s - 1) / 2, y0 + (s - 1) / 2
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    elif shape == "cross":
        t = max(2, s // 3)
        o = (s - t) // 2
        draw.rectangle([x0 + o, y0, x0 + o + t - 1, y1], fill=fill)
        draw.rectangle([x0, y0 + o, x1, y0 + o + t - 1], fill=fill)
    elif shape == "ring":
        t = max(2, s // 5)
        draw.ellipse([x0, y0, x1, y1], outline=fill, width=t)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(shape)


def _iou(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    ax, ay, s = a
    bx, by, t = b
    iw = max(0, min(ax + s, bx + t) - max(ax, bx))
    ih = max(0, min(ay + s, by + t) - max(ay, by))
    inter = iw * ih
    return inter / (s * s + t * t - inter)


def _make_split(root: Path, split: str, n: int, size: int, classes: tuple[str, ...],
                rng: np.random.Generator, start_ann_id: int) -> dict:
    images, annotations = [], []
    ann_id = start_ann_id
    lo, hi = max(8, int(size * 0.22)), max(10, int(size * 0.45))
    for i in range(n):
        base = rng.integers(60, 196, size=3)
        noise = rng.normal(0.0, 18.0, size=(size, size, 3))
        bg = np.clip(base[None, None, :] + noise, 0, 255).astype(np.uint8)
        img = Image.fromarray(bg, "RGB")
        draw = ImageDraw.Draw(img)
        placed: list[tuple[int, int, int]] = []
        for _ in range(int(rng.integers(1, 5))):
            for _try in range(20):
                s = int(rng.integers(lo, hi + 1))
                x0, y0 = (int(v) for v in rng.integers(0, size - s + 1, size=2))
                if all(_iou((x0, y0, s), p) < 0.2 for p in placed):
                    break
            else:
                continue
            placed.append((x0, y0, s))
            cls = int(rng.integers(len(classes)))
            colour = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255))
                           for c in COLOURS[cls])
            mask = Image.new("L", (size, size), 0)
            _draw(ImageDraw.Draw(mask), classes[cls], x0, y0, s, 255)
            m = np.asarray(mask) > 0
            ys, xs = np.nonzero(m)
            _draw(draw, classes[cls], x0, y0, s, colour)  # later shapes occlude earlier ones
            bx, by = int(xs.min()), int(ys.min())
            bw, bh = int(xs.max()) - bx + 1, int(ys.max()) - by + 1
            annotations.append({"id": ann_id, "image_id": i, "category_id": cls + 1,
                                "bbox": [float(bx), float(by), float(bw), float(bh)],
                                "area": float(m.sum()), "iscrowd": 0, "segmentation": []})
            ann_id += 1
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=92)
        name = f"{i:06d}.jpg"
        atomic_write_bytes(root / split / name, buf.getvalue())
        images.append({"id": i, "file_name": name, "width": size, "height": size})
    return {"images": images, "annotations": annotations}


def generate_coco_smoke(root: str | os.PathLike[str], n_train: int = 64, n_val: int = 16,
                        size: int = 96, num_classes: int = 3, seed: int = 0) -> Path:
    """Write (or reuse) the smoke set under ``root``; returns ``root``."""
    root = Path(root)
    classes = smoke_classes(num_classes)
    if n_train < 1 or n_val < 1 or size < 32:
        raise ValueError(f"need n_train >= 1, n_val >= 1 and size >= 32; got {n_train}, "
                         f"{n_val}, {size}")
    params = {"format": FORMAT, "n_train": n_train, "n_val": n_val, "size": size,
              "num_classes": num_classes, "seed": seed}
    ann_dir = root / "annotations"
    done = [ann_dir / "instances_train.json", ann_dir / "instances_val.json"]
    if all(p.is_file() for p in done):
        try:
            infos = [json.loads(p.read_text()).get("info", {}).get("params") for p in done]
        except (OSError, json.JSONDecodeError):
            infos = []
        if infos == [params, params]:
            return root
    for p in done:  # regenerate: the annotations are invalid until rewritten last
        p.unlink(missing_ok=True)
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"}
                  for k, name in enumerate(classes)]
    splits = {}
    next_id = 1
    for k, (split, n) in enumerate((("train", n_train), ("val", n_val))):
        rng = np.random.default_rng([seed, k])
        splits[split] = _make_split(root, split, n, size, classes, rng, next_id)
        next_id += len(splits[split]["annotations"])
    for split, data in splits.items():
        coco = {"info": {"description": "harness COCO-format smoke set", "params": params},
                "licenses": [], "categories": categories, **data}
        atomic_write_bytes(ann_dir / f"instances_{split}.json",
                      (json.dumps(coco, indent=1) + "\n").encode())
    return root
