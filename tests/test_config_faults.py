"""Faults a probe found in the serve config / source specs, each reproduced through the CLI.

Every CLI case asserts: exit code 3, exactly one ``livefaces: error:`` line on stderr (or the
documented multi-problem list), no traceback, no password anywhere in the output.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from livefaces.cli._live import demo_clip
from livefaces.errors import SourceError
from livefaces.redact import redact_text, redact_url
from livefaces.serve.config import ConfigError, build_config, parse_config
from livefaces.sources import open_source, source_problem

PW = "s3cretPW"


@pytest.fixture(autouse=True)
def _no_token_env(monkeypatch):
    monkeypatch.delenv("LIVEFACES_TOKEN", raising=False)


def _one_line_error(r, *needles: str) -> str:
    out = r.stdout + r.stderr
    assert r.returncode == 3, (r.returncode, out)
    assert "Traceback" not in out and PW not in out and "pw@" not in out, out
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("livefaces: error: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- 1. alias bomb


def test_billion_laughs_is_refused_at_the_first_alias(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    # anchors defined first, then used: the real "billion laughs" shape (9**9 strings)
    lines = ['lol1: &l1 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(2, 10):
        lines.append(f"lol{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    bomb.write_text("\n".join(lines) + "\ncameras:\n  front: rtsp://h/x\ndetector:\n"
                    "  thresholds: *l9\n")
    # 20 s is a hang guard only (before the fix: 45 s+ and 1.16 GB)
    r = run_cli("serve", "--config", str(bomb), "--check-config", timeout=20)
    _one_line_error(r, f"{bomb}:2:", "aliases (*l1) are not supported")
    # and not only in --check-config: serve itself refuses it the same way
    r2 = run_cli("serve", "--config", str(bomb), "--duration", "1", timeout=20)
    assert r2.stderr == r.stderr and r2.returncode == 3


def test_alias_in_a_camera_is_refused_with_its_line():
    text = "defaults: &d {detect_fps: 2}\ncameras:\n  a:\n    url: rtsp://h/x\n    <<: *d\n"
    with pytest.raises(ConfigError, match=r"^c.yaml:5: not valid YAML: YAML aliases \(\*d\)"):
        parse_config(text, filename="c.yaml", env={})


@pytest.mark.parametrize("content", [b"\x00" * (2 << 20), b"cameras:\n" + b"#" * (2 << 20)],
                         ids=["zeros", "comment"])
def test_huge_config_file_is_refused_unparsed(tmp_path, content):
    f = tmp_path / "big.yaml"
    f.write_bytes(content)
    r = run_cli("serve", "--config", str(f), "--check-config", timeout=20)
    _one_line_error(r, "bigger than 1 MiB")


def test_deeply_nested_yaml_is_one_line(tmp_path):
    f = tmp_path / "deep.yaml"
    f.write_text("cameras:\n  a: rtsp://h/x\ndetector:\n  thresholds: " + "[" * 5000 + "]" * 5000 + "\n")
    r = run_cli("serve", "--config", str(f), "--check-config", timeout=20)
    _one_line_error(r, "nested too deeply")


# --------------------------------------------------------------------------- 2. NaN / inf


@pytest.mark.parametrize("field, yaml_value, line", [
    ("cameras.a.detect_fps", ".nan", 4),
    ("cameras.a.min_face_size", ".inf", 4),
    ("defaults.detect_fps", ".NaN", 2),
    ("web.stream_fps", ".nan", 6),
    ("web.stream_fps", "-.inf", 6),
    ("detector.factor", ".nan", 6),
    ("detector.thresholds", "[.nan, 0.7, 0.7]", 6),
])
def test_nan_and_inf_are_refused_with_file_line_field(tmp_path, field, yaml_value, line):
    section, *rest = field.split(".")
    if section == "cameras":
        text = f"defaults: {{}}\ncameras:\n  a:\n    {rest[1]}: {yaml_value}\n    url: rtsp://h/x\n"
    elif section == "defaults":
        text = f"defaults:\n  {rest[0]}: {yaml_value}\ncameras:\n  a: rtsp://h/x\n\n"
    else:
        text = f"cameras:\n  a: rtsp://h/x\n\n\n{section}:\n  {rest[0]}: {yaml_value}\n"
    f = tmp_path / "c.yaml"
    f.write_text(text)
    r = run_cli("serve", "--config", str(f), "--check-config", timeout=30)
    msg = _one_line_error(r, f"{f}:{line}: {field}: ")
    assert "finite" in msg or "between 0 and 1" in msg


def test_valid_config_never_yields_a_non_finite_number():
    """What validation lets through must serialise as strict JSON (the API used to emit NaN)."""
    cfg = parse_config("cameras:\n  a: {url: rtsp://h/x, detect_fps: 60}\n", env={})
    c = cfg.cameras[0]
    json.dumps({"detect_fps": c.detect_fps, "min": c.min_face_size,
                "stream_fps": cfg.web.stream_fps}, allow_nan=False)
    with pytest.raises(ConfigError, match="detect_fps: must be <= 60"):
        parse_config("cameras:\n  a: {url: rtsp://h/x, detect_fps: 1.0e+308}\n", env={})


@pytest.mark.parametrize("flag, value", [("--detect-fps", "nan"), ("--detect-fps", "inf"),
                                         ("--min-face", "nan")])
def test_nan_on_the_command_line_is_refused(flag, value):
    r = run_cli("serve", "rtsp://h/x", flag, value, "--check-config", timeout=30)
    # a bad command line (issue 20): argparse's usage error, exit 2, one line naming the flag
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(errors) == 1 and f"argument {flag}: invalid value '{value}'" in errors[0], r.stderr


# --------------------------------------------------------------------------- 3. one path


BAD_SOURCES = [
    ("ftp", f"ftp://u:{PW}@h/x.mp4", "unsupported URL scheme 'ftp'"),
    ("gopher", "gopher://h/", "unsupported URL scheme 'gopher'"),
    ("javascript", "javascript:alert(1)", "unsupported URL scheme 'javascript'"),
    ("javascript-slashes", "javascript://h/%0aalert(1)", "unsupported URL scheme 'javascript'"),
    ("missing-file", "no/such/clip.mp4", "no such file or folder"),
    ("ipv6-bracket", f"rtsp://u:{PW}@[::1/x", "not a valid URL"),
    ("port", f"rtsp://u:{PW}@h:70000/x", "not a valid URL (the port"),
    ("slash-in-password", f"rtsp://u:{PW}/x@h/x", "not a valid URL"),
    ("no-host", "rtsp:///x", "has no host"),
    ("blank", "   ", "empty"),
]


@pytest.mark.parametrize("mode", ["--check-config", "serve"])
@pytest.mark.parametrize("case, url, needle", BAD_SOURCES, ids=[c[0] for c in BAD_SOURCES])
def test_config_file_bad_url_refused_by_check_and_serve_alike(tmp_path, mode, case, url, needle):
    f = tmp_path / "cams.yaml"
    f.write_text(f"cameras:\n  ok: rtsp://h/fine\n  front:\n    url: {json.dumps(url)}\n")
    args = ["--check-config"] if mode == "--check-config" else ["--port", "0", "--duration", "1"]
    r = run_cli("serve", "--config", str(f), *args, timeout=60)
    _one_line_error(r, f"{f}:4: cameras.front.url: ", needle)


@pytest.mark.parametrize("case, url, needle", BAD_SOURCES, ids=[c[0] for c in BAD_SOURCES])
def test_command_line_bad_url_names_the_camera(case, url, needle):
    r = run_cli("serve", "ok=rtsp://h/fine", f"front={url}", "--check-config", timeout=30)
    _one_line_error(r, "source 2 (camera front): ", needle)


def test_check_and_serve_give_the_same_answer(tmp_path):
    """The same function validates for both: identical stderr and exit code on every mistake."""
    f = tmp_path / "cams.yaml"
    f.write_text("cameras:\n  a: ftp://h/x\n  b: nope.mp4\nweb:\n  stream_fps: .nan\n  token: '  '\n")
    a = run_cli("serve", "--config", str(f), "--check-config", "--mqtt", "h:0", timeout=30)
    b = run_cli("serve", "--config", str(f), "--mqtt", "h:0", "--duration", "1", timeout=30)
    assert a.returncode == b.returncode == 3 and a.stderr == b.stderr
    assert "4 problems" not in a.stderr and "5 problems in the configuration" in a.stderr
    for needle in (f"{f}:2: cameras.a.url", f"{f}:3: cameras.b.url", f"{f}:5: web.stream_fps",
                   f"{f}:6: web.token: must not be empty", "--mqtt: port must be >= 1"):
        assert needle in a.stderr, (needle, a.stderr)


def test_accepted_config_starts(tmp_path):
    """The other side of "no drift": what --check-config passes, serve starts (a disabled
    camera's missing file is no problem: serve never opens it)."""
    f = tmp_path / "cams.yaml"
    f.write_text(f"cameras:\n  demo: {json.dumps(demo_clip())}\n  off:\n    url: gone.mp4\n"
                 f"    enabled: false\nweb: {{port: 0}}\ndetector: {{threads: 1}}\n")
    r = run_cli("serve", "--config", str(f), "--check-config", timeout=30)
    assert r.returncode == 0, r.stderr
    r = run_cli("serve", "--config", str(f), "--duration", "1", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("spec, needle", [
    ("h:70000", "--mqtt: port must be <= 65535"),
    ("h:0", "--mqtt: port must be >= 1"),
    ("h:", "--mqtt: the port must be a number"),
    ("h:port", "--mqtt: the port must be a number"),
    (":1883", "--mqtt: host must not be empty"),
    ("", "--mqtt: host must not be empty"),
    ("[::1:1883", "--mqtt: expected HOST, HOST:PORT or [IPv6]:PORT"),
    ("bad host:1883", "--mqtt: host must not contain spaces"),
])
def test_bad_mqtt_override_is_refused(spec, needle):
    r = run_cli("serve", "rtsp://h/x", "--mqtt", spec, "--check-config", timeout=30)
    _one_line_error(r, needle)


@pytest.mark.parametrize("spec, host, port", [
    ("broker", "broker", 1883), ("broker:1884", "broker", 1884), ("[::1]:1885", "::1", 1885),
    ("[::1]", "::1", 1883), ("::1", "::1", 1883)])
def test_good_mqtt_override(spec, host, port):
    cfg = build_config(None, ["rtsp://h/x"], mqtt=spec, env={})
    assert cfg.mqtt is not None and (cfg.mqtt.host, cfg.mqtt.port) == (host, port)


@pytest.mark.parametrize("how", ["--token", "env", "file"])
@pytest.mark.parametrize("token", ["   ", "\t", "two words"])
def test_whitespace_token_is_refused(tmp_path, monkeypatch, how, token):
    f = tmp_path / "cams.yaml"
    web = f"web:\n  host: 0.0.0.0\n  token: {json.dumps(token)}\n" if how == "file" else ""
    f.write_text("cameras:\n  a: rtsp://h/x\n" + web)
    args = ["serve", "--config", str(f), "--check-config"]
    if how == "--token":
        args += ["--host", "0.0.0.0", "--token", token]
    elif how == "env":
        args += ["--host", "0.0.0.0"]
        monkeypatch.setenv("LIVEFACES_TOKEN", token)
    r = run_cli(*args, timeout=30)
    field = {"--token": "--token", "env": "$LIVEFACES_TOKEN", "file": f"{f}:5: web.token"}[how]
    msg = _one_line_error(r, f"{field}: must not")
    assert "<hidden>" in msg and "needs an access token" not in msg


def test_port_override_out_of_range():
    r = run_cli("serve", "rtsp://h/x", "--port", "70000", "--check-config", timeout=30)
    # a bad command line (issue 20): argparse's usage error, exit 2, one line naming the flag
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert errors == ["livefaces serve: error: argument --port: invalid value '70000': must be an "
                      "integer 0 to 65535"], r.stderr


def test_provider_serve_would_refuse_is_refused_by_check_config(tmp_path):
    from livefaces.detect.runtime import available_providers

    f = tmp_path / "cams.yaml"
    f.write_text("cameras:\n  a: rtsp://h/x\ndetector:\n  providers: cuda\n")
    r = run_cli("serve", "--config", str(f), "--check-config", timeout=60)
    if "CUDAExecutionProvider" in available_providers():  # a GPU build: cuda is fine here
        assert r.returncode == 0, r.stderr
    else:
        _one_line_error(r, f"{f}:4: detector.providers: ", "CUDAExecutionProvider not available")


def test_all_cameras_disabled_is_refused_by_check_config(tmp_path):
    f = tmp_path / "cams.yaml"
    f.write_text("cameras:\n  a:\n    url: rtsp://h/x\n    enabled: false\n")
    r = run_cli("serve", "--config", str(f), "--check-config", timeout=30)
    _one_line_error(r, f"{f}:2: cameras: every camera is disabled")


# --------------------------------------------------------------------------- 4. redaction


@pytest.mark.parametrize("url", [
    f"rtsp://u:{PW}@[::1/x",            # cannot be parsed at all
    f"rtsp://u:{PW}/x@h/x",             # '/' in the password: a parser sees host 'u'
    f"rtsp://u:{PW}?x@h/x",
    f"rtsp://u:{PW}#x@h/x",
    f"rtsp://u:{PW}@h:99999/x",
    f"rtsp://u:p@ss:{PW}@h/x",          # '@' in the password
    f"u:{PW}@10.0.0.1/stream",          # the scheme forgotten
    f"rtsp://[::1/x?token={PW}&a=1",    # unparsable, secret in the query
])
def test_redact_url_never_shows_the_password(url):
    assert PW not in redact_url(url)
    if "://" in url:  # in free text only scheme://... can be recognised as a URL
        assert PW not in redact_text(f"Connection refused: '{url}'")


def test_redact_url_keeps_what_is_safe():
    assert redact_url(f"rtsp://u:{PW}@[::1/x") == "rtsp://u:***@[::1/x"
    assert redact_url(f"rtsp://u:{PW}/x@h/x") == "rtsp://u:***@h/x"  # serve's page shows this too
    assert redact_url("rtsp://cam.local:554/s1?ch=1") == "rtsp://cam.local:554/s1?ch=1"
    assert redact_url("/videos/clip.mp4") == "/videos/clip.mp4"


def test_watch_malformed_url_is_one_line_exit_3_without_password():
    r = run_cli("watch", f"rtsp://u:{PW}@[::1/x", timeout=60)
    _one_line_error(r, "rtsp://u:***@[::1/x: not a valid URL")


@pytest.mark.parametrize("case, url, needle", BAD_SOURCES, ids=[c[0] for c in BAD_SOURCES])
def test_open_source_refuses_exactly_what_source_problem_reports(case, url, needle):
    problem = source_problem(url)
    assert problem is not None and needle in problem and PW not in problem
    with pytest.raises(SourceError) as e:
        open_source(url)
    assert str(e.value).endswith(problem) and PW not in str(e.value)
