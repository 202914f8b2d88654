"""Synthesise livefaces/data/demo.mp4: two public-domain portraits moving over a backdrop.

Grace Hopper (U.S. Navy photo, bundled) and the astronaut Eileen Collins (NASA photo, from
scikit-image's data) glide, grow and cross, then one leaves and comes back, so the demo
shows tracking, face.appeared/updated/lost and re-appearance. 640x360, 25 fps, 10 s, H.264.

    python scripts/make_demo_clip.py [OUT]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from livefaces.avio import AVWriter  # noqa: E402
from livefaces.imageio import read_image  # noqa: E402

W, H, FPS, SECONDS = 640, 360, 25, 10


def paste(canvas: np.ndarray, img: np.ndarray, cx: float, cy: float, height: int) -> None:
    w = int(img.shape[1] * height / img.shape[0])
    small = cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA)
    x0, y0 = int(cx - w / 2), int(cy - height / 2)
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + height)
    if xa < xb and ya < yb:
        canvas[ya:yb, xa:xb] = small[ya - y0:yb - y0, xa - x0:xb - x0]


def main() -> None:
    from skimage import data

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "livefaces" / "data" / "demo.mp4"
    hopper = read_image(ROOT / "livefaces" / "data" / "grace_hopper.jpg")
    astro = np.ascontiguousarray(data.astronaut())
    yy, xx = np.mgrid[0:H, 0:W]
    backdrop = np.stack([60 + 40 * xx / W, 70 + 30 * yy / H, 90 + 0 * xx], -1).astype(np.uint8)
    writer = AVWriter(out, fps=FPS, crf=30, preset="slow")
    for i in range(FPS * SECONDS):
        t = i / FPS
        frame = backdrop.copy()
        paste(frame, hopper, 170 + 60 * math.sin(t * 0.9), 190 + 15 * math.sin(t * 1.7),
              int(200 + 40 * math.sin(t * 0.5)))
        if not 5.0 <= t < 6.5:  # the astronaut leaves the frame for 1.5 s and comes back
            paste(frame, astro, 470 - 50 * math.sin(t * 0.7), 180, int(190 - 30 * math.cos(t * 0.6)))
        writer.write(frame, t)
    writer.close()
    print(f"{out}: {out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
