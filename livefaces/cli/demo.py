"""``livefaces demo``: the bundled sample, end to end."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from ..imageio import read_image, write_image
from ..render import annotate
from ._common import EXIT_OK, add_detector_arguments, make_detector, printable
from .people import add_people_argument, open_people

NAME = "demo"
HELP = "detect faces in the bundled sample photo and write an annotated copy"
DESCRIPTION = """\
Runs the detector on the bundled sample (Grace Hopper, U.S. Navy photo, public domain),
prints what it found and writes an annotated copy. A quick check that everything works.

With --people DIR the faces are also named (see 'livefaces people'), e.g.:
  livefaces people add grace grace_hopper.jpg --people people && livefaces demo --people people
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("livefaces-demo.jpg"),
                   help="where to write the annotated copy (default: ./livefaces-demo.jpg)")
    add_people_argument(p, default_env=False)
    add_detector_arguments(p)


def sample_path() -> Path:
    return Path(str(resources.files("livefaces.data") / "grace_hopper.jpg"))


def run(args: argparse.Namespace) -> int:
    people = open_people(args.people) if args.people is not None else None
    detector = make_detector(args)
    src = sample_path()
    image = read_image(src)
    faces = detector.detect(image)
    print(f"{src.name} ({image.shape[1]}x{image.shape[0]}): {len(faces)} face(s) on {detector.provider}")
    names: list[str | None] | None = None
    if people is not None:
        recognizer, gallery = people
        matches = gallery.match_all(recognizer.embed(image, faces))
        names = [m.name for m in matches]
    for i, f in enumerate(faces):
        box = ", ".join(f"{v:.0f}" for v in f.box)
        who = ""
        if names is not None:
            who = f"  {names[i] or 'unknown'} (distance {matches[i].distance:.2f})"
        print(f"  box [{box}]  confidence {f.confidence:.4f}{who}")
    write_image(args.out, annotate(image, faces, names=names))
    print(printable(f"annotated copy: {args.out}"))
    return EXIT_OK
