#!/usr/bin/env python3
"""Writes tests/data/pil_resize/: source images and their crop + resize by Pillow's bilinear
filter (what torchvision's RandomResizedCrop / Resize apply to PIL images), the independent
reference of tests/imagefolder.rs `resize_matches_pillow`. Needs numpy and Pillow (any
version >= 7, whose bilinear resize is antialiased):

    python3 tools/pil_resize_fixture.py [OUT_DIR]
"""
import json
import os
import sys

import numpy as np
from PIL import Image

# (source width, height, crop box x, y, w, h, output width, height)
CASES = [
    (64, 48, 5, 3, 40, 33, 32, 32),  # random-resized crop, downscale
    (40, 64, 0, 0, 40, 64, 36, 57),  # evaluation resize of the shorter side
    (40, 30, 10, 10, 7, 9, 24, 24),  # a small crop upscaled
    (96, 72, 0, 0, 96, 72, 24, 18),  # 4× down: the widened filter
]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "data", "pil_resize")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    meta = []
    for k, (w, h, x, y, cw, ch, ow, oh) in enumerate(CASES):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([128 + 100 * np.sin(xx / 7.0 + k),
                        128 + 90 * np.cos(yy / 5.0 + xx / 11.0),
                        (xx * 3 + yy * 2) % 256], -1)
        img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
        pil = Image.fromarray(img, "RGB").crop((x, y, x + cw, y + ch)).resize(
            (ow, oh), Image.BILINEAR)
        img.tofile(os.path.join(out, f"src{k}.rgb"))
        np.asarray(pil).tofile(os.path.join(out, f"pil{k}.rgb"))
        meta.append(dict(w=w, h=h, x=x, y=y, cw=cw, ch=ch, ow=ow, oh=oh))
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
