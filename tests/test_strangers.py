"""Strangers (issue 23 §2): unknown faces clustered into strangers with stable ids, kept in the
people folder's ``.strangers/`` (private, no pickle), bounded, behind quality gates; the
``livefaces people strangers|name|ignore|forget`` commands. Real photos, real dlib."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli

pytest.importorskip("dlib", reason="the identify extra (scripts/test.sh installs it with [dev])")

from livefaces.identify.gallery import Gallery, read_people  # noqa: E402
from livefaces.identify.strangers import (  # noqa: E402
    STRANGERS_DIR,
    StrangerOptions,
    StrangerStore,
    quality,
)
from livefaces.imageio import read_image  # noqa: E402

KNN = "media/ageitgey__face_recognition/examples/knn_examples"
DAY = 86400.0
T0 = 1_800_000_000.0  # a fixed "now": 2027-01-15


@pytest.fixture(scope="module")
def recognizer():
    from livefaces.identify import Recognizer

    return Recognizer()


@pytest.fixture(scope="module")
def faces(shared, detector, recognizer):
    """name -> (image, box, landmarks, embedding) of the main face of each training photo."""
    out = {}
    for path in sorted((shared / KNN / "train").glob("*/*")):
        image = read_image(path)
        found = detector.detect(image)
        i = int(np.argmax(found.boxes[:, 2] - found.boxes[:, 0]))
        one = found.select(np.array([i]))
        out[f"{path.parent.name}/{path.name}"] = (image, one.boxes[0], one.landmarks[0],
                                                  recognizer.embed(image, one)[0])
    return out


def _see(store, faces, key, camera="door", now=T0):
    image, box, lm, emb = faces[key]
    return store.observe(emb, image, box, lm, camera, now=now)


def _age(people: Path, seconds: float = 120.0) -> None:
    """Make the store's files look written ``seconds`` ago (orphans are deleted only when
    older than strangers.ORPHAN_AGE)."""
    import time as _time

    t = _time.time() - seconds
    for p in (people / STRANGERS_DIR).iterdir():
        os.utime(p, (t, t))


def test_a_fresh_unreferenced_thumbnail_is_not_deleted_by_another_writers_save(tmp_path, faces):
    """The worker wrote a view's thumbnail and has not saved yet; the CLI saves meanwhile:
    the thumbnail stays (deleted only once older than ORPHAN_AGE), so the worker's next save
    refers to a file that exists, and naming that stranger enrols every view."""
    people = tmp_path / "people"
    worker = StrangerStore.open(people)
    a = _see(worker, faces, "obama/obama.jpg", now=T0)
    worker.save(now=T0)
    _see(worker, faces, "obama/obama2.jpg", now=T0 + 1)  # thumbnail written, not saved
    cli = StrangerStore.open(people)
    cli.save(now=T0 + 2)
    worker.save(now=T0 + 3)
    assert all(p.is_file() for p in (people / STRANGERS_DIR / v["thumbnail"]
                                     for v in StrangerStore.open(people).get(a.id).views))
    store = StrangerStore.open(people)
    assert store.name(a.id, "barack") == 2


def _private(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p


def test_same_person_one_id_two_people_two_ids_across_a_reload(tmp_path, faces):
    people = tmp_path / "people"
    store = StrangerStore.open(people)
    a = _see(store, faces, "obama/obama.jpg", "door", T0)
    b = _see(store, faces, "biden/biden.jpg", "garden", T0 + 5)
    assert a is not None and b is not None and a.new and b.new and a.id != b.id
    assert a.id == "stranger-1" and b.id == "stranger-2"
    store.save(now=T0 + 5)
    _private(people)
    assert read_people(people) == []  # the store is never read as a person
    assert len(Gallery.load(people)) == 0

    again = StrangerStore.open(people)  # a new process, say
    a2 = _see(again, faces, "obama/obama2.jpg", "garden", T0 + 60)
    b2 = _see(again, faces, "biden/biden2.jpg", "door", T0 + 61)
    assert (a2.id, a2.new, a2.kept) == (a.id, False, True)
    assert (b2.id, b2.new) == (b.id, False)
    assert a2.distance <= again.options.threshold
    again.save(now=T0 + 61)
    third = StrangerStore.open(people)
    ob = third.get(a.id)
    assert ob.cameras == ["door", "garden"] and ob.seen == 2 and len(ob.views) == 2
    assert ob.first_seen == T0 and ob.last_seen == T0 + 60
    assert third.thumbnail_path(a.id).is_file()
    assert ob.to_json(now=T0 + 60)["new_today"] and not ob.to_json(now=T0 + 2 * DAY)["new_today"]
    # a new id is never an old one's, even after that one is forgotten
    third.forget(b.id)
    _age(people)  # files written a while ago (a fresh one may be another writer's, not yet saved)
    third.save(now=T0 + 62)
    c = _see(third, faces, "rose_leslie/img1.jpg", "door", T0 + 63)
    assert c.new and c.id == "stranger-3"
    files = {p.name for p in (people / STRANGERS_DIR).iterdir()}
    assert not any(f.startswith("stranger-2.") for f in files)  # forgotten: its views deleted


def test_no_pickle_and_a_damaged_store_is_one_clear_error(tmp_path, faces):
    from livefaces.errors import PeopleError

    people = tmp_path / "people"
    store = StrangerStore.open(people)
    _see(store, faces, "obama/obama.jpg")
    store.save(now=T0)
    f = people / STRANGERS_DIR / "strangers.npz"
    with np.load(f, allow_pickle=False) as z:  # readable without pickle
        assert set(z.files) == {"embeddings", "owners", "index"}
    f.write_bytes(b"not a zip")
    with pytest.raises(PeopleError, match="damaged stranger store.*delete"):
        StrangerStore.open(people)
    os.chmod(f, 0o644)
    with pytest.raises(PeopleError, match="open to other users"):
        StrangerStore.open(people)


def test_retention_and_the_count_bound_drop_the_oldest(tmp_path, faces):
    people = tmp_path / "people"
    store = StrangerStore.open(people, StrangerOptions(retention_days=7, max_strangers=2))
    old = _see(store, faces, "obama/obama.jpg", now=T0)
    mid = _see(store, faces, "biden/biden.jpg", now=T0 + 3 * DAY)
    new = _see(store, faces, "rose_leslie/img1.jpg", now=T0 + 4 * DAY)
    store.save(now=T0 + 4 * DAY)  # three strangers, room for two: the least recent goes
    assert [s.id for s in StrangerStore.open(people).strangers()] == [new.id, mid.id]
    store = StrangerStore.open(people, StrangerOptions(retention_days=7, max_strangers=2))
    _age(people)
    store.save(now=T0 + 10.5 * DAY)  # mid last seen 7.5 days before: gone; new 6.5: kept
    assert [s.id for s in StrangerStore.open(people).strangers()] == [new.id]
    names = {p.name for p in (people / STRANGERS_DIR).iterdir()}
    assert not any(n.startswith((old.id + ".", mid.id + ".")) for n in names)


def test_quality_gates_refuse_a_tiny_crop_and_a_blurred_face(tmp_path, faces):
    store = StrangerStore.open(tmp_path / "people")
    image, box, lm, emb = faces["obama/obama.jpg"]
    q = quality(image, box, lm)
    assert q.refusal(store.options) is None
    # the same face shrunk to 22x28 px (Frigate #23450)
    x1, y1, x2, y2 = box
    sx, sy = 22 / (x2 - x1), 28 / (y2 - y1)
    small = cv2.resize(image, None, fx=sx, fy=sy, interpolation=cv2.INTER_AREA)
    sbox = box * np.array([sx, sy, sx, sy], np.float32)
    slm = lm * np.array([sx, sy], np.float32)
    assert "px" in quality(small, sbox, slm).refusal(store.options)
    assert store.observe(emb, small, sbox, slm, "door", now=T0) is None
    # the same face blurred
    blurred = cv2.GaussianBlur(image, (0, 0), (x2 - x1) / 30)
    assert "blurred" in quality(blurred, box, lm).refusal(store.options)
    assert store.observe(emb, blurred, box, lm, "door", now=T0) is None
    # a profile: the nose at the side of the eye line
    turned = lm.copy()
    turned[2, 0] = turned[1, 0] + 5
    assert "turned" in quality(image, box, turned).refusal(store.options)
    assert len(store) == 0


def test_views_are_bounded_and_merge_keeps_the_best(tmp_path, faces):
    store = StrangerStore.open(tmp_path / "people", StrangerOptions(max_views=1))
    a = _see(store, faces, "obama/obama.jpg")
    b = _see(store, faces, "obama/obama2.jpg", now=T0 + 1)
    assert a.id == b.id and len(store.get(a.id).views) == 1
    c = _see(store, faces, "biden/biden.jpg", now=T0 + 2)
    merged = store.merge(a.id, c.id)
    assert len(merged.views) == 1 and merged.seen == 3 and len(store) == 1


def test_a_second_writer_wins_forget_and_ignore_over_a_running_store(tmp_path, faces):
    """serve's worker holds the store in memory while 'livefaces people forget|ignore' edits
    the file: the worker's next save keeps those decisions (no stranger resurrected)."""
    people = tmp_path / "people"
    worker = StrangerStore.open(people)
    a = _see(worker, faces, "obama/obama.jpg", now=T0)
    b = _see(worker, faces, "biden/biden.jpg", now=T0 + 1)
    worker.save(now=T0 + 1)
    cli = StrangerStore.open(people)
    cli.forget(a.id)
    cli.ignore(b.id)
    cli.save(now=T0 + 2)
    c = _see(worker, faces, "rose_leslie/img1.jpg", now=T0 + 3)
    again = _see(worker, faces, "obama/obama2.jpg", now=T0 + 4)
    worker.save(now=T0 + 4)
    got = {s.id: s for s in StrangerStore.open(people).strangers()}
    assert a.id not in got and got[b.id].ignored and c.id in got
    assert again.id in got and again.id not in (a.id, b.id, c.id)  # ids are never reused


