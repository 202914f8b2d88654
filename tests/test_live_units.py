"""Ring buffer, redaction, tracker, schedule, events: small and fast."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from livefaces.errors import SourceError
from livefaces.events import SCHEMA, face_state, make_event, status_event
from livefaces.redact import redact_text
from livefaces.ringbuffer import Closed, RingBuffer
from livefaces.schedule import Adaptive, EveryN
from livefaces.sources import open_source, redact_url
from livefaces.track import Tracker
from livefaces.types import Faces, Frame


def test_ring_drop_oldest_keeps_newest_and_counts():
    r: RingBuffer[int] = RingBuffer(3, "drop_oldest")
    for i in range(10):
        assert r.put(i)
    assert r.dropped == 7
    assert r.get_all() == [7, 8, 9]
    r.close()
    with pytest.raises(Closed):
        r.get(timeout=0.1)


def test_ring_wait_policy_loses_nothing():
    r: RingBuffer[int] = RingBuffer(2, "wait")
    got = []

    def consume():
        while True:
            try:
                v = r.get(timeout=1)
            except Closed:
                return
            if v is not None:
                got.append(v)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(200):
        assert r.put(i, timeout=2)
    r.close()
    t.join(5)
    assert got == list(range(200)) and r.dropped == 0


def test_ring_wait_put_times_out_and_close_unblocks():
    r: RingBuffer[int] = RingBuffer(1, "wait")
    r.put(1)
    assert r.put(2, timeout=0.05) is False
    threading.Timer(0.1, r.close).start()
    assert r.put(3) is False  # returns once closed instead of waiting forever


def test_redaction():
    url = "rtsp://admin:hunter2@cam.local:554/s1?token=abc&channel=1"
    red = redact_url(url)
    assert "hunter2" not in red and "abc" not in red
    assert red == "rtsp://admin:***@cam.local:554/s1?token=***&channel=1"  # one rule, also serve's
    assert redact_url("https://ghp_token@host/x") == "https://***@host/x"  # no ':': maybe a token
    assert redact_url("clip.mp4") == "clip.mp4"
    assert "hunter2" not in redact_text(f"[Errno 111] Connection refused: '{url}'")


@pytest.mark.parametrize("spec", ["ftp://host/x.mp4", "gopher://a:b@host/"])
def test_wrong_scheme_is_a_source_error(spec):
    with pytest.raises(SourceError, match="unsupported URL scheme") as e:
        open_source(spec)
    assert ":b@" not in str(e.value)


def _faces(boxes, scores=None):
    b = np.array(boxes, np.float32).reshape(-1, 4)
    s = np.array(scores if scores is not None else [0.99] * len(b), np.float32)
    lm = np.repeat(((b[:, None, :2] + b[:, None, 2:]) / 2), 5, axis=1).astype(np.float32)
    return Faces(b, s, lm)


def test_tracker_keeps_ids_and_carries_moving_boxes():
    tr = Tracker()
    u = tr.update(_faces([[100, 100, 150, 150], [300, 100, 350, 150]]), 0.0)
    assert u.appeared == [1, 2] and u.detected.all()
    u = tr.update(_faces([[110, 100, 160, 150], [300, 100, 350, 150]]), 0.2)  # face 1 moves right
    assert u.ids.tolist() == [1, 2] and not u.appeared
    p = tr.predict(0.3)  # carried, not frozen: keeps moving right
    assert p.ids.tolist() == [1, 2] and not p.detected.any()
    assert p.faces.boxes[0, 0] > u.faces.boxes[0, 0] + 1
    assert abs(p.faces.boxes[1, 0] - u.faces.boxes[1, 0]) < 1
    p = tr.predict(2.0)  # no detection ran since 0.2 s: carried (a slow detector loses no face)
    assert p.ids.tolist() == [1, 2] and not p.lost
    lost = [t.id for k in range(1, 6) for t in tr.update(Faces.empty(), 2.0 + 0.2 * k).lost]
    assert sorted(lost) == [1, 2]  # missed by the detector for longer than its patience: lost
    assert len(tr.update(Faces.empty(), 3.2).faces) == 0


def test_tracker_needs_two_hits_for_weak_detections():
    tr = Tracker()
    u = tr.update(_faces([[0, 0, 40, 40]], [0.8]), 0.0)
    assert u.appeared == [] and len(u.faces) == 0
    u = tr.update(_faces([[2, 0, 42, 40]], [0.8]), 0.1)
    assert u.appeared == [1] and len(u.faces) == 1


def test_with_refinement_only_verified_faces_are_shown_and_events_stay_whole():
    """With refinement on (max_carried), a face the networks looked for and did not find is
    hidden (its track waits); a track confirmed while hidden appears when it is first shown;
    only tracks that appeared are reported lost; two full detections that miss a face end it."""
    from livefaces.events import FaceEvents
    from livefaces.track import TrackerOptions

    tr = Tracker(TrackerOptions(max_carried=0.25))
    ev = FaceEvents("s", 1.0)
    box = [[100, 100, 160, 170]]
    frames = iter(range(100))

    def step(u):  # noqa: ANN001, ANN202
        i = next(frames)
        out = ev.update(Frame(np.zeros((240, 320, 3), np.uint8), "s", i, i / 25, i / 25), u)
        return [e["type"] for e in out]

    u = tr.update(_faces(box, [0.9]), 0.0)  # weak: not confirmed yet
    assert len(u.faces) == 0 and step(u) == []
    u = tr.update(Faces.empty(), 0.04)  # a full detection misses it: doubted
    assert len(u.faces) == 0 and step(u) == []
    (track, _), = tr.predictions(0.08)
    u = tr.refine([(track, _faces(box, [0.9]))], 0.08)  # found by refinement: 2 hits, but doubted
    assert len(u.faces) == 0 and not u.appeared and step(u) == []
    u = tr.update(_faces(box, [0.9]), 0.12)  # a full detection finds it: shown, it appears now
    assert u.ids.tolist() == [1] and u.appeared == [1] and step(u) == ["face.appeared"]
    (track, _), = tr.predictions(0.16)
    u = tr.refine([(track, Faces.empty())], 0.16)  # looked for, not found: hidden at once
    assert len(u.faces) == 0 and u.missed == [1] and len(u.unshown) == 1 and step(u) == []
    u = tr.update(Faces.empty(), 0.2)
    assert not u.lost
    u = tr.update(Faces.empty(), 0.24)  # the second full detection in a row that misses it
    assert [t.id for t in u.lost] == [1] and step(u) == ["face.lost"]


def _frame(i, src="s"):
    return Frame(np.zeros((4, 4, 3), np.uint8), src, i, i / 25, i / 25)


def test_every_n_and_adaptive_schedule():
    p = EveryN(n=3)
    due = []
    for i in range(9):
        f = _frame(i)
        if p.due(f, True, i / 25):
            p.detected(f, i / 25)
            due.append(i)
    assert due == [0, 3, 6]
    a = Adaptive(budget=0.1, max_duty=0.5)
    for _ in range(20):
        a.observe(0.3)  # a slow detector: the image it sees shrinks
    assert a.scale < 1.0
    assert a.due(_frame(0), False, 0) and a.due(_frame(1), False, 0)  # files: every frame


def test_events_are_json_with_the_envelope():
    st = face_state(np.array([1, 2, 3, 4]), 0.9, np.zeros((5, 2)), detected=True, frame_index=7,
                    pts=0.28, captured_wall=0.0, width=640, height=360)
    e = make_event("face.appeared", "cam", track_id=1, **st, before=None)
    assert {"schema", "type", "source", "time"} <= e.keys() and e["schema"] == SCHEMA
    assert e["time"].endswith("Z")
    json.dumps(e)
    json.dumps(status_event("cam", "connecting", "connected"))
    with pytest.raises(ValueError):
        make_event("face.exploded", "cam")
