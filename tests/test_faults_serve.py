"""Issue 20 (serve, security, the people folder), each fault reproduced against the real thing:
a real aiohttp server on a socket, raw sockets, the CLI in a subprocess, real people folders
and the real identification worker.

DNS rebinding (any ``Host:`` answered without a token); tokens guessable at full speed with no
log line; silent and slow connections starving the server and flooding the log; a damaged
people folder (tracebacks; an enrolment half written); people folders of another user and
folder names the CLI refuses.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import signal
import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from live_helpers import start_serve_cli
from test_serve_web import _face_result

from livefaces.serve.config import CameraConfig, WebConfig
from livefaces.serve.hub import Hub
from livefaces.serve.web import WebServer

TOKEN = "tok-issue20-5b7c9d"
AUTH_FAILURES = 10  # docs/serve.md: 10 wrong tokens in 60 s, then 429


@pytest.fixture
def hub() -> Hub:
    h = Hub([CameraConfig("front", "rtsp://10.0.0.5/s1")])
    h.put_result("front", _face_result())
    return h


def _request(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None,
             source: str = "127.0.0.1", server: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(server, port, timeout=10, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- 1. DNS rebinding


def test_without_a_token_only_this_servers_host_names_are_answered(hub):
    named: list[tuple[str, str]] = []

    def name_face(face_id: str, name: str) -> list[str]:
        named.append((face_id, name))
        return [name]

    s = WebServer(hub, WebConfig(port=0, allowed_hosts=("cams.home",)), name_face=name_face).start()
    try:
        post = b'{"name": "mallory"}'
        js = {"Content-Type": "application/json"}
        # a page of attacker.example whose name now resolves to 127.0.0.1 (DNS rebinding)
        for host in ("attacker.example", f"attacker.example:{s.port}", "localhost.attacker.example",
                     "127.0.0.1.nip.io", "cams.home.evil", "[::2]", "localhost:x"):
            st, _, body = _request(s.port, "POST", "/api/people/unknown/front.1", {"Host": host, **js}, post)
            assert st == 403, (host, st, body)
            assert b"host name" in body and len(body) < 200
            for path in ("/", "/api/people", "/api/cameras", "/api/cameras/front/snapshot.jpg"):
                assert _request(s.port, "GET", path, {"Host": host})[0] == 403, (host, path)
        assert named == []  # nobody was enrolled
        # its own names, with any port: loopback names, the bound host, web.allowed_hosts
        for host in ("localhost", f"localhost:{s.port}", "127.0.0.1:1", "[::1]:8780", "LOCALHOST.",
                     "cams.home", "cams.home:443"):
            assert _request(s.port, "GET", "/api/cameras", {"Host": host})[0] == 200, host
        st, _, _ = _request(s.port, "POST", "/api/people/unknown/front.1", {"Host": "localhost", **js}, post)
        assert st == 200 and named == [("front.1", "mallory")]
    finally:
        s.stop()
    # the bound address is one of its names
    s = WebServer(hub, WebConfig(host="127.0.0.2", port=0)).start()
    try:
        assert _request(s.port, "GET", "/api/cameras", {"Host": f"127.0.0.2:{s.port}"},
                        server="127.0.0.2")[0] == 200
        assert _request(s.port, "GET", "/api/cameras", {"Host": "evil.example"}, server="127.0.0.2")[0] == 403
    finally:
        s.stop()
    # with a token, the token is the check: any host name, as before
    s = WebServer(hub, WebConfig(port=0, token=TOKEN)).start()
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert _request(s.port, "GET", "/api/cameras", {"Host": "cams.example.org", **auth})[0] == 200
        assert _request(s.port, "GET", "/api/cameras", {"Host": "cams.example.org"})[0] == 401
    finally:
        s.stop()


# --------------------------------------------------------------------------- 2. token guessing


def test_wrong_tokens_are_rate_limited_per_client_and_logged_without_the_token(hub, caplog):
    caplog.set_level(logging.INFO)
    s = WebServer(hub, WebConfig(port=0, token=TOKEN)).start()
    guesses = [f"guess-{i:04d}" for i in range(AUTH_FAILURES + 5)]
    try:
        answers = [_request(s.port, "GET", "/api/cameras", {"Authorization": f"Bearer {g}"})
                   for g in guesses]
        assert [a[0] for a in answers[:AUTH_FAILURES]] == [401] * AUTH_FAILURES
        assert {a[0] for a in answers[AUTH_FAILURES:]} == {429}
        assert int(answers[-1][1]["retry-after"]) > 0
        # the right token is no way out for the guessing client (otherwise guessing goes on) ...
        assert _request(s.port, "GET", "/api/cameras", {"Authorization": f"Bearer {TOKEN}"})[0] == 429
        assert _request(s.port, "GET", f"/?token={guesses[0]}", {})[0] == 429  # any credential
        assert _request(s.port, "GET", "/health", {})[0] == 200
        # ... while another client is not affected
        ok = _request(s.port, "GET", "/api/cameras", {"Authorization": f"Bearer {TOKEN}"},
                      source="127.0.0.2")
        assert ok[0] == 200
        # no token at all is not a guess: a browser opening the page first is never locked out
        for _ in range(AUTH_FAILURES + 5):
            assert _request(s.port, "GET", "/api/cameras", {}, source="127.0.0.3")[0] == 401
    finally:
        s.stop()
    text = "\n".join(r.getMessage() for r in caplog.records)
    lines = [r.getMessage() for r in caplog.records if "wrong token" in r.getMessage()]
    assert 1 <= len(lines) <= 2 and all("127.0.0.1" in ln for ln in lines), lines
    assert not any(g in text for g in guesses) and TOKEN not in text


# --------------------------------------------------------------------------- 3. slow clients


def _serve_with_fd_limit(cfg: Path, limit: int):  # noqa: ANN202
    """``livefaces serve --config cfg`` under an open-file limit: ``(proc, stderr lines, set
    once it serves, [its URL])``."""
    from live_helpers import start_serve_cli

    proc, lines, ready, url, _ = start_serve_cli("serve", "--config", str(cfg), max_files=limit)
    return proc, lines, ready, url


def test_silent_and_slow_clients_neither_starve_serve_nor_flood_its_log(tmp_path: Path):
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("cameras:\n  cam: synthetic:160x120@5\ndefaults:\n  detect_fps: 1\n"
                   "web:\n  port: 0\n  idle_timeout: 1\n")

    proc, lines, ready, url = _serve_with_fd_limit(cfg, 128)  # as in a container, `ulimit -n 128`
    socks: list[socket.socket] = []
    try:
        assert ready.wait(120), "".join(lines)
        port = int(url[0].rsplit(":", 1)[1].strip("/"))
        for i in range(150):  # more than the process has file descriptors for
            c = socket.socket()
            c.settimeout(10)
            try:
                c.connect(("127.0.0.1", port))
                if i % 2:  # half a request; the rest never comes
                    c.sendall(b"GET /api/cameras HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            except OSError:
                pass
            socks.append(c)
        with urllib.request.urlopen(url[0] + "health", timeout=10) as r:
            assert r.status == 200
        with urllib.request.urlopen(url[0], timeout=10) as r:
            assert r.status == 200
        # a silent client and a slow one are closed by the server (EOF), not kept for ever
        fresh_silent, fresh_slow = socket.create_connection(("127.0.0.1", port), timeout=30), \
            socket.create_connection(("127.0.0.1", port), timeout=30)
        socks += [fresh_silent, fresh_slow]
        fresh_slow.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert fresh_silent.recv(100) == b""
        assert fresh_slow.recv(100) == b""
    finally:
        for c in socks:
            c.close()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        time.sleep(0.2)
    err = "".join(lines)
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err
    assert len(err.splitlines()) < 20, err[-3000:]  # was 100,000+ lines of the same error
    assert len(re.findall("cannot accept connections", err)) <= 1


def test_an_internal_error_repeated_by_a_client_is_one_log_line(caplog):
    caplog.set_level(logging.DEBUG)

    class BrokenHub(Hub):
        def jpeg(self, name: str):  # noqa: ANN201 - a bug behind one route
            raise RuntimeError("encoder exploded")

    hub = BrokenHub([CameraConfig("front", "rtsp://10.0.0.5/s1")])
    s = WebServer(hub, WebConfig(port=0)).start()
    try:
        answers = [_request(s.port, "GET", "/api/cameras/front/snapshot.jpg", {}) for _ in range(30)]
    finally:
        s.stop()
    assert {a[0] for a in answers} == {500} and all(b"Traceback" not in a[2] for a in answers)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "internal error" in errors[0].getMessage() and errors[0].exc_info


# --------------------------------------------------------------------------- 4. damaged people


GRACE = Path(__file__).resolve().parents[1] / "livefaces" / "data" / "grace_hopper.jpg"


def _person(root: Path, name: str, k: int = 2) -> Path:
    """A person of made-up embeddings, written by the people-folder code itself."""
    from livefaces.identify.gallery import save_person

    rng = np.random.default_rng(len(name))
    save_person(root, name, [(f"{name}{i}.jpg", rng.normal(0, 0.1, 128).astype(np.float32),
                              np.full((96, 96, 3), 90, np.uint8)) for i in range(k)])
    return root / name


def _one_line_exit_3(r, *must: str) -> str:  # noqa: ANN001
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("livefaces: error: "), r.stderr
    for m in must:
        assert m in lines[0], (m, lines[0])
    return lines[0]


def _damage(kind: str, person: Path) -> Path:
    """Damage ``person`` as the probe did; the file to be named."""
    npz, meta = person / "embeddings.npz", person / "person.json"
    if kind == "truncated":  # BadZipFile
        npz.write_bytes(npz.read_bytes()[:40])
        return npz
    if kind == "empty":  # EOFError
        npz.write_bytes(b"")
        return npz
    if kind == "npy":  # np.load gives an array, not an archive: AttributeError/TypeError
        with npz.open("wb") as f:
            np.save(f, np.zeros((2, 128), np.float32))
        return npz
    if kind == "list":  # person.json not an object: AttributeError
        meta.write_text("[]")
        return meta
    if kind == "dangling":
        npz.unlink()
        npz.symlink_to(person / "nowhere.npz")
        return npz
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["truncated", "empty", "npy", "list", "dangling"])
def test_a_damaged_people_folder_is_one_line_naming_the_file(tmp_path, kind):
    from conftest import run_cli

    root = tmp_path / "people"
    _person(root, "ada")
    bad = _damage(kind, _person(root, "bob"))
    r = run_cli("detect", str(GRACE), "--people", str(root))
    _one_line_exit_3(r, str(bad))
    r = run_cli("people", "list", "--people", str(root))
    _one_line_exit_3(r, str(bad))
    if kind in ("truncated", "dangling"):  # the live commands: the worker's load, the parent's check
        r = run_cli("watch", "synthetic:160x120@5", "--max-frames", "5", "--people", str(root))
        _one_line_exit_3(r, str(bad))
    # the fix the message gives works
    r = run_cli("people", "remove", "bob", "--people", str(root))
    assert r.returncode == 0, r.stderr
    r = run_cli("people", "list", "--people", str(root))
    assert r.returncode == 0 and r.stdout.startswith("ada: 2 photos"), r.stderr


def test_naming_a_face_while_another_person_is_damaged_writes_nothing(tmp_path, detector):
    """Serve's naming path for real: the identification worker process enrols the face."""
    pytest.importorskip("dlib", reason="the identify extra")
    from livefaces.errors import LiveFacesError
    from livefaces.identify.live import LiveIdentifier
    from livefaces.imageio import read_image

    root = tmp_path / "people"
    _person(root, "ada")
    bob = _person(root, "bob")
    image = read_image(GRACE)
    face = detector.detect(image)
    assert len(face) == 1
    ident = LiveIdentifier(root).start()
    try:
        _damage("truncated", bob)  # damaged while serve runs
        with pytest.raises(LiveFacesError) as e:
            ident.enrol("carol", image, face)
        assert str(bob / "embeddings.npz") in str(e.value) and "damaged" in str(e.value)
        assert sorted(p.name for p in root.iterdir()) == ["ada", "bob"]  # all or nothing
    finally:
        ident.close()
    # the CLI's add: the same
    from conftest import run_cli

    r = run_cli("people", "add", "carol", str(GRACE), "--people", str(root))
    _one_line_exit_3(r, str(bob / "embeddings.npz"))
    assert sorted(p.name for p in root.iterdir()) == ["ada", "bob"]