def _cli_store(tmp_path, faces) -> tuple[Path, str, str]:
    people = tmp_path / "people"
    store = StrangerStore.open(people)
    a = _see(store, faces, "obama/obama.jpg", "door", T0)
    _see(store, faces, "obama/obama2.jpg", "garden", T0 + 1)
    b = _see(store, faces, "biden/biden.jpg", "door", T0 + 2)
    store.save(now=T0 + 2)
    return people, a.id, b.id


def test_cli_strangers_name_ignore_forget(tmp_path, faces, monkeypatch):
    people, a, b = _cli_store(tmp_path, faces)
    monkeypatch.setenv("LIVEFACES_PEOPLE", str(people))
    r = run_cli("people", "strangers")
    assert r.returncode == 0, r.stderr
    assert a in r.stdout and b in r.stdout and "door, garden" in r.stdout and "2 views" in r.stdout

    r = run_cli("people", "ignore", b, "--people", str(people))
    assert r.returncode == 0, r.stderr
    assert "ignored" in run_cli("people", "strangers", "--people", str(people)).stdout

    r = run_cli("people", "name", a, "barack", "--people", str(people))
    assert r.returncode == 0, r.stderr
    assert "2 views" in r.stdout
    (person,) = read_people(people)
    assert person.name == "barack" and len(person.photos) == 2
    # the enrolled views recognise another photo of him
    _img, _box, _lm, emb = faces["obama/obama2.jpg"]
    assert Gallery.load(people).match(emb).name == "barack"
    r = run_cli("people", "strangers", "--people", str(people))
    assert a not in r.stdout and b in r.stdout

    r = run_cli("people", "forget", b, "--people", str(people))
    assert r.returncode == 0, r.stderr
    assert "0 strangers" in run_cli("people", "strangers", "--people", str(people)).stdout
    _private(people)

    r = run_cli("people", "forget", b, "--people", str(people))
    assert r.returncode == 3 and r.stderr.count("\n") == 1 and "no such stranger" in r.stderr
    r = run_cli("people", "ignore", "bob", "--people", str(people))
    assert r.returncode == 3 and "not a stranger id" in r.stderr and "Traceback" not in r.stderr


