"""``livefaces detect``: faces in still images."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from ..errors import ImageReadError, OutputError
from ..imageio import IMAGE_SUFFIXES, make_folder, read_image, write_image
from ..render import annotate
from ._common import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    ProgressLine,
    add_detector_arguments,
    add_max_pixels_argument,
    error,
    expand_paths,
    fmt_duration,
    make_detector,
    printable,
)
from .people import add_people_argument, open_people

NAME = "detect"
HELP = "find faces in image files, folders or globs"
DESCRIPTION = """\
Find faces in still images. PATH may be a file, a folder (searched recursively for
.jpg/.png/.bmp/.webp/.tif files) or a glob such as 'photos/**/*.jpg' (quote it).

Without --json, prints one summary line per image. An unreadable or non-image file is
reported on stderr and skipped; the exit code is then 1.
"""
EPILOG = """\
examples:
  livefaces detect photo.jpg
  livefaces detect photos/ --json > faces.jsonl
  livefaces detect 'shots/*.png' --annotate annotated/ --min-face 40
  livefaces detect photos/ --people people --json     # who is it (see 'livefaces people')

--json line format:
  {"source": PATH, "width": W, "height": H, "faces": [{"box": [x1, y1, x2, y2],
   "confidence": c, "landmarks": {"left_eye": [x, y], "right_eye": [x, y], "nose": [x, y],
   "mouth_left": [x, y], "mouth_right": [x, y]}}]}
coordinates are pixels of the input image as displayed (EXIF orientation applied), origin
top-left. With --people each face also
has "identity": {"name": NAME or null (unknown), "distance": d} (lower is more alike; a
known person at or below the threshold, 0.55).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders or globs")
    p.add_argument("--json", action="store_true", help="print one JSON object per image (JSON Lines)")
    p.add_argument("--annotate", type=Path, metavar="DIR",
                   help="write copies with boxes, landmarks and scores drawn into DIR, at the "
                        "path each image has in the folder named (a file named by a relative "
                        "path: that path; else its name, _1, _2... when names meet); each "
                        "summary line (--json: 'annotated') says where its copy went. A DIR "
                        "where a copy would write over an input is refused (exit 2)")
    add_max_pixels_argument(p)
    add_people_argument(p, default_env=False)
    add_detector_arguments(p)


def _annotated_path(out_dir: Path, root: Path | None, path: Path, used: set[Path]) -> Path:
    """Where the annotated copy of ``path`` goes: its path inside the folder it was found in
    (``root``), or the path as named when that is relative and stays below the current
    folder, under ``out_dir``; else its name alone. Two inputs that would meet get ``_1``,
    ``_2``... (the summary line and ``--json``'s ``annotated`` say where each went)."""
    if root is not None:
        rel = path.relative_to(root)
    elif not path.is_absolute() and ".." not in path.parts:
        rel = path
    else:
        rel = Path(path.name)
    target = out_dir / rel
    n = 1
    while target in used:  # two inputs with the same name: keep both
        target = target.with_name(f"{rel.stem}_{n}{rel.suffix}")
        n += 1
    used.add(target)
    return target


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _overwritten_input(targets: list[Path], inputs: list[Path]) -> tuple[Path, Path] | None:
    """``(target, input)`` of the first annotated copy that would land on an input file."""
    by_real: dict[str, Path] = {}
    for p in inputs:
        try:
            by_real[os.path.realpath(p)] = p
        except OSError:
            continue
    for t in targets:
        hit = by_real.get(os.path.realpath(t))
        if hit is not None:
            return t, hit
        if t.exists():  # a hard link to an input
            for p in inputs:
                if _same_file(t, p):
                    return t, p
    return None


def _progress_text(done: int, total: int, start: float) -> str:
    rate = done / max(time.monotonic() - start, 1e-6)
    eta = (total - done) / rate if rate > 0 else None
    return f"[{done}/{total}] {rate:.1f} img/s, ETA {fmt_duration(eta)}"


def _not_an_image(given: str, path: Path, e: ImageReadError) -> str:
    """The line for an input that is not a still image: a folder without images, a video
    (detect's most common mix-up: say which command reads it), else the reader's reason."""
    if path.is_dir():
        return (f"{given}: no images in this folder (looked for "
                f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    from ..extract.decode import VIDEO_SUFFIXES

    if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
        q = shlex.quote(given)
        return (f"{given}: is a video; detect reads still images: use 'livefaces watch {q}' "
                f"(live pipeline, events) or 'livefaces extract {q} --out DIR' (every face "
                f"as a crop)")
    return str(e)


def run(args: argparse.Namespace) -> int:
    if args.annotate:  # a file in the way is found before any work (exit 3)
        make_folder(args.annotate, "the annotated copies")
    people = open_people(args.people) if args.people is not None else None
    detector = make_detector(args)
    failed = 0
    used: set[Path] = set()
    items = list(expand_paths(args.paths))
    targets: list[Path | None] = [None] * len(items)
    if args.annotate:  # never write over an input: refused before any work (exit 2)
        targets = [_annotated_path(args.annotate, root, path, used) for _, root, path in items]
        clash = _overwritten_input([t for t in targets if t is not None],
                                   [path for _, _, path in items])
        if clash is not None:
            error(f"--annotate {args.annotate}: the annotated copy {clash[0]} would write over "
                  f"the input {clash[1]}; choose a folder that holds no input")
            return EXIT_USAGE
    progress, start = ProgressLine(len(items) > 1 and sys.stderr.isatty()), time.monotonic()
    for done, (given, _root, path) in enumerate(items):
        if done:
            progress.show(_progress_text(done, len(items), start))
        try:
            image = read_image(path, args.max_pixels)
        except ImageReadError as e:
            error(_not_an_image(given, path, e))
            failed += 1
            continue
        faces = detector.detect(image)
        names: list[str | None] | None = None
        dicts = faces.to_dicts()
        if people is not None:
            recognizer, gallery = people
            matches = gallery.match_all(recognizer.embed(image, faces))
            names = [m.name for m in matches]
            for d, m in zip(dicts, matches):
                d["identity"] = m.to_json()
        target = targets[done]
        if args.json:
            rec = {"source": given, "width": image.shape[1], "height": image.shape[0],
                   "faces": dicts, **({"annotated": str(target)} if target is not None else {})}
            sys.stdout.write(json.dumps(rec) + "\n")
            sys.stdout.flush()
        else:
            best = f" (best {faces.scores.max():.3f})" if len(faces) else ""
            who = f": {', '.join(n or 'unknown' for n in names)}" if names else ""
            where = f" -> {target}" if target is not None else ""
            print(printable(f"{given}: {len(faces)} face{'s' if len(faces) != 1 else ''}{best}{who}{where}"))
        if target is not None:
            try:
                make_folder(target.parent, "the annotated copies")
                write_image(target, annotate(image, faces, names=names))
            except OutputError as e:
                error(f"annotated copy not written: {e}")
                failed += 1
    progress.show(_progress_text(len(items), len(items), start), final=True)
    progress.close()
    return EXIT_PARTIAL if failed else EXIT_OK