# --------------------------------------------------------------------------- 5. ownership, names


def test_a_people_folder_of_another_user_is_refused(tmp_path):
    from conftest import run_cli

    if os.getuid() != 0:
        pytest.skip("needs root (os.chown to another user)")
    root = tmp_path / "people"
    _person(root, "ada")
    os.chown(root, 12345, 12345)  # mode 0700 still: private, but not ours
    for args in (("people", "list", "--people", str(root)), ("detect", str(GRACE), "--people", str(root))):
        _one_line_exit_3(run_cli(*args), "belongs to another user", "uid 12345", "chown")
    os.chown(root, 0, 0)
    os.chown(root / "ada" / "embeddings.npz", 12345, 12345)  # one file inside: the same
    _one_line_exit_3(run_cli("people", "list", "--people", str(root)), "ada/embeddings.npz")


@pytest.mark.parametrize("bad", ["x+#", "<b>hi", "_x", "a b"])
def test_names_on_disk_follow_the_clis_rules(tmp_path, bad):
    from conftest import run_cli

    r = run_cli("people", "remove", bad, "--people", str(tmp_path / "p"))
    assert r.returncode == 3 and "invalid name" in r.stderr  # the CLI refuses the name ...
    root = tmp_path / "people"
    shutil.copytree(_person(root, "ada"), root / bad)  # ... so a folder of that name is no person
    os.chmod(root / bad, 0o700)
    line = _one_line_exit_3(run_cli("people", "list", "--people", str(root)), "is not a person name")
    assert repr(bad) in line
    _one_line_exit_3(run_cli("detect", str(GRACE), "--people", str(root)), "is not a person name")


