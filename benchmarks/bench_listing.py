#!/usr/bin/env python
"""How long the ImageNet search spends listing its training folder, on a generated folder in
the standard layout (``train/<wnid>/*.JPEG``; default 1000 classes x 100 = 100,000 small JPEGs).

    python benchmarks/bench_listing.py                    # 100,000 files under a temp folder
    python benchmarks/bench_listing.py --classes 1000 --per-class 1281

Times, each in a fresh pass over the same folder: torchvision's ImageFolder listing (the one
listing a search makes), the class-balanced sample drawn from it (10 % / 2.5 %), and the data
digest of the run from that listing (names and sizes: a stat per listed file, no second
directory walk; names and sizes, as for a real ImageNet), against a second full walk
(``os.walk``) for comparison. The first listing
after creating the files is warm in the page cache, as on a machine that has read the folder
before; a cold cache (``echo 3 > /proc/sys/vm/drop_caches``, root) is slower on every line.
A benchmark: it prints, it asserts nothing.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def make_folder(root: Path, classes: int, per_class: int) -> None:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 60, 30)).save(buf, format="JPEG")
    data = buf.getvalue()
    for c in range(classes):
        d = root / "train" / f"n{c:08d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (d / f"n{c:08d}_{i}.JPEG").write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--root", default=None, help="an existing folder (default: a temp folder)")
    ap.add_argument("--no-write", action="store_true",
                    help="only print (default: also write results/bench/listing.{json,md})")
    args = ap.parse_args(argv)
    from harness import provenance
    from harness.data import SampleSpec, class_balanced_sample, imagenet_folder
    # the digest mode of a real ImageNet (140 GB, far above the content-digest limit)
    provenance.CONTENT_DIGEST_LIMIT = 0

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else Path(tmp) / "imagenet"
        if not args.root:
            t0 = time.perf_counter()
            make_folder(root, args.classes, args.per_class)
            print(f"generated {args.classes * args.per_class:,} files in "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        t0 = time.perf_counter()
        ds = imagenet_folder(root, "train")
        t_list = time.perf_counter() - t0
        t0 = time.perf_counter()
        w, a = class_balanced_sample(ds.targets, ds.classes, SampleSpec(0.1, 0.025),
                                     str(root / "train"))
        t_sample = time.perf_counter() - t0
        t0 = time.perf_counter()
        provenance.data_digest(root, {"weights": w, "arch": a}, [p for p, _ in ds.samples])
        t_digest = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_walk = sum(len(files) for _, _, files in os.walk(root / "train"))
        t_walk = time.perf_counter() - t0
    n = len(ds)
    rows = [("ImageFolder listing (the search's one listing)", t_list),
            (f"class-balanced sample 10 % / 2.5 % ({len(w):,} + {len(a):,} images)", t_sample),
            ("data digest from that listing (names + sizes: a stat per file, no walk)",
             t_digest),
            (f"a second walk, for comparison ({n_walk:,} files)", t_walk)]
    table = "\n".join([f"| step ({n:,} files, {len(ds.classes)} classes) | seconds |",
                       "|---|---|", *(f"| {name} | {sec:.2f} |" for name, sec in rows)])
    print(table)
    if not args.no_write:
        from benchmarks import snapshot
        m = snapshot.measured("cpu", 1, classes=len(ds.classes), files=n,
                              folder="given" if args.root else "generated, warm page cache")
        snapshot.write("listing", {"measured": m, "seconds": dict(rows)},
                       f"# Listing an ImageNet folder\n\n{snapshot.caption(m)}\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
