"""The live pipeline on real footage (issue 19): real clips of ../shared/media played over
RTSP in real time (tests/rtsp_server.py), the default pipeline in this process, its results
compared with the full detector on the same frames.

* faces that turn away and back keep being found (a talk show: heads turning, cuts);
* a face that moves too slowly for frame differences, then sits still, is found again at
  once (no waiting for the idle interval);
* a scene cut ends the tracks, and no id, name or unblurred face crosses it (the hamilton
  clip's cuts).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from live_helpers import RtspServer
from test_live_rtsp import _has_gst_rtsp

from livefaces.geometry import iou_matrix
from livefaces.pipeline import Pipeline
from livefaces.publish import BaseSink

pytestmark = pytest.mark.skipif(not _has_gst_rtsp(), reason=(
    "gst-rtsp-server missing: run scripts/install_system_deps.sh (scripts/test.sh does)"))

HAMILTON = "media/ageitgey__face_recognition/examples/short_hamilton_clip.mp4"
TALK_SHOW = "media/Qengineering__Face-Recognition-Jetson-Nano/Norton_A.mp4"


def clip_frames(path: Path, folder: Path, first: int = 0, count: int | None = None) -> Path:
    """Frames ``first``.. of a video as the JPEG folder the RTSP server plays."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    with av.open(str(path)) as c:
        k = 0
        for i, f in enumerate(c.decode(video=0)):
            if i < first:
                continue
            if count is not None and k >= count:
                break
            cv2.imwrite(str(folder / f"frame{k:05d}.jpg"), f.to_ndarray(format="bgr24"),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            k += 1
    return folder


class Keep(BaseSink):
    """Every result's faces; every ``every``-th frame's image; every event."""

    result_queue = 512

    def __init__(self, every: int = 2, truth=None) -> None:  # noqa: ANN001
        self.lock = threading.Lock()
        self.every, self.n, self.truth = every, 0, truth
        self.results: list = []
        self.events: list[dict] = []

    def on_result(self, r) -> None:  # noqa: ANN001
        with self.lock:
            self.n += 1
            image = r.frame.image if self.n % self.every == 0 else None
            self.results.append((r.frame.captured, image, r.faces.boxes.copy(),
                                 r.track_ids.copy(), r.cut, r.mode,
                                 None if self.truth is None else self.truth(r.frame.image)))

    def on_event(self, e: dict) -> None:
        with self.lock:
            self.events.append(e)


def play(folder: Path, fps: int, seconds: float, truth=None, **kw) -> Keep:  # noqa: ANN001, ANN003
    keep = Keep(truth=truth)
    srv = RtspServer(folder, None, "--fps", str(fps), "--bitrate", "3000").start()
    try:
        p = Pipeline([srv.url], sinks=[keep], **kw)
        p.start()
        try:
            deadline = time.monotonic() + 30
            while not keep.results and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(seconds)
        finally:
            p.stop(5)
    finally:
        srv.kill()
    return keep


def recall_of(keep: Keep, detector) -> tuple[float, int]:  # noqa: ANN001
    """Of the faces the full detector finds (>= 40 px, score >= 0.9) on the kept frames, the
    share the live pipeline reported on the same frame (IoU >= 0.5)."""
    found = total = 0
    for _, image, boxes, *_ in keep.results:
        if image is None:
            continue
        ref = detector.detect(image)
        big = (np.minimum(ref.boxes[:, 2] - ref.boxes[:, 0], ref.boxes[:, 3] - ref.boxes[:, 1])
               >= 40) & (ref.scores >= 0.9)
        iou = iou_matrix(ref.boxes[big], boxes)
        total += int(big.sum())
        found += int((iou.max(axis=1) >= 0.5).sum()) if iou.size else 0
    return (found / total if total else 1.0), total


def test_faces_that_turn_away_and_back_keep_being_found(shared, tmp_path, detector):
    """Norton_A: a talk show, guests on a sofa turning their heads and laughing, hard cuts;
    its first 12 s. Before issue 19 refinement lost such faces and nothing looked for them
    again (recall 0.85 over the whole clip, faces missing for 1.7 s)."""
    frames = clip_frames(shared / TALK_SHOW, tmp_path / "talk", first=0, count=290)
    keep = play(frames, 24, 12.0)
    recall, total = recall_of(keep, detector)
    assert total >= 80, total
    assert recall >= 0.95, (recall, total)


def test_a_face_that_moves_too_slowly_for_frame_differences_is_found_again_at_once(
        tmp_path, grace_hopper, detector):
    """A face still for 2 s, then cross-faded over 1.6 s to a place 1.5 face widths away (a
    seated person who leans over, a slow pan: no two frames differ by more than a few grey
    levels), then still there: its track cannot follow, and no frame differs enough from the
    one before to count as motion. It must be reported at its new place within 0.5 s of being
    fully there. Before issue 19 nothing looked for it until the idle interval (5 s): it was
    gone for the 2.8 s it stayed, every time."""
    w, h = 960, 540
    face = cv2.resize(grace_hopper, (200, 234), interpolation=cv2.INTER_AREA).astype(np.float32)
    folder = tmp_path / "lean"
    folder.mkdir()
    left, right = 150, 150 + 330
    for i in range(200):
        # 0-49 left; 50-89 left -> right; 90-159 right; 160-199 right -> left; then it loops
        k = 0.0 if i < 50 else (i - 50) / 40 if i < 90 else 1.0 if i < 160 else 1 - (i - 160) / 40
        img = np.full((h, w, 3), 70, np.float32)
        for x, a in ((left, 1 - k), (right, k)):
            img[150:150 + 234, x:x + 200] = a * face + (1 - a) * img[150:150 + 234, x:x + 200]
        cv2.imwrite(str(folder / f"frame{i:05d}.jpg"),
                    cv2.cvtColor(img.round().astype(np.uint8), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])

    def side(img: np.ndarray) -> str | None:
        """Where the face is fully shown (None while it fades): from its pixels."""
        full = [x for x in (left, right)
                if np.abs(img[150:384, x:x + 200].astype(np.float32) - face).mean() < 8]
        return ("right" if full[0] == right else "left") if len(full) == 1 else None

    keep = play(folder, 25, 17.0, truth=side)
    # from the first frame showing the face fully at its new place, how long until a face is
    # reported there (inf: not before it moved again)
    waits, since, where = [], None, None
    for t, _, boxes, _, _, _, now in keep.results:
        if now is None:
            continue
        if now != where:
            if since is not None:
                waits.append(float("inf"))
            since, where = (t if where is not None else None), now
        there = any((((b[0] + b[2]) / 2) > 450) == (now == "right") for b in boxes)
        if since is not None and there:
            waits.append(round(t - since, 3))
            since = None
    assert len(waits) >= 3, waits
    assert max(waits) <= 0.5, waits


def test_a_scene_cut_ends_the_tracks_and_no_id_crosses_it(shared, tmp_path):
    """short_hamilton_clip has cuts (stage, audience, stage): at each, every track ends with
    reason scene_cut, and the tracks on either side of a cut are different ones."""
    frames = clip_frames(shared / HAMILTON, tmp_path / "hamilton")
    keep = play(frames, 30, 10.0)
    cuts = [i for i, r in enumerate(keep.results) if r[4]]
    assert len(cuts) >= 2, cuts  # 3 cuts in 9.2 s, and the loop back to its start
    lost = [e for e in keep.events if e["type"] == "face.lost"]
    assert any(e["reason"] == "scene_cut" for e in lost), [e["reason"] for e in lost]
    shots = np.split(np.arange(len(keep.results)), cuts)
    ids = [set().union(*(set(keep.results[i][3].tolist()) for i in shot)) for shot in shots if len(shot)]
    for a, b in zip(ids, ids[1:]):
        assert not (a & b), (a, b)


class KeepNamed(BaseSink):
    """Each result's shot (from its image: see ``shot_of``), faces, names, and whether each
    face is left unblurred by ``--blur-unknown`` (``blur.blur_unknown``, as recordings and
    serve's view apply it); every event."""

    result_queue = 512

    def __init__(self, shot_of) -> None:  # noqa: ANN001
        self.lock = threading.Lock()
        self.shot_of = shot_of
        self.results: list = []
        self.events: list[dict] = []

    def on_result(self, r) -> None:  # noqa: ANN001
        from livefaces.blur import blur_unknown

        img = r.frame.image
        out = blur_unknown(r).frame.image
        clear = []
        for x1, y1, x2, y2 in r.faces.boxes.astype(int):
            a, b = max(0, x1), max(0, y1)
            region = (slice(b, max(b + 1, y2)), slice(a, max(a + 1, x2)))
            clear.append(bool(np.array_equal(out[region], img[region])))
        names = [i.name for i in r.identities] if len(r.identities) == len(r.faces) else []
        with self.lock:
            self.results.append((self.shot_of(img), names, clear, r.track_ids.tolist()))

    def on_event(self, e: dict) -> None:
        with self.lock:
            self.events.append(e)


def test_no_name_and_no_unblurred_face_crosses_a_scene_cut(shared, tmp_path):
    """Issue 19's privacy failure, end to end: the hamilton clip's performer enrolled (with
    ``livefaces people add``, from frames of his shot), the clip watched over RTSP with live
    identification and ``--blur-unknown``'s blurring. After the cut to the audience his track
    had jumped onto another man, drawn with his name and left unblurred among pixelated
    strangers. Now: he is named (and left clear) in his shot, and in the audience shot nobody
    carries his name and every face is blurred."""
    pytest.importorskip("dlib", reason="needs the identify extra (pip install '.[identify]')")
    import av
    from conftest import run_cli

    from livefaces.identify.live import LiveIdentifier

    # the clip's shots, by frame: 0-19 stage, 20-81 a singer, 82-210 the performer alone,
    # 211-274 the audience (four faces); each played frame is placed by its nearest thumbnail
    thumbs, frames = [], tmp_path / "hamilton"
    frames.mkdir()
    with av.open(str(shared / HAMILTON)) as c:
        for i, f in enumerate(c.decode(video=0)):
            bgr = f.to_ndarray(format="bgr24")
            cv2.imwrite(str(frames / f"frame{i:05d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
            thumbs.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (32, 18),
                                     interpolation=cv2.INTER_AREA).astype(np.float32))
    assert len(thumbs) >= 270, len(thumbs)
    stack = np.stack(thumbs)

    def shot_of(rgb: np.ndarray) -> str:
        t = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (32, 18),
                       interpolation=cv2.INTER_AREA).astype(np.float32)
        i = int(np.argmin(((stack - t) ** 2).sum(axis=(1, 2))))
        # a frame or two either side of a cut may be placed on the wrong side: not judged
        if any(abs(i - c) <= 2 for c in (20, 82, 211)):
            return "edge"
        return "performer" if 82 <= i < 211 else "audience" if i >= 211 else "other"

    people = tmp_path / "people"
    photos = [str(frames / f"frame{i:05d}.jpg") for i in (100, 120, 140, 170, 190)]
    r = run_cli("people", "add", "performer", *photos, "--people", str(people))
    assert r.returncode == 0, r.stderr

    keep = KeepNamed(shot_of)
    srv = RtspServer(frames, None, "--fps", "30", "--bitrate", "3000").start()
    try:
        p = Pipeline([srv.url], sinks=[keep], identifier=LiveIdentifier(people))
        p.start()
        try:
            deadline = time.monotonic() + 30
            while not keep.results and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(20.0)  # a little over two loops of the 9.2 s clip
        finally:
            p.stop(5)
    finally:
        srv.kill()

    performer = [(n, c) for s, n, c, _ in keep.results if s == "performer"]
    audience = [(n, c) for s, n, c, _ in keep.results if s == "audience"]
    assert len(audience) >= 60 and sum(len(c) for _, c in audience) >= 100, len(audience)
    named = [(n, c) for n, c in performer if "performer" in n]
    # not vacuous: he is recognised in his own shot, and a recognised face is left clear
    assert len(named) >= 30, (len(named), len(performer))
    # (a few frames: a blurred hand or neighbour's margin reaches into his box)
    left = [c[n.index("performer")] for n, c in named]
    assert sum(left) >= 0.9 * len(left), (sum(left), len(left))
    # the audience shot: nobody carries his name, and no face is left unblurred
    wrong = [n for n, _ in audience if any(x is not None for x in n)]
    assert not wrong, wrong[:5]
    clear = [c for _, c in audience if any(c)]
    assert not clear, clear[:5]
    # events: the name is only ever settled or revoked, and his tracks never reach the audience
    identified = [e for e in keep.events if e["type"] == "face.identified"]
    assert any(e["identity"]["name"] == "performer" for e in identified)
    assert all(e["identity"]["name"] in ("performer", None) for e in identified)
    his = {t for s, n, _, ids in keep.results if s == "performer"
           for t, x in zip(ids, n) if x == "performer"}
    theirs = {t for s, _, _, ids in keep.results if s == "audience" for t in ids}
    assert his and not (his & theirs), (his, theirs)
    print(f"named {len(named)} of {len(performer)} performer-shot results, "
          f"{sum(left)} left clear; audience results {len(audience)}")