# --------------------------------------------------------------------------- 6. terminal output


class _HostileServer:
    """An HTTP server that says what a hostile or broken 'serve' could: newlines, ANSI escapes
    and bidirectional overrides in face ids, camera names and error messages."""

    UNKNOWN = {"enabled": True, "people": [], "unknown": [
        {"id": "door.1\nFORGED line\x1b[31m", "camera": "door\x1b]0;pwned\x07", "track_id": 1,
         "seen": "now\r\u202eevil"}]}

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/api/people":
                    self._send(200, json.dumps(outer.UNKNOWN).encode())
                else:
                    self._send(200, b"\xff\xd8fake", "image/jpeg")

            def do_POST(self) -> None:  # noqa: N802
                self._send(400, json.dumps({"error": "no\nFORGED2 \x1b[2Jcleared", "status": 400}).encode())

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_people_unknown_escapes_what_the_server_says_and_save_onto_a_file_is_one_line(tmp_path):
    from conftest import run_cli

    srv = _HostileServer()
    try:
        r = run_cli("people", "unknown", "--server", srv.url)
        assert r.returncode == 0, r.stderr
        out = r.stdout.splitlines()
        assert len(out) == 1, r.stdout  # one face, one line: no forged line
        for ch in ("\x1b", "\r", "\x07", "\u202e"):
            assert ch not in r.stdout + r.stderr, repr(ch)
        assert "door.1\\nFORGED line\\x1b[31m" in out[0] and "\\u202e" in out[0]
        r = run_cli("people", "name", "door.1", "ada", "--server", srv.url)
        line = _one_line_exit_3(r, "HTTP 400", "no\\nFORGED2 \\x1b[2Jcleared")
        assert "\x1b" not in line
        crops = tmp_path / "crops.jpg"
        crops.write_bytes(b"not a folder")
        _one_line_exit_3(run_cli("people", "unknown", "--server", srv.url, "--save", str(crops)),
                         "--save", "not a folder")
        assert crops.read_bytes() == b"not a folder"
        r = run_cli("people", "unknown", "--server", srv.url, "--save", str(tmp_path / "saved"))
        assert r.returncode == 0, r.stderr
        assert [p.name for p in (tmp_path / "saved").iterdir()] == ["door.1_FORGED_line__31m.jpg"]
    finally:
        srv.close()
    # a person.json edited to carry escapes: 'people list' prints them escaped too
    import json

    root = tmp_path / "people"
    meta_file = _person(root, "ada") / "person.json"
    meta = json.loads(meta_file.read_text())
    meta["photos"][0]["source"] = "a.jpg\n\x1b[2Jforged"
    meta_file.write_text(json.dumps(meta))
    r = run_cli("people", "list", "--people", str(root))
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and len(r.stdout.splitlines()) == 2, r.stdout
    assert "a.jpg\\n\\x1b[2Jforged" in r.stdout