def _track_until_settled(ident, camera, tid, image, face, t0):
    """Feed one track's face until its identity settles (or 60 s pass); the last Identified
    events and the identity."""
    import time as _time

    from livefaces.types import Frame, FrameResult

    votes = ident.camera(camera)
    events = []
    deadline = _time.monotonic() + 60
    k = 0
    while _time.monotonic() < deadline:
        r = FrameResult(Frame(image, camera, k, None, _time.monotonic()), face, True,
                        np.array([tid]))
        votes.observe(r, t0 + k)
        events += ident.poll()
        idn = votes.identity(tid)
        if idn.settled and idn.votes >= 3 and idn.stranger is not None:
            break
        k += 1
        _time.sleep(0.05)
    return events, votes.identity(tid)


def test_live_a_stranger_seen_again_on_another_camera_gets_the_same_id(tmp_path, faces, detector):
    """LiveIdentifier with strangers on (its real worker process): an unknown track settles
    with a stranger id, announced in a face.identified-style Identified; another photo of the
    same man on another camera (a new track) gets the same id; someone else another id; the
    store is on disk when the worker leaves; strangers off (the default) adds no key."""
    from livefaces.identify.gallery import save_person, thumbnail
    from livefaces.identify.live import IdentifyOptions, LiveIdentifier

    people = tmp_path / "people"
    image, box, _lm, emb = faces["alex_lacamoire/img1.jpg"]
    save_person(people, "alex", [("img1.jpg", emb, thumbnail(image, box))])

    def face_of(key):
        img, b, lm, _e = faces[key]
        from livefaces.types import Faces

        return img, Faces(b[None].astype(np.float32), np.array([0.99], np.float32),
                          lm[None].astype(np.float32))

    opts = IdentifyOptions(first_spacing=0.0, interval=0.0, min_votes=2,
                           strangers=StrangerOptions())
    ident = LiveIdentifier(people, opts).start()
    try:
        ev1, id1 = _track_until_settled(ident, "door", 1, *face_of("obama/obama.jpg"), 0.0)
        ev2, id2 = _track_until_settled(ident, "garden", 2, *face_of("obama/obama2.jpg"), 100.0)
        ev3, id3 = _track_until_settled(ident, "door", 3, *face_of("biden/biden.jpg"), 200.0)
    finally:
        ident.close(10.0)
    assert id1.name is None and id1.stranger is not None
    assert id2.stranger == id1.stranger and id3.stranger not in (None, id1.stranger)
    announced = [e for e in ev1 if e.track_id == 1]
    assert announced and announced[-1].identity.stranger == id1.stranger
    assert announced[-1].identity.to_json()["stranger"] == id1.stranger
    store = StrangerStore.open(people)
    got = {s.id: s for s in store.strangers()}
    assert set(got) == {id1.stranger, id3.stranger}
    assert got[id1.stranger].cameras == ["door", "garden"]
    _private(people)
    from livefaces.types import Identity

    assert "stranger" not in Identity(None, 0.7, 3, True).to_json()  # off: nothing added


