"""``livefaces serve`` for real, as a user runs it: the CLI in a subprocess, a camera (a video
file playing in real time, looping), a real mosquitto broker and a real headless Chromium.

Checks: face events arrive on ``livefaces/<camera>/events``, ``status`` and the retained
``available`` topics; the page shows the live view with a face box drawn (pixels) and the
event feed fills (DOM); /metrics counts the published events; SIGTERM exits 0 and leaves
``available`` = ``offline``; no traceback, the token never logged.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import aiohttp
import numpy as np
from live_helpers import start_serve_cli
from test_serve_mqtt import Subscriber
from test_serve_web import count_box_pixels

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "e2e-token-42"


def make_clip(path: Path, astronaut: np.ndarray, seconds: float = 4.0, fps: int = 10) -> Path:
    """An H.264 (or MPEG-4) clip: the astronaut's head moving across a 640x360 canvas."""
    import av

    face = astronaut[0:300, 120:380]
    with av.open(str(path), "w") as out:
        try:
            st = out.add_stream("libx264", rate=fps)
        except Exception:  # noqa: BLE001 - FFmpeg builds without x264
            st = out.add_stream("mpeg4", rate=fps)
        st.width, st.height, st.pix_fmt = 640, 360, "yuv420p"
        for i in range(int(seconds * fps)):
            canvas = np.full((360, 640, 3), 90, np.uint8)
            x = 20 + (i * 9) % 340
            canvas[30:330, x:x + 260] = face
            for pkt in st.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return path


def test_serve_end_to_end(tmp_path, astronaut, broker):
    clip = make_clip(tmp_path / "lobby.mp4", astronaut)
    cfg = tmp_path / "cameras.yaml"
    cfg.write_text(f"""\
cameras:
  lobby:
    url: {clip}
    detect_fps: 5
    min_face_size: 40
web:
  host: 127.0.0.1
  port: 0
  token: {TOKEN}
mqtt:
  host: 127.0.0.1
  port: {broker.port}
  client_id: livefaces-e2e
detector:
  threads: 1
""")
    sub = Subscriber(broker.port, client_id="e2e-sub")
    assert sub.subscribed.wait(10)
    proc, stderr_lines, url_found, url, reader = start_serve_cli("-v", "serve", "--config", str(cfg))
    try:
        assert url_found.wait(120), "serve did not start:\n" + "".join(stderr_lines)
        base = url[0]
        # MQTT: face events on the camera's topic, status retained, availability online
        msgs = sub.wait_for(lambda m: any(t == "livefaces/lobby/events" and b"face.appeared" in p
                                          for t, p, _ in m), timeout=60)
        ev = next(json.loads(p) for t, p, _ in msgs if t == "livefaces/lobby/events")
        assert ev["schema"].startswith("livefaces.event/") and ev["source"] == "lobby"
        assert any(t == "livefaces/lobby/status" for t, _, _ in msgs)
        assert any(t == "livefaces/available" and p == b"online" for t, p, _ in msgs)

        # the browser: live view with a face box, event feed filling
        from _chromium import Browser, open_page

        browser = Browser(tmp_path / "profile")

        async def drive():
            async with aiohttp.ClientSession() as session:
                page = await open_page(browser, session, base + f"?token={TOKEN}")
                try:
                    await page.wait_js("(() => { const i = document.querySelector('.cam img.live');"
                                       " return i && i.naturalWidth === 640; })()", timeout=60)
                except AssertionError:
                    state = await page.eval("(() => { const i = document.querySelector('.cam img.live');"
                                            " return i ? [i.src, i.complete, i.naturalWidth] : "
                                            "document.body.innerHTML.slice(0, 500); })()")
                    raise AssertionError(f"live view never showed a frame: {state}; "
                                         f"server log: {''.join(stderr_lines)[-2000:]}") from None
                n = await page.wait_js("document.querySelectorAll('#events li').length >= 2 && "
                                       "document.querySelectorAll('#events li').length", timeout=60)
                best = (0, b"", {})
                for _ in range(8):  # frames between detections may carry a tracked box colour
                    rect = await page.eval("(() => { const r = document.querySelector('.cam img.live')"
                                           ".getBoundingClientRect(); return {x: r.x, y: r.y, "
                                           "width: r.width, height: r.height}; })()")
                    png = await page.screenshot()
                    green = count_box_pixels(png, rect)
                    if green > best[0]:
                        best = (green, png, rect)
                    if green > 200:
                        break
                    await asyncio.sleep(0.5)
                feed = await page.eval("document.getElementById('events').textContent")
                html = await page.eval("document.documentElement.outerHTML")
                await page.ws.close()
                return n, best, feed, html

        try:
            n, (green, png, _), feed, html = asyncio.run(asyncio.wait_for(drive(), 180))
        finally:
            browser.close()
        (tmp_path / "page.png").write_bytes(png)
        assert n >= 2 and "lobby face." in feed
        assert green > 200, f"no face box in the live view ({green} px); screenshot in {tmp_path}"

        # metrics count what the broker acknowledged (statistics reach the hub once a second:
        # the page may have shown the first frames before the first snapshot with counts)
        req = urllib.request.Request(base + "metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        deadline = time.monotonic() + 15
        while True:
            text = urllib.request.urlopen(req, timeout=10).read().decode()
            if re.search(r'livefaces_events_published_total\{camera="lobby"\} [1-9]', text) and \
                    re.search(r'livefaces_frames_refined_total\{camera="lobby"\} [1-9]', text) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        m = re.search(r'livefaces_events_published_total\{camera="lobby"\} (\d+)', text)
        assert m and int(m.group(1)) >= 1, text
        assert re.search(r'livefaces_verified_fps\{camera="lobby"\} [1-9]', text), text
        assert re.search(r'livefaces_frames_refined_total\{camera="lobby"\} [1-9]', text), text
        assert re.search(r"livefaces_publisher_errors_total\{publisher=\"mqtt\"\} 0", text)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(5)
        reader.join(5)
    assert rc == 0, "".join(stderr_lines)
    sub.wait_for(lambda m: ("livefaces/available", b"offline", False) in m
                 or ("livefaces/available", b"offline", True) in m, timeout=20)
    sub.close()
    assert "Traceback" not in "".join(stderr_lines)
    assert TOKEN not in "".join(stderr_lines)