# --------------------------------------------------------------------------- 7. MQTT topic prefix


@pytest.mark.parametrize("prefix, why", [("$SYS/lf", "must not start with '$'"),
                                         ("$share/x", "must not start with '$'"),
                                         ("lf/+/x", "must not contain the wildcards"),
                                         ("lf/#", "must not contain the wildcards")])
def test_a_topic_prefix_the_broker_drops_is_refused_at_its_line(tmp_path, prefix, why):
    from conftest import run_cli

    from livefaces.publish.mqtt import MqttPublisher

    cfg = tmp_path / "serve.yaml"
    cfg.write_text(f"cameras:\n  cam: synthetic:160x120@5\nmqtt:\n  host: 127.0.0.1\n"
                   f"  topic_prefix: \"{prefix}\"\n")
    r = run_cli("serve", "--config", str(cfg), "--check-config")
    _one_line_exit_3(r, f"{cfg}:5: mqtt.topic_prefix: {why}")
    with pytest.raises(ValueError, match="topic_prefix"):  # the library's publisher too
        MqttPublisher("127.0.0.1", topic_prefix=prefix)


# --------------------------------------------------------------------------- 8. what is said


def test_serve_on_all_interfaces_says_so_with_addresses_that_answer():
    proc, lines, ready, url, _ = start_serve_cli("serve", "cam=synthetic:160x120@5", "--port", "0",
                                                 "--host", "0.0.0.0", "--token", TOKEN,
                                                 "--detect-fps", "1")
    try:
        assert ready.wait(120), "".join(lines)
        line = next(ln for ln in lines if "serving" in ln)
        m = re.search(r"on http://0\.0\.0\.0:(\d+)/ \(all interfaces: from another machine e\.g\. "
                      r"(http://\S+), from this one (http://127\.0\.0\.1:\d+/)\)", line)
        assert m, line
        port = m.group(1)
        for base in (m.group(2), m.group(3)):
            assert base.endswith(f":{port}/"), line
            if "THIS-MACHINES-ADDRESS" in base:  # no network here: nothing to try
                continue
            with urllib.request.urlopen(base + "health", timeout=10) as r:
                assert r.status == 200, base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_a_load_swinging_across_the_thresholds_is_one_episode(caplog):
    from livefaces.serve.app import rate_watch

    caplog.set_level(logging.INFO)
    now = [0.0]
    w = rate_watch(window=5.0, clock=lambda: now[0])

    def feed(rate: float, seconds: int) -> None:
        for _ in range(seconds):
            now[0] += 1.0
            w.update("front", 5.0, rate)

    feed(5.0, 10)
    for _ in range(4):  # 40 s of a swinging load: 4 s overloaded, 6 s fine (was 4 episodes)
        feed(0.5, 4)
        feed(5.0, 6)
    behind = [r.getMessage() for r in caplog.records if "falling behind" in r.getMessage()]
    assert len(behind) == 1, behind
    assert not [r for r in caplog.records if "caught up" in r.getMessage()]
    feed(5.0, 15)  # really caught up: the end of the one episode, once
    assert len([r for r in caplog.records if "caught up" in r.getMessage()]) == 1
    assert "front" not in w.behind


