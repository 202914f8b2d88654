"""The package as users install it: a wheel built from this checkout, installed into a fresh
virtual environment (no system packages, no editable install), every README command run
from an unrelated directory.

An editable install once hid a packaging bug that broke every command (the models folder
was a namespace package); this test is what keeps CI from passing with a broken wheel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what git would not carry into a clean clone and a stale build must not leak into the wheel
_NOT_SOURCE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", "out")


def _run(cmd: list[str], cwd: Path, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LIVEFACES_MODELS")}
    env.update(kw.pop("env", {}))
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """``(bin_dir, workdir)``: livefaces[cpu,serve,preview] from a freshly built wheel."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"),
              str(src)], cwd=base)
    assert r.returncode == 0, r.stderr[-3000:]
    wheels = list((base / "dist").glob("livefaces-*.whl"))
    assert len(wheels) == 1, wheels
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / "bin"
    r = _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              f"{wheels[0]}[cpu,serve,preview]"], cwd=base)
    assert r.returncode == 0, r.stderr[-3000:]
    work = base / "elsewhere"  # no livefaces/ or models/ folder anywhere near
    work.mkdir()
    return bin_dir, work


def _cli(installed: tuple[Path, Path], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    bin_dir, work = installed
    return _run([str(bin_dir / "livefaces"), *args], cwd=work, timeout=timeout)


def test_wheel_has_no_source_tree_on_its_path(installed):
    bin_dir, work = installed
    r = _run([str(bin_dir / "python"), "-c", "import livefaces, livefaces.models as m; "
              "print(livefaces.__file__); print(m.__file__)"], cwd=work)
    assert r.returncode == 0, r.stderr
    for line in r.stdout.splitlines():
        assert str(bin_dir.parent) in line and str(ROOT) not in line


def test_wheel_doctor_is_clean(installed):
    r = _cli(installed, "doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PROBLEM" not in r.stdout
    assert re.search(r"^onnx runtime +onnxruntime \d[^,]*$", r.stdout, re.M), r.stdout  # one build
    assert re.search(r"^opencv build +opencv-python-headless \d[^,]*$", r.stdout, re.M), r.stdout
    assert r.stdout.count("ok (sha256 matches MANIFEST.json)") == 4


def _photo(tmp_path: Path) -> Path:
    """A copy of the photo the package ships, outside both the checkout and the venv."""
    from livefaces.imageio import read_image, write_image

    path = tmp_path / "grace.jpg"
    write_image(path, read_image(ROOT / "livefaces" / "data" / "grace_hopper.jpg"))
    return path


def test_wheel_demo_and_detect(installed, tmp_path):
    _, work = installed
    r = _cli(installed, "demo")
    assert r.returncode == 0, r.stderr
    assert "1 face(s)" in r.stdout and (work / "livefaces-demo.jpg").is_file()
    photo = _photo(tmp_path)
    r = _cli(installed, "detect", str(photo), "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert len(rec["faces"]) == 1 and rec["faces"][0]["confidence"] > 0.99
    r = _cli(installed, "detect", str(photo), "--annotate", str(tmp_path / "ann"))
    assert r.returncode == 0 and len(list((tmp_path / "ann").iterdir())) == 1, r.stderr


def test_wheel_watch_bundled_clip(installed, tmp_path):
    rec = tmp_path / "annotated.mp4"
    r = _cli(installed, "watch", "--record", str(rec), "--snapshots", str(tmp_path / "snaps"))
    assert r.returncode == 0, r.stderr
    events = [json.loads(x) for x in r.stdout.splitlines()]
    assert any(e["type"] == "face.appeared" for e in events)
    status = [e for e in events if e["type"] == "source.status"]
    assert status[-1]["after"] == "ended" and status[-1]["frames"] == 250  # the whole clip
    assert "Traceback" not in r.stderr
    assert rec.stat().st_size > 10_000


def test_wheel_extract(installed, tmp_path):
    r = _cli(installed, "extract", str(_photo(tmp_path)), "--out", str(tmp_path / "faces"))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in (tmp_path / "faces" / "index.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and (tmp_path / "faces" / rows[0]["crop"]).is_file()


def test_wheel_serve_check_config(installed, tmp_path):
    cfg = tmp_path / "cameras.yaml"
    cfg.write_text("cameras:\n  test:\n    url: synthetic:640x360@10\n")
    r = _cli(installed, "serve", "--config", str(cfg), "--check-config")
    assert r.returncode == 0, r.stderr


def test_wheel_without_onnxruntime_says_how_to_install(installed, tmp_path):
    """``pip install livefaces`` without an extra has no runtime: one line saying what to do."""
    bin_dir, work = installed
    # hide onnxruntime (and torch, which the venv does not have anyway) from this one process
    stub = tmp_path / "hide"
    stub.mkdir()
    (stub / "onnxruntime.py").write_text("raise ImportError('hidden by the test')\n")
    r = _run([str(bin_dir / "livefaces"), "demo"], cwd=work, env={"PYTHONPATH": str(stub)})
    assert r.returncode == 3
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "'cpu' extra" in r.stderr and "'gpu'" in r.stderr


def test_wheel_detect_globs_and_min_face(installed, tmp_path):
    shots = tmp_path / "shots" / "a"
    shots.mkdir(parents=True)
    photo = _photo(tmp_path)
    shutil.copy(photo, shots / "one.jpg")
    r = _cli(installed, "detect", str(tmp_path / "shots" / "**" / "*.jpg"), "--min-face", "40")
    assert r.returncode == 0, r.stderr
    assert "one.jpg: 1 face" in r.stdout


def test_wheel_serve_answers(installed):
    """The serve extra and the page the wheel ships: a synthetic camera, the page and /health."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir, work = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LIVEFACES_MODELS")}
    p = subprocess.Popen([str(bin_dir / "livefaces"), "serve", "cam=synthetic:320x240@10",
                          "--port", str(port), "--duration", "60"], cwd=work, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        page = b""
        while time.monotonic() < deadline and p.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health",
                                                           timeout=5).read())
                break
            except OSError:
                time.sleep(0.5)
        assert b"livefaces" in page, p.stderr.read() if p.poll() is not None else "no answer"
        assert "cam" in json.dumps(health)
    finally:
        p.terminate()
        _out, err = p.communicate(timeout=20)
    assert "Traceback" not in err, err


@pytest.mark.skipif(shutil.which("xvfb-run") is None,
                    reason="xvfb missing: run scripts/install_system_deps.sh (scripts/test.sh does)")
def test_wheel_preview_opens_a_window_under_x(installed, tmp_path):
    """The preview extra (pygame) with headless OpenCV: a real window under Xvfb."""
    bin_dir, work = installed
    r = _run(["xvfb-run", "-a", "-s", "-screen 0 800x600x24", str(bin_dir / "livefaces"), "preview",
              "synthetic:320x240@25", "--max-frames", "30"], cwd=work, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "30 frames" in r.stderr and "Traceback" not in r.stderr


def test_wheel_preview_without_pygame_says_which_extra(installed, tmp_path):
    bin_dir, work = installed
    stub = tmp_path / "hide"
    stub.mkdir()
    (stub / "pygame.py").write_text("raise ImportError('hidden by the test')\n")
    r = _run([str(bin_dir / "livefaces"), "preview", "synthetic:"], cwd=work,
             env={"PYTHONPATH": str(stub), "DISPLAY": ":99"})
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("\n") == 1 and "'preview' extra" in r.stderr, r.stderr


def test_wheel_doctor_flags_two_onnx_runtimes(installed, tmp_path):
    """onnxruntime and onnxruntime-gpu both installed (as a later `pip install onnxruntime-gpu`
    leaves them): doctor names the clash and the fix, and exits 3. The second build is simulated
    by its package metadata, which is what doctor reads."""
    bin_dir, work = installed
    fake = tmp_path / "site" / "onnxruntime_gpu-1.31.1.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxruntime-gpu\nVersion: 1.31.1\n")
    r = _run([str(bin_dir / "livefaces"), "doctor"], cwd=work, env={"PYTHONPATH": str(tmp_path / "site")})
    assert r.returncode == 3, r.stdout
    assert re.search(r"^onnx runtime +onnxruntime \d\S*, onnxruntime-gpu 1\.31\.1$", r.stdout, re.M)
    problem = [line for line in r.stdout.splitlines() if line.startswith("PROBLEM")]
    assert len(problem) == 1 and "pip uninstall -y onnxruntime onnxruntime-gpu" in problem[0]


def test_wheel_people_without_the_identify_extra(installed, tmp_path):
    """The wheel ships livefaces.identify; without the identify extra (not installed here),
    naming faces is a one-line error saying what to install, and nothing is written."""
    bin_dir, work = installed
    r = _run([str(bin_dir / "python"), "-c",
              "import livefaces.identify as i; print(i.Gallery.empty().names)"], cwd=work)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr
    photo = _photo(tmp_path)
    for args in (["people", "add", "grace", str(photo), "--people", str(tmp_path / "people")],
                 ["detect", str(photo), "--people", str(tmp_path)]):
        r = _cli(installed, *args)
        assert r.returncode == 3 and r.stderr.count("\n") == 1, r.stderr
        assert "install livefaces[identify]" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "people").exists()
    r = _cli(installed, "doctor")
    assert re.search(r"^identify +not installed \(optional, for --people: pip install "
                     r"'livefaces\[identify\]'\)$", r.stdout, re.M), r.stdout
