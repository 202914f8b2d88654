"""``people add`` of a photo the person has already (issue 20 §5): the same file twice in one
command, or again in a later one, or a re-saved copy, adds nothing; it is named in the line."""

from __future__ import annotations

import shutil

import cv2
import pytest
from conftest import run_cli

pytest.importorskip("dlib", reason="needs the identify extra (pip install '.[identify]')")


def _photos(tmp_path, grace_hopper):  # noqa: ANN001, ANN202
    a = tmp_path / "a.jpg"
    cv2.imwrite(str(a), cv2.cvtColor(grace_hopper, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    b = tmp_path / "b.jpg"
    shutil.copy(a, b)
    c = tmp_path / "c.jpg"  # a re-saved copy: other bytes, the same photo
    cv2.imwrite(str(c), cv2.imread(str(a)), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return a, b, c


def _count(people) -> int:  # noqa: ANN001
    r = run_cli("people", "list", "--people", str(people))
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split("grace: ")[1].split(" photo")[0])


def test_people_add_skips_a_photo_it_has_already(tmp_path, grace_hopper):
    a, b, c = _photos(tmp_path, grace_hopper)
    people = tmp_path / "people"
    r = run_cli("people", "add", "grace", str(a), str(b), "--people", str(people))
    assert r.returncode == 0, r.stderr
    assert "added 1 photo (1 in all)" in r.stdout and f"skipped 1 already there ({b})" in r.stdout
    assert _count(people) == 1
    r = run_cli("people", "add", "grace", str(c), str(a), "--people", str(people))
    assert r.returncode == 0, r.stderr
    assert "nothing added" in r.stdout and "skipped 2 already there" in r.stdout, r.stdout
    assert _count(people) == 1


def test_the_library_and_serve_default_to_the_event_min_score(shared):
    """``Pipeline`` (so ``livefaces.stream()`` and ``serve``) gives events only to tracks the
    detector scored >= 0.9, as ``watch`` does: on the hamilton clip the hands and the
    microphone (0.70-0.82) made events in serve."""
    from livefaces.events import EVENT_MIN_SCORE
    from livefaces.pipeline import Pipeline
    from livefaces.publish import BaseSink

    class Keep(BaseSink):
        def __init__(self) -> None:
            self.events: list[dict] = []

        def on_event(self, e: dict) -> None:
            self.events.append(e)

    def best_scores(**kw) -> dict[int, float]:  # noqa: ANN003
        keep = Keep()
        clip = shared / "media/ageitgey__face_recognition/examples/short_hamilton_clip.mp4"
        with Pipeline([str(clip)], sinks=[keep], max_frames=120, **kw) as p:
            p.wait(120)
        best: dict[int, float] = {}
        for e in keep.events:
            if e["type"].startswith("face."):
                best[e["track_id"]] = max(best.get(e["track_id"], 0.0), e["confidence"])
        return best

    every = best_scores(event_min_score=0.0)
    assert any(s < EVENT_MIN_SCORE for s in every.values()), every  # not vacuous
    default = best_scores()
    assert default and all(s >= EVENT_MIN_SCORE for s in default.values()), default
