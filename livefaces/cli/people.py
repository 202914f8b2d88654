"""``livefaces people``: the known people (add, list, remove) for ``--people``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..imageio import read_image
from ..types import Faces
from ._common import (
    EXIT_OK,
    add_detector_arguments,
    add_max_pixels_argument,
    make_detector,
    printable,
    say,
)

if TYPE_CHECKING:
    from ..identify import Gallery, Recognizer

NAME = "people"
HELP = ("known people for --people: add NAME PHOTO..., list, remove NAME; strangers: list, "
        "name, ignore, forget, merge them")
DESCRIPTION = """\
Manage the folder of known people that 'detect --people', 'demo --people' and the live
commands use to put names on faces. Each photo must show exactly that one person's face
(faces less than half as wide as the largest, people in the background, are ignored); a
person may have several photos (different light, glasses, years help).

The folder holds one 128-number embedding and a small face thumbnail per photo, never the
photos themselves. It is private: created with mode 0700 and files 0600; a folder other users
can read is refused. Needs the 'identify' extra for 'add' (pip install 'livefaces[identify]').
"""
EPILOG = """\
examples:
  livefaces people add grace grace_hopper.jpg
  livefaces people add obama obama1.jpg obama2.jpg --people ~/.config/livefaces/people
  livefaces people list
  livefaces people remove grace
  livefaces detect photo.jpg --people people
  livefaces people unknown --server http://nvr:8080 --save crops/   # strangers serve saw lately
  livefaces people name door.12 ada --server http://nvr:8080        # that one is Ada
  livefaces people strangers                       # unknown faces seen again (serve's people.strangers)
  livefaces people name stranger-3 ada             # all of stranger-3's views enrolled as ada
  livefaces people ignore stranger-4               # never reported again
  livefaces people forget stranger-5               # deleted
  livefaces people merge stranger-3 stranger-6     # the same person seen as two

