"""The command line as a user runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from livefaces.imageio import read_image, write_image


def test_detect_json_files_dirs_globs_and_errors(tmp_path, astronaut, grace_hopper):
    (tmp_path / "sub").mkdir()
    write_image(tmp_path / "a.png", astronaut)
    write_image(tmp_path / "sub" / "b.jpg", grace_hopper)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "notes.txt").write_text("ignored when walking folders")
    r = run_cli("detect", str(tmp_path / "sub"), str(tmp_path / "*.png"), str(tmp_path / "broken.jpg"),
                str(tmp_path / "missing.jpg"), "--json")
    assert r.returncode == 1, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [rec["source"] for rec in lines] == [str(tmp_path / "sub" / "b.jpg"), str(tmp_path / "a.png")]
    for rec in lines:
        assert len(rec["faces"]) == 1
        face = rec["faces"][0]
        assert set(face["landmarks"]) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
        assert 0.99 < face["confidence"] <= 1
    assert lines[1]["width"] == 512 and lines[1]["height"] == 512
    err = r.stderr.strip().splitlines()
    assert len(err) == 2 and "broken.jpg" in err[0] and "missing.jpg" in err[1]
    assert "Traceback" not in r.stderr


def test_detect_annotate_writes_copies_with_boxes(tmp_path, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "astro.png", astronaut)
    r = run_cli("detect", str(src), "--annotate", str(tmp_path / "out"), "--min-face", "40")
    assert r.returncode == 0, r.stderr
    assert "astro.png: 1 face" in r.stdout
    out = read_image(tmp_path / "out" / "astro.png")
    assert out.shape == astronaut.shape
    changed = np.any(out != astronaut, axis=2)
    assert changed.sum() > 500  # box outline, landmarks and the score label were drawn
    ys, xs = np.nonzero(changed)
    assert 150 < xs.mean() < 300 and 40 < ys.mean() < 200  # ... around the face


def test_demo_writes_annotated_sample(tmp_path):
    r = run_cli("demo", "--out", str(tmp_path / "demo.jpg"))
    assert r.returncode == 0, r.stderr
    assert "1 face(s)" in r.stdout
    assert read_image(tmp_path / "demo.jpg").shape == (600, 512, 3)


def test_outputs_blocked_by_a_file_are_one_line_and_the_file_is_kept(tmp_path, astronaut):
    write_image(tmp_path / "a.png", astronaut)
    (tmp_path / "empty.jpg").write_bytes(b"")
    keep = tmp_path / "keep.jpg"
    keep.write_bytes(b"the user's file")
    for annotate in (keep, keep / "sub"):  # checked before any work: exit 3
        r = run_cli("detect", str(tmp_path / "a.png"), "--annotate", str(annotate))
        assert (r.returncode, r.stdout) == (3, ""), r.stderr
        assert r.stderr.splitlines() == [f"livefaces: error: {annotate}: cannot be the folder for "
                                         f"the annotated copies ({keep} is a file, not a folder)"]
    r = run_cli("demo", "--out", str(keep / "demo.jpg"))
    assert r.returncode == 3
    assert r.stderr.splitlines() == [f"livefaces: error: {keep / 'demo.jpg'}: cannot write "
                                     f"({keep} is a file, not a folder)"]
    r = run_cli("demo", "--out", str(tmp_path / "demo.txt"))
    assert r.returncode == 3 and "cannot encode images of type '.txt'; use .jpg" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and not (tmp_path / "demo.txt").exists()
    assert keep.read_bytes() == b"the user's file"
    r = run_cli("detect", str(tmp_path / "empty.jpg"), str(tmp_path / "a.png"))
    assert r.returncode == 1 and "a.png: 1 face" in r.stdout
    assert r.stderr.splitlines() == [f"livefaces: error: {tmp_path / 'empty.jpg'}: empty file (0 bytes)"]


def test_doctor_reports_providers_and_models():
    r = run_cli("doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "CPUExecutionProvider" in r.stdout
    assert r.stdout.count("ok (sha256 matches MANIFEST.json)") == 4  # 3 nets + weights npz


def test_cuda_without_gpu_is_a_one_line_error(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA GPU")
    r = run_cli("detect", "--providers", "cuda", str(tmp_path))
    assert r.returncode == 3
    assert r.stderr.count("\n") == 1 and "onnxruntime-gpu" in r.stderr and "Traceback" not in r.stderr


def test_help_teaches():
    r = run_cli("--help")
    assert r.returncode == 0 and "exit codes" in r.stdout and "detect" in r.stdout
    r = run_cli("detect", "--help")
    assert "examples:" in r.stdout and "--min-face" in r.stdout and "--json line format" in r.stdout


def test_usage_errors_exit_2():
    r = run_cli("detect")
    assert r.returncode == 2 and "PATH" in r.stderr
    r = run_cli("detect", "x.jpg", "--factor", "abc")
    assert r.returncode == 2


def test_bad_setting_is_one_line_error(tmp_path):
    r = run_cli("detect", str(tmp_path), "--factor", "1.5")
    assert r.returncode == 2 and "argument --factor" in r.stderr and "Traceback" not in r.stderr


def test_detect_progress_line_on_a_terminal_only(tmp_path, grace_hopper):
    """The CLI's one progress line (cli._common.ProgressLine): shown on a terminal, ends at N/N,
    and never written into a pipe or file."""
    import os
    import pty
    import subprocess
    import sys

    for i in range(3):
        write_image(tmp_path / f"{i}.jpg", grace_hopper)
    root = Path(__file__).resolve().parents[1]
    master, slave = pty.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "livefaces", "detect", str(tmp_path)],
                           stdout=subprocess.PIPE, stderr=slave, text=True, timeout=120, cwd=root)
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert r.returncode == 0
    text = shown.decode()
    assert "[3/3]" in text and "img/s" in text and text.rstrip().endswith("00:00"), text
    assert "img/s" not in r.stdout
    r = run_cli("detect", str(tmp_path))
    assert "img/s" not in r.stderr  # not a terminal: no progress


def test_stderr_lines_are_written_in_one_piece(monkeypatch):
    """A line and its newline in one write, so another thread's log record cannot land in
    between (serve's "serving ... on URL" once ran into the next log line). Every stderr line
    of the CLI goes through say()/error()."""
    from livefaces.cli import _common

    writes: list[str] = []

    class Err:
        def write(self, s: str) -> None:
            writes.append(s)

        def flush(self) -> None:
            pass

    monkeypatch.setattr(_common.sys, "stderr", Err())
    _common.say("livefaces: serving 1 camera(s) on http://127.0.0.1:8080/")
    _common.error("bad")
    assert writes == ["livefaces: serving 1 camera(s) on http://127.0.0.1:8080/\n",
                      "livefaces: error: bad\n"]
    cli = Path(_common.__file__).parent
    assert not [p.name for p in cli.glob("*.py") if "file=sys.stderr" in p.read_text()]