def test_presence_does_not_flap_at_a_track_change(broker):
    """A person's track ends and a new one begins (a look away, a crossing): the retained
    presence topic on a real mosquitto stays 'present'; 'absent' once they are really gone."""
    from test_serve_mqtt import Subscriber

    from livefaces.publish.mqtt import MqttPublisher
    from livefaces.serve.presence import Presence, PresenceSink

    sub = Subscriber(broker.port, client_id="presence-sub")
    assert sub.subscribed.wait(10)
    pub = MqttPublisher("127.0.0.1", broker.port, client_id="presence-pub")
    pub.start()
    hub = Hub([CameraConfig("hall", "rtsp://10.0.0.5/s1")])
    sink = PresenceSink(Presence(["ada"], absent_after=1.0), hub, ["hall"], pub)
    topic = "livefaces/hall/people/ada"

    def ev(kind: str, track: int, name: str | None = "ada") -> dict:
        return {"schema": 1, "type": kind, "source": "hall", "track_id": track, "time": "t",
                "identity": {"name": name}}

    try:
        sink.announce()
        sink.on_event(ev("face.identified", 1))
        sink.on_event(ev("face.lost", 1))           # track 1 ends ...
        sink.on_event(ev("face.identified", 2))     # ... track 2, a moment later: still her
        sink.on_event(ev("face.identified", 2, None))  # her name revoked for a while ...
        sink.on_event(ev("face.identified", 2))     # ... and settled again
        assert hub.people_status()[0]["present"] == ["hall"]
        sink.on_event(ev("face.lost", 2))           # she leaves
        assert hub.people_status()[0]["present"] == ["hall"]  # within the hold-off
        deadline = time.monotonic() + 20
        while hub.people_status()[0]["present"] and time.monotonic() < deadline:
            sink.on_stats(None)  # type: ignore[arg-type]  (the pipeline's ~1 s tick)
            time.sleep(0.1)
        sub.wait_for(lambda m: [p for t, p, _ in m if t == topic][-1:] == [b"absent"]
                     and len([p for t, p, _ in m if t == topic]) >= 3, timeout=20)
        seen = [p for t, p, _ in sub.messages if t == topic]
        assert seen == [b"absent", b"present", b"absent"], seen
    finally:
        pub.close()
        sub.close()


# --------------------------------------------------------------------------- 10. the serve extra


def test_the_serve_extra_is_what_serve_imports_and_what_the_docs_list():
    import tomllib

    root = Path(__file__).resolve().parents[1]
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["serve"]
    names = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in extra}
    # what 'livefaces serve' checks for before starting (cli/serve.py), by distribution name
    assert {"aiohttp", "paho-mqtt", "pyyaml", "prometheus-client"} <= names, names
    readme = (root / "README.md").read_text()
    row = next(ln for ln in readme.splitlines() if ln.startswith("| `serve` |"))
    install = next(ln for ln in readme.splitlines() if ln.startswith("pip install '.[cpu,serve]'"))
    intro = (root / "docs" / "serve.md").read_text().split("the `serve` extra (", 1)[1].split(")", 1)[0]
    for text in (row, install, intro):
        assert all(n in text.lower() for n in names), (text, names)
