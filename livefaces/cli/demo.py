"""``livefaces demo``: the bundled sample, end to end."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from ..imageio import read_image, write_image
from ..render import annotate
from ._common import EXIT_OK, add_detector_arguments, make_detector

NAME = "demo"
HELP = "detect faces in the bundled sample photo and write an annotated copy"
DESCRIPTION = """\
Runs the detector on the bundled sample (Grace Hopper, U.S. Navy photo, public domain),
prints what it found and writes an annotated copy. A quick check that everything works.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("livefaces-demo.jpg"),
                   help="where to write the annotated copy (default: ./livefaces-demo.jpg)")
    add_detector_arguments(p)


def sample_path() -> Path:
    return Path(str(resources.files("livefaces.data") / "grace_hopper.jpg"))


def run(args: argparse.Namespace) -> int:
    detector = make_detector(args)
    src = sample_path()
    image = read_image(src)
    faces = detector.detect(image)
    print(f"{src.name} ({image.shape[1]}x{image.shape[0]}): {len(faces)} face(s) on {detector.provider}")
    for f in faces:
        box = ", ".join(f"{v:.0f}" for v in f.box)
        print(f"  box [{box}]  confidence {f.confidence:.4f}")
    write_image(args.out, annotate(image, faces))
    print(f"annotated copy: {args.out}")
    return EXIT_OK