def test_serve_two_strangers_appearing_twice_on_rtsp_keep_their_ids(tmp_path, shared, faces):
    """serve's real web server and a real RTSP stream, looping: Obama, nobody, Alex, nobody
    (neither enrolled: only Biden is). Each appearance is a new track; every track of one man
    gets that man's stranger id (face.identified's identity.stranger), the two men two ids,
    and /api/people lists them with both cameras (the same stream twice)."""
    import json
    import time
    import urllib.request

    from live_helpers import RtspServer, start_serve_cli, write_face_frames
    from test_live_rtsp import _has_gst_rtsp

    from livefaces.identify.gallery import save_person, thumbnail

    if not _has_gst_rtsp():
        pytest.skip("gst-rtsp-server (python3-gi) not available")
    people = tmp_path / "people"
    image, box, _lm, emb = faces["biden/biden.jpg"]
    save_person(people, "biden", [("biden.jpg", emb, thumbnail(image, box))])

    def crop(key):
        img, (x1, y1, x2, y2), _l, _e = faces[key]
        m = 0.35 * (x2 - x1)
        return np.ascontiguousarray(img[int(max(0, y1 - m)):int(y2 + m), int(max(0, x1 - m)):int(x2 + m)])

    frames = tmp_path / "frames"
    parts = [write_face_frames(tmp_path / "a", [crop("obama/obama.jpg")], n=50),
             write_face_frames(tmp_path / "b", [], n=25),
             write_face_frames(tmp_path / "c", [crop("alex_lacamoire/img1.jpg")], n=50),
             write_face_frames(tmp_path / "d", [], n=25)]
    frames.mkdir()
    k = 0
    for part in parts:
        for f in sorted(part.glob("*.jpg")):
            f.rename(frames / f"frame{k:05d}.jpg")
            k += 1
    server = RtspServer(frames).start()
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(f"""\
cameras:
  hall: {{url: "{server.url}", detect_fps: 5}}
  door: {{url: "{server.url}", detect_fps: 5}}
web: {{port: 0}}
people: {{folder: "{people}", strangers: true}}
detector: {{threads: 1}}
""")
    proc, lines, ready, url, _reader = start_serve_cli("serve", "--config", str(cfg))

    def api(path):
        with urllib.request.urlopen(url[0] + path, timeout=10) as r:
            return json.loads(r.read())

    def tracks_by_stranger():
        evs = api("api/events?limit=1000")["events"]
        out: dict[str, set] = {}
        for e in evs:
            s = e.get("identity", {}).get("stranger") if e["type"] == "face.identified" else None
            if s:
                out.setdefault(s, set()).add((e["source"], e["track_id"]))
        return out

    try:
        assert ready.wait(60), "serve did not start:\n" + "".join(lines)
        deadline = time.monotonic() + 120
        got: dict[str, set] = {}
        while time.monotonic() < deadline:
            got = tracks_by_stranger()
            if len(got) >= 2 and all(len({t for c, t in v if c == "hall"}) >= 2 for v in got.values()):
                break
            time.sleep(1)
        assert len(got) == 2, (got, "".join(lines[-20:]))  # two men, two ids: no split
        # each man came back (new tracks) on the hall camera, under his id
        assert all(len({t for c, t in v if c == "hall"}) >= 2 for v in got.values()), got
        listed = {s["id"]: s for s in api("api/people")["strangers"]}
        assert set(listed) == set(got)
        assert all(sorted(s["cameras"]) == ["door", "hall"] for s in listed.values()), listed
        assert all(isinstance(s["new_today"], bool) for s in listed.values()), listed
        assert "embedding" not in json.dumps(api("api/people"))
        # a thumbnail to look at; then named from the CLI, the other forgotten from the API
        first, second = sorted(got)
        with urllib.request.urlopen(url[0] + f"api/people/strangers/{first}.jpg", timeout=10) as r:
            assert r.read(2) == b"\xff\xd8"
        r = run_cli("people", "merge", first, "stranger-999", "--server", url[0])
        assert r.returncode == 3 and "no such stranger" in r.stderr, r.stderr
        r = run_cli("people", "name", first, "someone", "--server", url[0])
        assert r.returncode == 0 and "enrolled as someone" in r.stdout, r.stderr
        _forget_on_the_page(tmp_path, url[0], second)
        r = run_cli("people", "forget", second, "--server", url[0])
        assert r.returncode == 3 and "no such stranger" in r.stderr and "404" in r.stderr
        body = api("api/people")
        assert "someone" in {p["name"] for p in body["people"]}
        # (the forgotten man, seen again on the looping stream, may come back: as a new id)
        assert not {first, second} & {x["id"] for x in body["strangers"]}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except Exception:  # noqa: BLE001
            proc.kill()
        server.kill()
    _private(people)
    left = {x.id for x in StrangerStore.open(people).strangers()}
    assert not {first, second} & left and len(left) <= 1  # one named, one forgotten
    assert {p.name for p in read_people(people)} == {"biden", "someone"}


