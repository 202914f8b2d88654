"""Inputs that hang, leak or blow up memory (issue 20): looping files, decompression bombs,
FIFOs, rotated phone videos, user mistakes in the inputs of ``detect``/``watch``/``extract``."""

from __future__ import annotations

import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, run_cli

IVAN = "media/ipazc__mtcnn/tests/images/ivan.jpg"
HAMILTON = "media/ageitgey__face_recognition/examples/short_hamilton_clip.mp4"


def _ffmpeg(*args: str) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True,
                   timeout=120)


def _tasks() -> int:
    """Threads of this process as the kernel counts them (FFmpeg's decoder threads too)."""
    return len(os.listdir("/proc/self/task"))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# --- 1. a looping file source must not leak a decoder per loop --------------------------------

@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_a_looping_file_keeps_threads_and_memory_flat(shared, tmp_path):
    """``watch FILE --loop`` and serve's file cameras loop through FileSource in a capture
    thread; each loop used to keep the old decoder alive (its frame threads, its last frames):
    +3 threads and a few MB per loop, 198 -> 251 threads in 30 s in serve."""
    from livefaces.capture import CaptureOptions, CaptureWorker
    from livefaces.ringbuffer import RingBuffer
    from livefaces.sources import open_source

    clip = tmp_path / "short.mp4"  # 6 frames of the real clip: a loop every 6 frames
    _ffmpeg("-i", str(shared / HAMILTON), "-frames:v", "6", "-an", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", str(clip))
    source = open_source(clip, loop=True)
    ring: RingBuffer = RingBuffer(4, policy="wait")
    stop = threading.Event()
    worker = CaptureWorker(source, ring, stop, CaptureOptions())
    worker.start()
    seen = {}
    try:
        n = 0
        while n < 6 * 150:  # 150 loops
            frame = ring.get(timeout=30)
            assert frame is not None, worker.error
            n += 1
            if n == 6 * 20:  # after 20 loops: the decoder threads have all started
                seen["threads"], seen["py"], seen["rss"] = _tasks(), threading.active_count(), _rss_mb()
        assert frame.index == n - 1  # one source, never reopened by capture: loops only
        threads, py, rss = _tasks(), threading.active_count(), _rss_mb()
    finally:
        stop.set()
        assert worker.join(10)
    assert py == seen["py"]
    assert threads <= seen["threads"] + 2, (seen, threads)  # was +390 (3 per loop)
    assert rss < seen["rss"] + 40, (seen, rss)  # was +~400 MB


# --- 2. decompression bombs: refused from the header, before decoding --------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, w: int, h: int) -> Path:
    """A valid grey PNG of ``w`` x ``h`` zeros: 30000x30000 is 0.9 GB of pixels in < 1 MB."""
    z = zlib.compressobj(9)
    rows = bytes(w + 1) * 100  # 100 rows, each a filter byte and w zeros
    data = b"".join(z.compress(rows) for _ in range(h // 100)) + z.compress(bytes(w + 1) * (h % 100))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                     + _png_chunk(b"IDAT", data + z.flush()) + _png_chunk(b"IEND", b""))
    return path


def jpeg_claiming(path: Path, w: int, h: int) -> Path:
    """A small real JPEG whose frame header (SOF0) is patched to claim ``w`` x ``h``."""
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    path.write_bytes(bytes(data))
    return path


def run_peak(*args: str, timeout: float = 180) -> tuple[int, str, str, float]:
    """``python -m livefaces ARGS``: ``(exit code, stdout, stderr, peak RSS in MB)`` of that
    one process (``wait4``'s rusage). Its address space is capped at 8 GB, so that a bomb that
    does get decoded fails in it instead of calling the OOM killer onto the machine (with few
    malloc arenas: on a many-core machine each thread's arena reserves 64 MB of it)."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    env = dict(os.environ, PYTHONPATH=str(ROOT), MALLOC_ARENA_MAX="2")
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        proc = subprocess.Popen([sys.executable, "-m", "livefaces", *args], stdout=fo,
                                stderr=fe, env=env, preexec_fn=cap)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise AssertionError(f"livefaces {' '.join(args)}: still running after {timeout} s")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        return proc.returncode, fo.read(), fe.read(), usage.ru_maxrss / 1024


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("bombs")
    return [png_bomb(d / "png30k.png", 30000, 30000),      # 875 KB, 900 MP
            jpeg_claiming(d / "jpeg20k.jpg", 20000, 20000),  # 400 MP claimed
            jpeg_claiming(d / "jpeg65k.jpg", 65500, 65500)]  # OpenCV itself throws on it


def _assert_refused(err: str, paths: list[Path]) -> None:
    assert "Traceback" not in err, err
    for p in paths:
        lines = [ln for ln in err.splitlines() if str(p) in ln]
        assert len(lines) == 1, (p, err)
        assert "over the limit of 100,000,000 pixels" in lines[0] and "--max-pixels" in lines[0]


def test_detect_refuses_decompression_bombs_from_the_header(shared, bombs):
    """875 KB that decode to 0.9 GB of pixels (and 15-23 GB in detect) are refused from the
    header: one line each, the other inputs go on, exit 1, and the process stays small."""
    ivan = shared / IVAN
    assert bombs[0].stat().st_size < 1_000_000
    rc, out, err, peak = run_peak("detect", str(ivan), *map(str, bombs), str(ivan))
    assert rc == 1, err
    _assert_refused(err, bombs)
    assert out.splitlines() == [f"{ivan}: 1 face (best 1.000)"] * 2
    assert peak < 700, peak  # a normal run: ~150 MB; one 30000^2 RGB copy alone is 2.7 GB


def test_max_pixels_sets_the_limit(shared, bombs):
    """--max-pixels lowers the limit (a real 561x561 photo is refused) or raises it, and a
    header OpenCV refuses itself (65500^2) is one line, not a cv2.error traceback."""
    ivan = shared / IVAN
    rc, out, err, _ = run_peak("detect", str(ivan), "--max-pixels", "300K")
    assert rc == 1 and out == ""
    assert err.strip() == (f"livefaces: error: {ivan}: 561x561 pixels is over the limit of "
                           f"300,000 pixels (not decoded); raise it with --max-pixels if the "
                           f"image is real")
    rc, out, err, peak = run_peak("detect", str(bombs[2]), str(ivan), "--max-pixels", "5G")
    assert rc == 1 and out.splitlines() == [f"{ivan}: 1 face (best 1.000)"], err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"livefaces: error: {bombs[2]}: not an image OpenCV can decode"), err
    assert peak < 700, peak
    rc, _, err, _ = run_peak("detect", str(ivan), "--max-pixels", "lots")
    assert rc == 2 and "--max-pixels: invalid pixel count 'lots'" in err


def test_extract_watch_and_people_add_refuse_bombs(shared, bombs, tmp_path):
    """The same limit in every command that reads images: extract of a folder (each bomb a
    failed input, the photo extracted), watch of an image folder (bombs skipped), people add
    (all or nothing: refused, nothing written)."""
    folder = tmp_path / "bombs"
    folder.mkdir()
    bombs = [Path(shutil.copy(b, folder / b.name)) for b in bombs]
    shutil.copy(shared / IVAN, folder / "ivan.jpg")
    rc, _, err, peak = run_peak("extract", str(folder), "--out", str(tmp_path / "out"),
                                "--progress", "off")
    assert rc == 1, err
    _assert_refused(err, bombs)
    assert "1 of 4 inputs extracted" in err and peak < 700, (err, peak)
    assert (tmp_path / "out" / "index.jsonl").read_text().count("\n") == 1

    rc, out, err, peak = run_peak("watch", str(folder), "--events", "-", "--detect-every", "1")
    assert rc == 0, err
    _assert_refused(err, bombs)
    assert peak < 700 and '"face.appeared"' in out, (out, peak)

    people = tmp_path / "people"
    rc, out, err, peak = run_peak("people", "add", "ivan", str(shared / IVAN), str(bombs[1]),
                                  "--people", str(people))
    assert rc == 3 and out == "", err
    _assert_refused(err, [bombs[1]])
    assert err.count("\n") == 1 and peak < 900
    assert not (people / "ivan").exists()


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".webp", ".tif", ".jp2", ".ppm", ".pgm",
                                 ".pam", ".pfm", ".gif", ".ras", ".hdr", ".avif"])
def test_image_size_from_the_header_matches_the_decoded_image(ext):
    """The limit is only as good as the header parser: for each format OpenCV writes here, the
    size read from the header is the size OpenCV decodes (odd sizes, so width and height
    cannot be swapped unnoticed)."""
    from livefaces.imageio import image_size, read_image

    rgb = np.random.default_rng(1).integers(0, 255, (37, 61, 3), dtype=np.uint8)
    image = rgb.astype(np.float32) / 255 if ext in (".pfm", ".hdr") else rgb
    image = image[:, :, 0] if ext == ".pgm" else image
    try:
        ok, buf = cv2.imencode(ext, image if ext != ".jp2" else np.repeat(np.repeat(image, 4, 0), 4, 1))
    except cv2.error:
        ok = False
    if not ok:
        pytest.skip(f"this OpenCV cannot write {ext}")
    data = buf.tobytes()
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    assert image_size(data) == (decoded.shape[1], decoded.shape[0])
    with tempfile.NamedTemporaryFile(suffix=ext) as f:
        f.write(data)
        f.flush()
        assert read_image(f.name).shape == decoded.shape
        with pytest.raises(OSError, match="over the limit of 100 pixels"):
            read_image(f.name, max_pixels=100)


def test_image_size_of_every_real_photo(shared):
    """Real photos (EXIF, ICC profiles, progressive JPEGs, PNGs with alpha): the header's size
    is the stored size."""
    from livefaces.imageio import image_size

    photos = [p for p in sorted((shared / "media").rglob("*"))
              if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    assert len(photos) > 20
    for p in photos:
        data = p.read_bytes()
        stored = cv2.imdecode(np.frombuffer(data, np.uint8),
                              cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        assert image_size(data) == (stored.shape[1], stored.shape[0]), p


def test_a_file_too_large_for_any_image_within_the_limit_is_not_read(shared, tmp_path):
    """A small valid JPEG followed by 2 GB (a sparse file: no disk used): it used to be read
    whole into memory, then decoded. Nothing past its first megabyte is read now."""
    big = jpeg_claiming(tmp_path / "big.jpg", 16, 16)
    with open(big, "r+b") as f:
        f.truncate(2 << 30)
    rc, out, err, peak = run_peak("detect", str(big), str(shared / IVAN))
    assert rc == 1 and out.count("1 face") == 1, err
    assert err == (f"livefaces: error: {big}: 2,147,483,648 bytes is more than any image of at "
                   f"most 100,000,000 pixels takes (not read); raise --max-pixels if the image "
                   f"is real\n")
    assert peak < 700, peak


def test_videos_with_frames_over_the_limit_are_refused_before_decoding(shared, tmp_path):
    """The same limit for video files (FFmpeg decodes frames up to 268 million pixels: one
    16000x16000 MJPEG frame is 768 MB as RGB): from the stream's header, one line."""
    clip = shared / HAMILTON  # 640x360 = 230,400 pixels
    why = (f"{clip}: frames of 640x360 pixels are over the limit of 200,000 pixels (not "
           f"decoded); raise it with --max-pixels if the video is real")
    r = run_cli("extract", str(clip), "--out", str(tmp_path / "o"), "--max-pixels", "200K",
                "--progress", "off", timeout=60)
    assert r.returncode == 1 and f"livefaces: error: {why}\n" in r.stderr, r.stderr
    r = run_cli("watch", str(clip), "--max-pixels", "200K", "--events", "/dev/null", timeout=60)
    assert r.returncode == 3 and r.stderr.endswith(f"livefaces: error: {why}\n"), r.stderr


# --- 3. FIFOs (and other special files) never block a reader -----------------------------------

@pytest.fixture
def fifo_folder(shared, tmp_path) -> Path:
    """A folder with a real photo, and FIFOs named like an image and like a video."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared / IVAN, folder / "b_ivan.jpg")
    os.mkfifo(folder / "a_pipe.jpg")
    os.mkfifo(folder / "c_pipe.mp4")
    return folder


def test_detect_skips_fifos_in_folders_and_refuses_them_named(fifo_folder):
    """A FIFO opened for reading blocks until a writer comes: detect hung forever on one,
    named or found in a folder."""
    pipe = fifo_folder / "a_pipe.jpg"
    r = run_cli("detect", str(fifo_folder), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{fifo_folder / 'b_ivan.jpg'}: 1 face (best 1.000)\n"
    assert r.stderr == f"livefaces: WARNING: skipping {pipe}: is a FIFO (named pipe), not a regular file\n"
    r = run_cli("detect", str(pipe), str(fifo_folder / "b_ivan.jpg"), timeout=60)
    assert r.returncode == 1
    assert r.stderr == f"livefaces: error: {pipe}: is a FIFO (named pipe), not a regular file\n"
    assert r.stdout.count("1 face") == 1


def test_extract_watch_and_people_add_never_block_on_a_fifo(fifo_folder, tmp_path):
    out = tmp_path / "out"
    r = run_cli("extract", str(fifo_folder), "--out", str(out), "--progress", "off", timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("WARNING: skipping") == 2 and "1 of 1 inputs extracted" in r.stderr
    for named in ("c_pipe.mp4", "a_pipe.jpg"):  # named directly: that input fails, one line
        r = run_cli("extract", str(fifo_folder / named), "--out", str(tmp_path / named),
                    "--progress", "off", timeout=60)
        assert r.returncode == 1, r.stderr
        assert (f"livefaces: error: {fifo_folder / named}: is a FIFO (named pipe), not a regular "
                f"file\n") in r.stderr and "Traceback" not in r.stderr
    r = run_cli("watch", str(fifo_folder), "--events", "-", "--detect-every", "1", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "skipping" in r.stderr and '"face.appeared"' in r.stdout
    r = run_cli("people", "add", "ivan", str(fifo_folder / "b_ivan.jpg"),
                str(fifo_folder / "a_pipe.jpg"), "--people", str(tmp_path / "people"), timeout=60)
    assert r.returncode == 3
    assert r.stderr == (f"livefaces: error: {fifo_folder / 'a_pipe.jpg'}: is a FIFO (named "
                        f"pipe), not a regular file\n")


# --- 4. rotation metadata: frames are turned upright, as a player shows them ---------------------

def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def rotated_clips(shared, tmp_path_factory) -> dict[str, Path]:
    """1 s of the hamilton clip (2 faces a frame) upright, and stored sideways with the
    rotation a phone writes (``rotate=270``: turned 90 degrees counter-clockwise; ``rotate=90``:
    clockwise), so that a player shows the upright picture (checked with ffmpeg itself)."""
    d = tmp_path_factory.mktemp("rotated")
    src = shared / HAMILTON
    _ffmpeg("-i", str(src), "-t", "1", "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            str(d / "upright.mp4"))
    clips = {"upright": d / "upright.mp4"}
    for tag, turn in (("270", "2"), ("90", "1")):  # transpose=2: counter-clockwise
        _ffmpeg("-i", str(src), "-t", "1", "-an", "-vf", f"transpose={turn}", "-c:v", "libx264",
                "-pix_fmt", "yuv420p", str(d / f"side{tag}.mp4"))
        # ffmpeg 5.1 writes the rotate tag when copying a stream (not when encoding one)
        _ffmpeg("-i", str(d / f"side{tag}.mp4"), "-c", "copy", "-metadata:s:v:0", f"rotate={tag}",
                str(d / f"rotate{tag}.mp4"))
        clips[tag] = d / f"rotate{tag}.mp4"
        # what a player shows (ffmpeg's autorotate) is the upright picture
        shown = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(clips[tag]),
                                "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                               capture_output=True, check=True, timeout=60).stdout
        up = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(clips["upright"]),
                             "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                            capture_output=True, check=True, timeout=60).stdout
        assert len(shown) == len(up) == 640 * 360
        diff = np.abs(np.frombuffer(shown, np.uint8).astype(int) - np.frombuffer(up, np.uint8))
        assert diff.mean() < 3, (tag, diff.mean())
    return clips


def _extract_boxes(clip: Path, out: Path) -> dict[int, list[list[float]]]:
    import json

    r = run_cli("extract", str(clip), "--out", str(out), "--progress", "off", timeout=120)
    assert r.returncode == 0, r.stderr
    boxes: dict[int, list[list[float]]] = {}
    for line in (out / "index.jsonl").read_text().splitlines():
        row = json.loads(line)
        boxes.setdefault(row["frame"], []).append(row["box"])
    return boxes


def _matched(ref: dict[int, list[list[float]]], got: dict[int, list[list[float]]]) -> int:
    return sum(any(_iou(a, b) > 0.7 for b in got.get(f, [])) for f, faces in ref.items()
               for a in faces)


def test_extract_and_watch_honour_rotation_metadata(rotated_clips, tmp_path):
    """A phone video stored sideways with a rotate tag gave half the faces (the sideways
    ones are missed), boxes in the sideways frame. Now frames are turned upright: the same
    faces, at the same places, as in the upright copy."""
    import json

    up = _extract_boxes(rotated_clips["upright"], tmp_path / "up")
    n = sum(map(len, up.values()))
    assert n >= 55  # 30 frames, 2 faces each
    for tag in ("270", "90"):
        got = _extract_boxes(rotated_clips[tag], tmp_path / tag)
        assert sum(map(len, got.values())) <= n + 2
        assert _matched(up, got) >= n - 2, tag  # sideways: 29 of 60 found, none in place

    r = run_cli("watch", str(rotated_clips["270"]), "--detect-every", "1", "--events", "-", "-q",
                "--record", str(tmp_path / "rec.mp4"), timeout=120)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    faces = [e for e in events if e["type"] == "face.appeared"]
    assert len(faces) == 2 and {(e["width"], e["height"]) for e in faces} == {(640, 360)}
    assert all(any(_iou(e["box"], b) > 0.7 for b in up[e["frame_index"]]) for e in faces)
    from livefaces.avio import AVInput

    rec = AVInput(str(tmp_path / "rec.mp4"), live=False)  # the recording is upright too
    try:
        assert (rec.width, rec.height) == (640, 360)
    finally:
        rec.close()


# --- 5. user mistakes in the inputs: one line, never a traceback --------------------------------

def test_detect_of_an_empty_folder_or_a_video_says_so_in_one_line(shared, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("detect", str(empty), timeout=60)  # was a ZeroDivisionError traceback
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith(f"livefaces: error: {empty}: no images in this folder (looked "
                               f"for .bmp, ") and r.stderr.count("\n") == 1, r.stderr
    clip = shared / HAMILTON
    r = run_cli("detect", str(clip), str(shared / IVAN), timeout=60)
    assert r.returncode == 1 and r.stdout.count("1 face") == 1
    assert r.stderr == (f"livefaces: error: {clip}: is a video; detect reads still images: use "
                        f"'livefaces watch {clip}' (live pipeline, events) or 'livefaces extract "
                        f"{clip} --out DIR' (every face as a crop)\n")


@pytest.mark.parametrize("spec, why", [
    ("synthetic:0x0@25", "width and height must be 16 to 8192 pixels"),
    ("synthetic:99999x99999", "width and height must be 16 to 8192 pixels"),
    ("synthetic:@0", "the frame rate must be 0.1 to 240"),
    ("synthetic:@.", "expected synthetic:[WxH][@FPS][,frames=N]"),
])
def test_watch_refuses_impossible_synthetic_cameras(spec, why):
    """synthetic:0x0@25 crashed the capture thread (a cv2.error, logged with its traceback,
    'internal error'), @0 divided by zero, 99999x99999 ran out of memory, @. was a
    ValueError traceback; the spec is shown as given (it holds no secret)."""
    r = run_cli("watch", spec, "--max-frames", "3", timeout=60)
    assert r.returncode == 3
    assert r.stderr.startswith(f"livefaces: error: {spec}: {why}") and r.stderr.count("\n") == 1, r.stderr


# --- 6. a serve camera that is an image folder shows its snapshots -------------------------------

def test_serve_shows_snapshots_of_an_image_folder_camera(shared, tmp_path):
    """Frames of an image folder carried each image's path as their source, not the camera's
    name, so serve's hub dropped them all: snapshot.jpg answered 503 and last_seen stayed null
    while 1975 frames were detected."""
    import json
    import urllib.error
    import urllib.request

    from live_helpers import start_serve_cli

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(shared / IVAN, folder / "a.jpg")  # 561x561
    shutil.copy(shared / IVAN, folder / "b.jpg")
    proc, lines, ready, url, reader = start_serve_cli("serve", f"door={folder}", "--port", "0",
                                                      "--threads", "1")
    try:
        assert ready.wait(120), "serve did not start:\n" + "".join(lines)
        base = url[0].rstrip("/")
        deadline, status, body = time.monotonic() + 60, None, b""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/api/cameras/door/snapshot.jpg", timeout=10) as r:
                    status, body = r.status, r.read()
                    break
            except urllib.error.HTTPError as e:
                status = e.code
            time.sleep(0.2)
        assert status == 200, (status, "".join(lines))
        snap = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert snap.shape[:2] == (561, 561)
        deadline, cam = time.monotonic() + 30, {}
        while time.monotonic() < deadline:  # the pipeline's counts come about once a second
            with urllib.request.urlopen(f"{base}/api/cameras/door", timeout=10) as r:
                cam = json.loads(r.read())
            if cam.get("frames_processed"):
                break
            time.sleep(0.2)
        assert cam["last_seen"] is not None and cam["frames_processed"] > 0
        assert cam["frame_size"] == [561, 561]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        reader.join(5)
    assert "Traceback" not in "".join(lines)


# --- 7. preview plays a file at its frame rate, like a video player ------------------------------

@pytest.mark.skipif(shutil.which("xvfb-run") is None,
                    reason="xvfb missing: run scripts/install_system_deps.sh (scripts/test.sh does)")
def test_preview_plays_a_file_at_its_frame_rate(rotated_clips, tmp_path):
    """preview of a file showed it at processing speed (a short clip flashed by): it is
    paced like a camera now (a live source in its statistics; the run lasts at least the
    clip's 1 s, which pacing guarantees however fast the machine), --no-realtime as before."""
    import json

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    def preview(*extra: str) -> dict:
        r = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 800x600x24", sys.executable, "-m",
                            "livefaces", "preview", str(rotated_clips["upright"]), "--stats",
                            str(tmp_path / "stats.json"), *extra],
                           capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        return json.loads((tmp_path / "stats.json").read_text())

    paced = preview()
    assert paced["live"] is True and paced["wall_seconds"] >= 0.9, paced
    fast = preview("--no-realtime")
    assert fast["live"] is False and fast["captured"] == 30, fast


def test_a_looping_image_folder_reports_a_bad_image_once(shared, tmp_path):
    """serve loops folder cameras (25 frames/s): a bad image was logged on every pass."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(shared / IVAN, folder / "a.jpg")
    (folder / "b.jpg").write_bytes(b"not a jpeg at all")
    r = run_cli("watch", str(folder), "--loop", "--max-frames", "12", "--events", "/dev/null",
                "-q", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == (f"livefaces: WARNING: skipping {folder / 'b.jpg'}: not an image livefaces "
                        f"can read (damaged, or not one of JPEG, PNG, GIF, BMP, WebP, TIFF, JPEG "
                        f"2000, AVIF, PNM/PAM/PFM, Sun raster, Radiance HDR)\n")
