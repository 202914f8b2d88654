"""Who is it (issue 12): embeddings, the people folder and ``--people``, on real photos.

The labelled photos are face_recognition's knn examples in ../shared (train/<person>/*.jpg,
test/*.jpg named by who is in them); strangers are scikit-image's astronaut and the bundled
Grace Hopper.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli

if os.environ.get("CI"):  # scripts/test.sh installs the identify extra's packages with [dev]
    import dlib  # noqa: F401  (in CI a missing extra is a failure, not a skip)
pytest.importorskip("dlib", reason="the identify extra (scripts/test.sh installs it with [dev])")

from livefaces.errors import InputError, PeopleError  # noqa: E402
from livefaces.identify import DEFAULT_THRESHOLD, Gallery, Match, Recognizer  # noqa: E402
from livefaces.imageio import read_image  # noqa: E402

KNN = "media/ageitgey__face_recognition/examples/knn_examples"
GRACE = ROOT / "livefaces" / "data" / "grace_hopper.jpg"
#: who is in each test photo (face_recognition names them so; johnsnow is Kit Harington)
EXPECTED = {
    "alex_lacamoire1.jpg": {"alex_lacamoire"},
    "johnsnow_test1.jpg": {"kit_harington"},
    "kit_with_rose.jpg": {"kit_harington", "rose_leslie"},
    "obama1.jpg": {"obama"},
    "obama_and_biden.jpg": {"obama", "biden"},
}


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer()


@pytest.fixture(scope="module")
def knn(shared) -> Path:
    return shared / KNN


@pytest.fixture(scope="module")
def people(knn, tmp_path_factory) -> Path:
    """train/ enrolled with ``livefaces people add`` (one call per person)."""
    root = tmp_path_factory.mktemp("ppl") / "people"
    for person in sorted((knn / "train").iterdir()):
        photos = sorted(str(p) for p in person.iterdir())
        r = run_cli("people", "add", person.name, *photos, "--people", str(root))
        assert r.returncode == 0, r.stderr
        assert f"{person.name}: added {len(photos)} photo" in r.stdout
    return root


def test_embed_one_row_per_face_in_order(recognizer, detector, knn):
    rgb = read_image(knn / "test" / "kit_with_rose.jpg")
    faces = detector.detect(rgb)
    emb = recognizer.embed(rgb, faces)
    assert emb.shape == (2, 128) and emb.dtype == np.float32
    back = recognizer.embed(rgb, faces.select(np.array([1, 0])))
    np.testing.assert_allclose(back, emb[::-1], atol=1e-5)
    assert recognizer.embed(rgb, faces.select(np.zeros(2, bool))).shape == (0, 128)
    assert Recognizer.distance(emb[0], emb[0]) == 0
    assert Recognizer.distance(emb[0], emb[1]) > recognizer.threshold  # two different people
    assert recognizer.threshold == DEFAULT_THRESHOLD
    with pytest.raises(InputError):
        recognizer.embed(rgb[..., 0], faces)


def test_aligned_from_our_landmarks_agrees_with_dlibs_own_shape_predictor(recognizer, detector, knn):
    """Our chips (MTCNN landmarks onto the calibrated chip template) against dlib's own path
    (its HOG detector + 5-point shape predictor + the same ResNet): the same face gives
    nearby embeddings, well inside the same-person threshold."""
    from livefaces.identify.dlib_model import DlibReference

    ref = DlibReference()
    gaps = []
    for path in sorted((knn / "test").iterdir()):
        rgb = read_image(path)
        faces = detector.detect(rgb)
        ours = recognizer.embed(rgb, faces)
        centres = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
        for box in ref.hog_boxes(rgb):
            i = int(np.argmin(np.linalg.norm(centres - (box[:2] + box[2:]) / 2, axis=1)))
            gaps.append(Recognizer.distance(ours[i], ref.embed(rgb, box)))
    assert len(gaps) >= 7
    assert max(gaps) < 0.3 and float(np.median(gaps)) < 0.2, gaps


def test_known_people_recognised_and_strangers_unknown(people, recognizer, detector, knn, astronaut):
    gallery = Gallery.load(people)
    assert gallery.names == sorted(p.name for p in (knn / "train").iterdir())
    for name, who in EXPECTED.items():
        rgb = read_image(knn / "test" / name)
        faces = detector.detect(rgb)
        found = {m.name for m in gallery.match_all(recognizer.embed(rgb, faces))} - {None}
        assert found == who, name
    for rgb in (astronaut, read_image(GRACE)):
        faces = detector.detect(rgb)
        (m,) = gallery.match_all(recognizer.embed(rgb, faces))
        assert m.name is None and m.distance > gallery.threshold
    assert Gallery.empty().match(np.zeros(128, np.float32)) == Match(None, float("inf"))


def test_people_folder_is_private_and_without_pickle(people):
    assert stat.S_IMODE(people.stat().st_mode) == 0o700
    for p in people.rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p
    person = people / "obama"
    meta = json.loads((person / "person.json").read_text())
    assert [p["source"] for p in meta["photos"]] == ["obama.jpg", "obama2.jpg"]
    with np.load(person / "embeddings.npz", allow_pickle=False) as z:
        assert z["embeddings"].shape == (2, 128)
    assert sorted(p.name for p in person.iterdir()) == ["1.jpg", "2.jpg", "embeddings.npz", "person.json"]
    assert read_image(person / "1.jpg").shape == (96, 96, 3)


def test_detect_with_people_names_faces_without_leaking_embeddings(people, knn, tmp_path):
    r = run_cli("detect", str(knn / "test" / "kit_with_rose.jpg"), str(knn / "test" / "obama1.jpg"),
                "--people", str(people), "--json", "-vv")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    ids = [f["identity"] for f in recs[0]["faces"]]
    assert {i["name"] for i in ids} == {"kit_harington", "rose_leslie"}
    assert all(0 < i["distance"] <= DEFAULT_THRESHOLD for i in ids)
    assert set(recs[0]["faces"][0]) == {"box", "confidence", "landmarks", "identity"}  # additive
    assert len(r.stdout) < 2000 and "embedding" not in (r.stdout + r.stderr).lower()
    r = run_cli("detect", str(knn / "test" / "obama_and_biden.jpg"), "--people", str(people),
                "--annotate", str(tmp_path / "ann"))
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.endswith(": biden, obama, unknown, unknown") or (
        "biden" in line and "obama" in line and "unknown" in line), line
    assert (tmp_path / "ann" / "obama_and_biden.jpg").is_file()


def test_demo_names_the_bundled_sample(tmp_path):
    root = tmp_path / "people"
    r = run_cli("people", "add", "grace", str(GRACE), "--people", str(root))
    assert r.returncode == 0, r.stderr
    r = run_cli("demo", "--people", str(root), "--out", str(tmp_path / "demo.jpg"))
    assert r.returncode == 0, r.stderr
    assert "grace (distance 0.00)" in r.stdout and (tmp_path / "demo.jpg").is_file()


def test_people_add_list_remove(tmp_path, knn, monkeypatch):
    root = tmp_path / "p"
    monkeypatch.setenv("LIVEFACES_PEOPLE", str(root))  # the folder without --people
    r = run_cli("people", "add", "rose", str(knn / "train" / "rose_leslie" / "img1.jpg"))
    assert r.returncode == 0 and "1 in all" in r.stdout, r.stderr
    r = run_cli("people", "add", "rose", str(knn / "train" / "rose_leslie" / "img2.jpg"))
    assert r.returncode == 0 and "2 in all" in r.stdout, r.stderr
    r = run_cli("people", "add", "grace", str(GRACE))
    assert r.returncode == 0, r.stderr
    r = run_cli("people", "list")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("grace: 1 photo (grace_hopper.jpg)")
    assert r.stdout.splitlines()[1].startswith("rose: 2 photos (img1.jpg, img2.jpg)")
    assert "2 known people" in r.stdout
    r = run_cli("people", "remove", "grace")
    assert r.returncode == 0 and not (root / "grace").exists(), r.stderr
    assert Gallery.load(root).names == ["rose"]
    r = run_cli("people", "remove", "grace")
    assert r.returncode == 3 and "no such person" in r.stderr
    assert [p.name for p in root.iterdir()] == ["rose"]  # no temporary folders left


def test_people_add_errors_name_the_photo_and_write_nothing(tmp_path, knn, shared):
    root = tmp_path / "p"
    no_face = shared / "media" / "ipazc__mtcnn" / "tests" / "images" / "no-faces.jpg"
    r = run_cli("people", "add", "x", str(GRACE), str(no_face), "--people", str(root))
    assert r.returncode == 3 and r.stderr.count("\n") == 1, r.stderr
    assert str(no_face) in r.stderr and "no face found" in r.stderr and "Traceback" not in r.stderr
    assert not (root / "x").exists()
    r = run_cli("people", "add", "grace", str(GRACE), "--people", str(root))
    assert r.returncode == 0, r.stderr
    before = {p.name: p.read_bytes() for p in (root / "grace").iterdir()}
    two = knn / "test" / "kit_with_rose.jpg"
    r = run_cli("people", "add", "grace", str(two), "--people", str(root))
    assert r.returncode == 3 and f"{two}: 2 faces found" in r.stderr, r.stderr
    assert {p.name: p.read_bytes() for p in (root / "grace").iterdir()} == before
    missing = tmp_path / "nope.jpg"
    r = run_cli("people", "add", "grace", str(missing), "--people", str(root))
    assert r.returncode == 3 and str(missing) in r.stderr and r.stderr.count("\n") == 1
    r = run_cli("people", "add", "a/b", str(GRACE), "--people", str(root))
    assert r.returncode == 3 and "invalid name" in r.stderr
    assert sorted(p.name for p in root.iterdir()) == ["grace"]


def test_a_folder_others_can_read_is_refused(tmp_path):
    root = tmp_path / "p"
    r = run_cli("people", "add", "grace", str(GRACE), "--people", str(root))
    assert r.returncode == 0, r.stderr
    os.chmod(root, 0o755)
    with pytest.raises(PeopleError, match=r"chmod -R go= "):
        Gallery.load(root)
    r = run_cli("detect", str(GRACE), "--people", str(root))
    assert r.returncode == 3 and r.stderr.count("\n") == 1
    assert "mode 0755" in r.stderr and f"chmod -R go= {root}" in r.stderr
    os.chmod(root, 0o700)
    os.chmod(root / "grace" / "embeddings.npz", 0o640)
    r = run_cli("people", "list", "--people", str(root))
    assert r.returncode == 3 and "embeddings.npz" in r.stderr
    os.chmod(root / "grace" / "embeddings.npz", 0o600)
    assert Gallery.load(root).names == ["grace"]
    r = run_cli("detect", str(GRACE), "--people", str(tmp_path / "missing"))
    assert r.returncode == 3 and "no such people folder" in r.stderr


def test_without_the_identify_extra_a_one_line_error(tmp_path):
    """dlib hidden from one process: --people and 'people add' say what to install; the rest
    of livefaces (and 'people list') works."""
    hide = ("import sys; sys.modules['dlib'] = None; from livefaces.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", hide, *args], capture_output=True, text=True,
                              timeout=120, env=env, cwd=tmp_path)

    for args in (["detect", str(GRACE), "--people", str(tmp_path)],
                 ["people", "add", "grace", str(GRACE), "--people", str(tmp_path / "p")]):
        r = cli(*args)
        assert r.returncode == 3 and r.stderr.count("\n") == 1, r.stderr
        assert "install livefaces[identify]" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "p").exists()
    assert cli("detect", str(GRACE)).returncode == 0
    r = subprocess.run([sys.executable, "-c", "import sys; sys.modules['dlib'] = None; "
                        "import livefaces.identify, livefaces; print('ok')"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert r.stdout.strip() == "ok", r.stderr


def test_render_draws_names(grace_hopper, detector):
    from livefaces.render import annotate

    faces = detector.detect(grace_hopper)
    plain = annotate(grace_hopper, faces)
    named = annotate(grace_hopper, faces, names=["grace"])
    assert (named != plain).any()
    assert (annotate(grace_hopper, faces, names=[None]) == plain).all()