def test_cli_merge_two_strangers(tmp_path, faces):
    people, a, b = _cli_store(tmp_path, faces)
    r = run_cli("people", "merge", a, b, "--people", str(people))
    assert r.returncode == 0 and f"{b} merged in (3 views kept)" in r.stdout, r.stderr
    (only,) = StrangerStore.open(people).strangers()
    assert only.id == a and only.seen == 3 and len(only.views) == 3
    r = run_cli("people", "merge", a, a, "--people", str(people))
    assert r.returncode == 3 and "itself" in r.stderr and r.stderr.count("\n") == 1


def _forget_on_the_page(tmp_path: Path, base: str, sid: str) -> None:
    """In a real headless Chromium: the page shows the stranger's thumbnail; its 'forget'
    button deletes it (the page drops it)."""
    import asyncio

    import aiohttp
    from _chromium import Browser, open_page

    browser = Browser(tmp_path / "profile")

    async def drive() -> None:
        async with aiohttp.ClientSession() as session:
            page = await open_page(browser, session, base)
            form = f"document.querySelector('#strangers form[data-id=\"{sid}\"]')"
            await page.wait_js(f"(() => {{ const f = {form}; return f && "
                               "f.querySelector('img').naturalWidth > 0; })()", timeout=30)
            await page.eval(f"(() => {{ {form}.querySelector('button.forget').click(); "
                            "return true; })()")
            await page.wait_js(f"!{form}", timeout=30)
            await page.ws.close()

    try:
        asyncio.run(asyncio.wait_for(drive(), 90))
    finally:
        browser.close()
