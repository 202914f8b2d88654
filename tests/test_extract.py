"""``livefaces extract``: crops + index.jsonl from videos and image folders, resume, Ctrl-C."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, interrupt_extract, run_cli

from livefaces.align import ARCFACE_TEMPLATE, align_face, alignment_matrix, crop_box
from livefaces.detect.options import DetectorOptions
from livefaces.extract import ExtractOptions, extract

W, H = 480, 270


def make_clip(path: Path, photos: list[np.ndarray], frames: int, fps: int = 12) -> None:
    """Photos (scaled to 150 px) moving across a grey canvas, encoded with PyAV (MPEG-4 part 2,
    built into every FFmpeg)."""
    import av

    faces = [cv2.resize(p, (150, 150), interpolation=cv2.INTER_AREA) for p in photos]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.bit_rate = 4_000_000
        for i in range(frames):
            canvas = np.full((H, W, 3), 90, np.uint8)
            for k, face in enumerate(faces):
                x = (20 + 6 * i + 230 * k) % (W - 150)
                y = 40 + 20 * k
                canvas[y:y + 150, x:x + 150] = face
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut, grace_hopper) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    make_clip(root / "clip.mp4", [astronaut, grace_hopper], frames=24)
    make_clip(root / "long.mp4", [astronaut], frames=240)
    photos = root / "photos" / "sub"
    photos.mkdir(parents=True)
    cv2.imwrite(str(root / "photos" / "astronaut.jpg"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(photos / "grace.png"), cv2.cvtColor(grace_hopper, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(photos / "blank.png"), np.full((60, 80, 3), 128, np.uint8))
    return {"clip": root / "clip.mp4", "long": root / "long.mp4", "photos": root / "photos"}


def read_index(out: Path) -> list[dict]:
    text = (out / "index.jsonl").read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def assert_complete(out: Path) -> list[dict]:
    """Every index line parses and names an existing, decodable crop; no temp files remain."""
    records = read_index(out)
    for rec in records:
        crop = cv2.imread(str(out / rec["crop"]))
        assert crop is not None, rec["crop"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    keys = [(r["source"], r["frame"], r["crop"]) for r in records]
    assert len(keys) == len(set(keys)), "duplicate index lines"
    return records


def test_extract_video_and_folder(detector, media, tmp_path):
    out = tmp_path / "faces"
    report = extract([media["clip"], media["photos"]], out,
                     ExtractOptions(stride=2, resize=0.5, detector=DetectorOptions(min_face_size=20),
                                    batch_size=5),
                     detector=detector)
    assert (report.inputs, report.done, report.failed) == (4, 4, [])
    assert report.frames == 12 + 3
    records = assert_complete(out)
    video = [r for r in records if r["source"] == str(media["clip"])]
    assert sorted({r["frame"] for r in video}) == list(range(0, 24, 2))
    assert len(video) == 24  # both faces in every strided frame
    for r in video:
        x1, y1, x2, y2 = r["box"]
        assert 0 <= x1 < x2 <= W + 5 and 0 <= y1 < y2 <= H + 5  # original pixels, not resized
        assert x2 - x1 > 18  # the astronaut's face is ~23 px in the clip
        assert r["pts"] == pytest.approx(r["frame"] / 12, abs=1e-3)
        assert len(r["landmarks"]) == 5 and 0.7 < r["confidence"] <= 1
        assert r["crop"].startswith("clip/") and cv2.imread(str(out / r["crop"])).shape == (160, 160, 3)
    photos = {Path(r["crop"]).as_posix() for r in records if r["source"] != str(media["clip"])}
    assert photos == {"photos/astronaut_0.jpg", "photos/sub/grace_0.jpg"}
    done = [json.loads(line) for line in (out / "done.jsonl").read_text().splitlines()]
    assert {d["name"] for d in done} == {"clip", "photos/astronaut", "photos/sub/grace", "photos/sub/blank"}


def test_resized_boxes_are_in_original_pixels(detector, media, tmp_path):
    full = extract([media["photos"] / "astronaut.jpg"], tmp_path / "a", detector=detector)
    assert full.faces == 1
    half = extract([media["photos"] / "astronaut.jpg"], tmp_path / "b",
                   ExtractOptions(resize=0.5), detector=detector)
    assert half.faces == 1
    a, b = read_index(tmp_path / "a")[0]["box"], read_index(tmp_path / "b")[0]["box"]
    assert np.abs(np.subtract(a, b)).max() < 12


def test_rerun_skips_finished_inputs(detector, media, tmp_path):
    out = tmp_path / "faces"
    first = extract([media["clip"], media["photos"]], out, detector=detector)
    before = (out / "index.jsonl").read_text()
    again = extract([media["clip"], media["photos"]], out, detector=detector)
    assert (again.skipped, again.done, again.frames) == (4, 0, 0)
    assert (out / "index.jsonl").read_text() == before
    assert first.faces == len(read_index(out))


def test_stopped_run_resumes_without_duplicates(detector, media, tmp_path):
    reference = extract([media["clip"], media["long"]], tmp_path / "ref",
                        ExtractOptions(stride=3, batch_size=4), detector=detector)
    out = tmp_path / "faces"
    stop = threading.Event()

    def progress(p):
        if p.frames_done >= 12:  # inside long.mp4
            stop.set()

    partial = extract([media["clip"], media["long"]], out, ExtractOptions(stride=3, batch_size=4),
                      detector=detector, progress=progress, stop=stop)
    assert partial.done == 1 and partial.frames < reference.frames
    # a torn last line, as a killed process could leave
    with (out / "index.jsonl").open("a") as f:
        f.write('{"source": "x", "fra')
    resumed = extract([media["clip"], media["long"]], out, ExtractOptions(stride=3, batch_size=4),
                      detector=detector)
    assert (resumed.skipped, resumed.done) == (1, 1)
    records = assert_complete(out)
    assert len(records) == reference.faces
    ref = {(r["source"], r["frame"], r["crop"]) for r in read_index(tmp_path / "ref")}
    assert {(r["source"], r["frame"], r["crop"]) for r in records} == ref


def test_other_settings_are_refused(media, tmp_path):
    out = tmp_path / "faces"
    assert run_cli("extract", str(media["photos"] / "astronaut.jpg"), "--out", str(out)).returncode == 0
    r = run_cli("extract", str(media["photos"] / "astronaut.jpg"), "--out", str(out), "--stride", "2")
    assert r.returncode == 3
    assert "other settings" in r.stderr and "stride 1 -> 2" in r.stderr and "Traceback" not in r.stderr


def test_out_that_is_a_file_is_one_line(media, tmp_path):
    photo = media["photos"] / "astronaut.jpg"
    (tmp_path / "faces.jpg").write_bytes(b"a file the user meant to keep")
    for out in (tmp_path / "faces.jpg", tmp_path / "faces.jpg" / "sub"):
        r = run_cli("extract", str(photo), "--out", str(out))
        assert r.returncode == 3, r.stderr
        assert r.stderr.strip().splitlines() == [
            f"livefaces: error: {out}: cannot be the folder for the crops and index.jsonl "
            f"({tmp_path / 'faces.jpg'} is a file, not a folder)"]
    assert (tmp_path / "faces.jpg").read_bytes() == b"a file the user meant to keep"


def test_missing_input_is_reported_and_others_done(media, tmp_path):
    r = run_cli("extract", str(tmp_path / "nope.mp4"), str(media["photos"] / "astronaut.jpg"),
                "--out", str(tmp_path / "o"), "--align")
    assert r.returncode == 1, r.stderr
    assert "nope.mp4: no such file" in r.stderr and "Traceback" not in r.stderr
    assert "1 of 2 inputs extracted" in r.stderr
    rec = read_index(tmp_path / "o")[0]
    assert cv2.imread(str(tmp_path / "o" / rec["crop"])).shape == (112, 112, 3)


def test_cluster_job_of_missing_files_fails_before_ray_starts(tmp_path):
    """Every input missing: reported like the single-machine run, without importing (and
    starting) Ray for nothing."""
    code = ("import sys; from livefaces.extract import extract; "
            f"r = extract([{str(tmp_path / 'a.mp4')!r}, {str(tmp_path / 'b.jpg')!r}], "
            f"{str(tmp_path / 'o')!r}, cluster='local'); "
            "print(len(r.failed), r.failed[0][1], 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "2" and "a.mp4: no such file" in out.stdout
    assert out.stdout.split()[-1] == "False"


def test_ctrl_c_leaves_complete_files_and_rerun_finishes(detector, media, tmp_path):
    reference = extract([media["long"]], tmp_path / "ref", ExtractOptions(batch_size=2), detector=detector)
    out = tmp_path / "faces"
    args = ["extract", str(media["long"]), "--out", str(out), "--batch-size", "2", "--progress", "off"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    _, err = interrupt_extract(args, env, out)
    assert "interrupted" in err and "Traceback" not in err
    interrupted = assert_complete(out)
    assert not (out / "done.jsonl").read_text().strip()  # the video is not finished
    assert 0 < len(interrupted) < reference.faces
    r = subprocess.run([sys.executable, "-m", "livefaces", *args], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    records = assert_complete(out)
    assert (r.returncode, len(records)) == (0, reference.faces)
    assert sorted((r["frame"], r["crop"]) for r in records) == \
        sorted((r["frame"], r["crop"]) for r in read_index(tmp_path / "ref"))


def test_alignment_maps_landmarks_onto_the_template(detector, astronaut):
    faces = detector.detect(astronaut)
    m = alignment_matrix(faces.landmarks[0], size=112)
    pts = faces.landmarks[0] @ m[:, :2].T + m[:, 2]
    assert np.abs(pts - ARCFACE_TEMPLATE).max() < 8
    crop = align_face(astronaut, faces.landmarks[0], 112)
    again = detector.detect(cv2.resize(crop, (224, 224)))
    assert len(again) >= 1  # an aligned crop still looks like a face
    m2 = alignment_matrix(faces.landmarks[0], size=224, margin=24)
    mapped = faces.landmarks[0] @ m2[:, :2].T + m2[:, 2]
    assert np.abs(mapped - (ARCFACE_TEMPLATE * 200 / 112 + 12)).max() < 15


def test_crop_box_margin_follows_facenet(astronaut):
    box = np.array([100.0, 100.0, 200.0, 200.0])
    plain = crop_box(astronaut, box, size=100)
    assert np.array_equal(plain, astronaut[100:200, 100:200])
    wide = crop_box(astronaut, box, size=100, margin=50)  # 50 of 100 px are margin
    assert np.array_equal(wide, cv2.resize(astronaut[50:250, 50:250], (100, 100),
                                           interpolation=cv2.INTER_AREA))


def test_cluster_parts_cover_every_frame_once_around_finished_segments(media):
    """A re-run with another segment length plans only the frames finished segments do not
    cover (no Ray needed: planning is plain Python)."""
    from livefaces.extract import ClusterOptions
    from livefaces.extract.decode import plan_inputs
    from livefaces.extract.parts import plan_parts

    todo = plan_inputs([str(media["long"])])  # 240 frames at 12 fps
    first = plan_parts(todo, 3, ClusterOptions(segment_seconds=5), {})
    assert [(p.first, p.end) for p in first] == [(0, 60), (60, 120), (120, 180), (180, 240)]
    assert all(p.first % 3 == 0 and len(p.pts) == p.end - p.first for p in first)
    done = {p.id: {"part": p.id, "key": todo[0].key,
                   "first": p.first, "end": p.end} for p in first[1:3]}
    again = plan_parts(todo, 3, ClusterOptions(segment_seconds=2), done)
    ranges = [(p.first, p.end) for p in again]
    assert ranges == [(0, 24), (24, 48), (48, 60), (180, 204), (204, 228), (228, 240)]
    assert all(p.first % 3 == 0 for p in again)