the folder: --people DIR, else $LIVEFACES_PEOPLE, else ./people.
'unknown' and 'name' talk to a running 'livefaces serve' (with people: in its configuration),
which keeps a few crops of recent unknown faces in memory; naming one adds it to serve's
people folder. A server with a web token: export LIVEFACES_TOKEN=... (never on the command
line, where other users can see it).
exit code 3: a photo that is unreadable or does not show exactly one face (named on stderr;
nothing is written), an unsafe or damaged folder, an unknown name or stranger id; with
--server, a server that cannot be reached or refuses (no such face or stranger, a bad name,
a missing token).
"""


def add_people_argument(p: argparse.ArgumentParser, *, default_env: bool) -> None:
    """``--people DIR`` for commands that name faces (detect, demo) or manage people."""
    if default_env:
        p.add_argument("--people", type=Path, default=None, metavar="DIR",
                       help="the known-people folder (default: $LIVEFACES_PEOPLE, else ./people)")
    else:
        p.add_argument("--people", type=Path, default=None, metavar="DIR",
                       help="name the faces of the known people in DIR (see 'livefaces people'; "
                            "needs the identify extra)")


def open_people(people_dir: Path) -> tuple[Recognizer, Gallery]:
    """The recognizer and the gallery of ``people_dir``, or a one-line error (the identify
    extra missing, the folder missing, unsafe or damaged)."""
    from ..identify import Gallery, Recognizer

    recognizer = Recognizer()
    return recognizer, Gallery.load(people_dir, recognizer.threshold)


#: faces narrower than this share of the photo's widest face are background, not "another face"
BACKGROUND_SHARE = 0.5


def main_face(faces: Faces) -> Faces:
    """The faces of an enrolment photo that count: the widest one and any other at least
    :data:`BACKGROUND_SHARE` as wide (so one face is the person; two or more is ambiguous).
    Small faces (people far behind, false positives) are left out."""
    if len(faces) <= 1:
        return faces
    widths = faces.boxes[:, 2] - faces.boxes[:, 0]
    keep = widths >= BACKGROUND_SHARE * widths.max()
    order = np.argsort(-widths[keep], kind="stable")
    return faces.select(np.flatnonzero(keep)[order])


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="people_action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add photos of a person (created if new)",
                         description="Add one or more photos of NAME (each must show exactly one "
                                     "face). All or nothing: one bad photo and nothing is written.")
    add.add_argument("name", metavar="NAME",
                     help="letters, digits, '_', '-', '.' (no spaces), at most 64 characters")
    add.add_argument("photos", nargs="+", metavar="PHOTO", help="image files, one face each")
    add_max_pixels_argument(add, "photos")
    add_detector_arguments(add)
    lst = sub.add_parser("list", help="list the known people and their photos")
    rm = sub.add_parser("remove", help="delete a person (their embeddings and thumbnails)")
    rm.add_argument("name", metavar="NAME")
    unk = sub.add_parser("unknown", help="list the unknown faces a running serve keeps (to name them)")
    unk.add_argument("--save", type=Path, metavar="DIR",
                     help="also save each one's best crop as DIR/ID.jpg, to look at")
    nm = sub.add_parser("name", help="name a stranger (all their kept views enrolled as NAME), or "
                                     "with --server an unknown face a running serve keeps")
    nm.add_argument("face_id", metavar="ID", help="stranger-N as 'livefaces people strangers' lists "
                    "it, or with --server camera.track as 'livefaces people unknown' lists it")
    nm.add_argument("name", metavar="NAME")
    unk.add_argument("--server", required=True, metavar="URL",
                     help="the serve web address, e.g. http://localhost:8080 (token: $LIVEFACES_TOKEN)")
    nm.add_argument("--server", default=None, metavar="URL",
                    help="name an unknown face a running serve keeps: the serve web address, e.g. "
                         "http://localhost:8080 (token: $LIVEFACES_TOKEN); without it, a stranger "
                         "of the local folder")
    strs = sub.add_parser("strangers", help="list the strangers kept in the folder (unknown faces "
                                            "seen again get the same stranger-N)")
    ign = sub.add_parser("ignore", help="keep a stranger as a negative: still recognised, never "
                                        "reported again")
    ign.add_argument("face_id", metavar="ID", help="stranger-N")
    fgt = sub.add_parser("forget", help="delete a stranger (their views and thumbnails)")
    fgt.add_argument("face_id", metavar="ID", help="stranger-N")
    mrg = sub.add_parser("merge", help="fold stranger OTHER into stranger ID (the same person "
                                       "seen as two)")
    mrg.add_argument("face_id", metavar="ID", help="stranger-N, the one kept")
    mrg.add_argument("other", metavar="OTHER", help="stranger-M, folded into ID")
    for q in (ign, fgt, mrg):
        q.add_argument("--server", default=None, metavar="URL",
                       help="do it in a running serve (people.strangers on): its web address "
                            "(token: $LIVEFACES_TOKEN); without it, in the local folder")
    for q in (add, lst, rm, unk, nm, strs, ign, fgt, mrg):
        if q in (add, lst, rm, nm, strs, ign, fgt, mrg):
            add_people_argument(q, default_env=True)
        q.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="more log output on stderr (-v info, -vv debug)")


def _folder(args: argparse.Namespace) -> Path:
    from ..identify import default_people_dir

    return args.people if args.people is not None else default_people_dir()


#: embeddings closer than this are one photo given twice (or a re-saved copy of it: a JPEG
#: re-encoded at quality 85 is 0.02 from its original, shrunk to 80 % 0.06); two photos of one
#: person (the knn example's training photos) are 0.37-0.42 apart
SAME_PHOTO = 0.03


def _add(args: argparse.Namespace, root: Path) -> int:
    from ..identify import Recognizer
    from ..identify.gallery import check_name, person_embeddings, save_person, thumbnail

    check_name(args.name)
    recognizer = Recognizer()  # before any work: the extra may be missing
    detector = make_detector(args)
    known = list(person_embeddings(root, args.name))
    new, again = [], []
    for photo in args.photos:
        image = read_image(photo, args.max_pixels)
        faces = main_face(detector.detect(image))
        if len(faces) != 1:
            what = "no face found" if not len(faces) else f"{len(faces)} faces found"
            raise InputError(f"{photo}: {what}; each photo must show exactly one face "
                             f"(crop it to {args.name}'s face); nothing was added")
        emb = recognizer.embed(image, faces)[0]
        if any(float(np.linalg.norm(emb - k)) < SAME_PHOTO for k in known):
            again.append(str(photo))  # the same photo twice: one more copy adds no evidence
            continue
        known.append(emb)
        new.append((Path(photo).name, emb, thumbnail(image, faces.boxes[0])))
    skipped = (f"; skipped {len(again)} already there ({', '.join(again)})" if again else "")
    if not new:
        print(printable(f"{args.name}: nothing added{skipped}"))
        return EXIT_OK
    person = save_person(root, args.name, new)
    print(printable(f"{args.name}: added {len(new)} photo{'s' if len(new) != 1 else ''} "
                    f"({len(person.photos)} in all) to {root}{skipped}"))
    return EXIT_OK


def _list(root: Path) -> int:
    from ..identify.gallery import check_people_dir, read_people

    check_people_dir(root)
    people = read_people(root)
    for person in people:
        photos = [p for p in person.photos if isinstance(p, dict)]
        added = max((str(p.get("added", "")) for p in photos), default="")
        # person.json is text anyone with the folder could edit: printed escaped
        sources = ", ".join(printable(p.get("source", "?")) for p in photos)
        print(f"{person.name}: {len(person.photos)} photo{'s' if len(person.photos) != 1 else ''} "
              f"({sources}), last added {printable(added) or '?'}")
    print(f"{len(people)} known {'person' if len(people) == 1 else 'people'} in {root}")
    return EXIT_OK


def _remove(args: argparse.Namespace, root: Path) -> int:
    from ..identify.gallery import check_private, remove_person

    if root.is_dir():
        check_private(root, removing=root / args.name)
    remove_person(root, args.name)
    print(printable(f"{args.name}: removed from {root}"))
    return EXIT_OK


def _call(server: str, path: str, body: dict | None = None) -> Any:
    """One request to a running serve's API: the decoded JSON (or bytes for a .jpg); a
    one-line PeopleError for anything that goes wrong. The token comes from
    $LIVEFACES_TOKEN and is never shown."""
    import json
    import os
    import urllib.error
    import urllib.parse
    import urllib.request

    from ..errors import PeopleError
    from ..redact import redact_url

    parts = urllib.parse.urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PeopleError(f"--server: give the serve web address, e.g. http://localhost:8080 "
                          f"(got {redact_url(server)!r})")
    url = server.rstrip("/") + path
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    token = os.environ.get("LIVEFACES_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    where = printable(redact_url(server))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - http(s) only, checked
            raw = r.read()
    except urllib.error.HTTPError as e:
        try:
            reason = json.loads(e.read()).get("error") or e.reason
        except (ValueError, AttributeError):
            reason = e.reason
        if e.code == 401:
            reason = "the server wants its web token: export LIVEFACES_TOKEN=..."
        raise PeopleError(f"{where}: {printable(reason)} (HTTP {e.code})") from None
    except (urllib.error.URLError, OSError) as e:
        why = getattr(e, "reason", e)
        raise PeopleError(f"{where}: cannot reach the server ({printable(why)})") from None
    if path.endswith(".jpg"):
        return raw
    try:
        answer = json.loads(raw)
    except ValueError:  # UnicodeDecodeError too
        answer = None
    if not isinstance(answer, dict):
        raise PeopleError(f"{where}: not a livefaces serve answer ({path} is not a JSON object)")
    return answer


#: what a terminal would act on: C0/C1 control characters (newlines, ESC of ANSI sequences),
#: DEL, line/paragraph separators and the bidirectional overrides that reorder what is shown


def _quote(face_id: object) -> str:
    import urllib.parse

    return urllib.parse.quote(str(face_id), safe="")


def _unknown(args: argparse.Namespace) -> int:
    from ..errors import PeopleError

    info = _call(args.server, "/api/people")
    if not info.get("enabled"):
        raise PeopleError(f"{args.server}: identification is off there (no 'people:' in its "
                          "configuration)")
    faces = info.get("unknown", [])
    if not isinstance(faces, list) or not all(isinstance(f, dict) for f in faces):
        raise PeopleError(f"{printable(args.server)}: not a livefaces serve answer (/api/people)")
    if args.save is not None:
        if args.save.exists() and not args.save.is_dir():
            raise InputError(f"--save {printable(args.save)}: not a folder (give a folder for the "
                             "crops; it is made if missing)")
        try:
            args.save.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"--save {printable(args.save)}: cannot make the folder "
                             f"({printable(e.strerror or e)})") from None
    for f in faces:
        line = (f"{printable(f.get('id'))}  camera {printable(f.get('camera'))}, "
                f"seen {printable(f.get('seen'))}")
        if args.save is not None:  # a file name of safe characters, whatever the server says
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(f.get("id"))).lstrip(".")
            target = args.save / (safe + ".jpg")
            from ..outfile import write_output  # whole files only; a link is written through

            write_output(target, _call(args.server, f"/api/people/unknown/{_quote(f.get('id'))}.jpg"))
            line += f"  -> {printable(target)}"
        print(line)
    say(f"{len(faces)} unknown face{'s' if len(faces) != 1 else ''} kept; name one with "
        f"'livefaces people name ID NAME --server {printable(args.server)}'")
    return EXIT_OK


def _name(args: argparse.Namespace) -> int:
    from ..identify.gallery import check_name
    from ..identify.strangers import ID_RE

    check_name(args.name)  # the same rule as the server's, before asking it
    if ID_RE.match(args.face_id):
        got = _call(args.server, f"/api/people/strangers/{_quote(args.face_id)}", {"name": args.name})
        print(f"{printable(args.face_id)}: enrolled as {printable(args.name)} "
              f"({len(got.get('people', []))} known people)")
        return EXIT_OK
    got = _call(args.server, f"/api/people/unknown/{_quote(args.face_id)}", {"name": args.name})
    print(f"{printable(args.face_id)}: added to the people as {printable(got.get('name', args.name))} "
          f"({len(got.get('people', []))} known people)")
    return EXIT_OK


def _strangers(args: argparse.Namespace, root: Path) -> int:
    """strangers / ignore / forget / name (without --server): the local stranger store."""
    from ..identify.gallery import check_name, check_people_dir
    from ..identify.strangers import ID_RE, StrangerStore

    action = args.people_action
    if action == "name":
        check_name(args.name)
        if not ID_RE.match(args.face_id):
            raise InputError(f"{args.face_id!r} is not a stranger id (stranger-N, as 'livefaces "
                             "people strangers' lists them); an unknown face a running serve "
                             "keeps (camera.track) is named with --server URL")
    check_people_dir(root)
    store = StrangerStore.open(root)
    if action == "strangers":
        for st in store.strangers():
            j = st.to_json()
            views = f"{j['views']} view{'s' if j['views'] != 1 else ''}"
            # the index is a file anyone with the folder could edit: printed escaped
            print(printable(f"{st.id}  seen {j['seen']}x on {', '.join(j['cameras'])}, "
                            f"{j['first_seen']} .. {j['last_seen']}, {views}"
                            + ("  (ignored)" if st.ignored else "")))
        n = len(store)
        if n:
            say("name one with 'livefaces people name stranger-N NAME', or 'ignore'/'forget' it")
        print(f"{n} stranger{'s' if n != 1 else ''} in {printable(root)}")
        return EXIT_OK
    if action == "name":
        k = store.name(args.face_id, args.name)
        store.save()
        print(printable(f"{args.face_id}: {k} view{'s' if k != 1 else ''} enrolled as {args.name} "
                        f"in {root}"))
        return EXIT_OK
    if action == "merge":
        merged = store.merge(args.face_id, args.other)
        what = f"{args.other} merged in ({len(merged.views)} views kept)"
    elif action == "ignore":
        store.ignore(args.face_id)
        what = "ignored (kept as a negative: not reported again)"
    else:
        store.forget(args.face_id)
        what = "forgotten (deleted)"
    store.save()
    print(printable(f"{args.face_id}: {what}"))
    return EXIT_OK


def _remote_stranger(args: argparse.Namespace) -> int:
    from ..identify.strangers import ID_RE

    if not ID_RE.match(args.face_id):
        raise InputError(f"{args.face_id!r} is not a stranger id (stranger-N)")
    body = {"action": args.people_action}
    if args.people_action == "merge":
        body["other"] = args.other
    _call(args.server, f"/api/people/strangers/{_quote(args.face_id)}", body)
    what = ("ignored" if args.people_action == "ignore" else "forgotten"
            if args.people_action == "forget" else f"{args.other} merged in")
    print(f"{printable(args.face_id)}: {what} by {printable(args.server)}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.people_action == "unknown":
        return _unknown(args)
    if args.people_action in ("ignore", "forget", "merge") and args.server is not None:
        return _remote_stranger(args)
    if args.people_action == "name" and args.server is not None:
        return _name(args)
    root = _folder(args)
    if args.people_action in ("strangers", "ignore", "forget", "name", "merge"):
        return _strangers(args, root)
    if args.people_action == "add":
        return _add(args, root)
    if args.people_action == "list":
        return _list(root)
    return _remove(args, root)
