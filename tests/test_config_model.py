"""One camera, one engine: serve's typed config model and its JSON Schema, the ``detector:``
section, one error tree (ConfigError, OutputError), one URL redaction, one Signals."""

from __future__ import annotations

import numpy as np
import pytest

from livefaces.errors import ConfigError, LiveFacesError, OutputError

# --------------------------------------------------------------------------- errors


def test_config_error_lives_in_the_error_tree_and_stays_importable_from_serve():
    from livefaces.serve import config

    assert config.ConfigError is ConfigError
    assert issubclass(ConfigError, LiveFacesError) and issubclass(ConfigError, ValueError)
    e = ConfigError(["f.yaml:9: b: late", "f.yaml:2: a: early"])
    assert e.problems == ["f.yaml:2: a: early", "f.yaml:9: b: late"]  # file order
    assert str(e).startswith("2 problems in the configuration:\n  f.yaml:2: a: early")
    assert str(ConfigError(["f.yaml:2: a: bad"])) == "f.yaml:2: a: bad"


def test_writer_on_a_full_disk_raises_one_line_output_error(tmp_path):
    from livefaces.avio import AVWriter

    assert issubclass(OutputError, LiveFacesError) and issubclass(OutputError, OSError)
    out = tmp_path / "rec.mp4"
    (tmp_path / "rec.part.mp4").symlink_to("/dev/full")  # every write: ENOSPC
    w = AVWriter(out, fps=25)
    rgb = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(OutputError) as ei:
        for i in range(200):
            w.write(rgb, i / 25)
        w.close()
    msg = str(ei.value)
    assert msg.startswith(f"{out}: cannot write (No space left on device)")
    assert "\n" not in msg
    assert not out.exists()  # never a file under the final name that is not complete


def test_writer_into_a_missing_folder_raises_output_error_naming_the_file(tmp_path):
    from livefaces.avio import AVWriter

    out = tmp_path / "no" / "such" / "rec.mp4"
    w = AVWriter(out, fps=25)
    with pytest.raises(OutputError, match=rf"^{out}: cannot write \(No such file or directory\)"):
        for i in range(50):
            w.write(np.zeros((64, 64, 3), np.uint8), i / 25)
        w.close()
    with pytest.raises(OSError):  # still an OSError for callers that catch those
        raise OutputError("x")


# --------------------------------------------------------------------------- redaction


def test_one_url_redaction_on_the_ground_floor():
    import ast
    import inspect

    import livefaces.avio
    import livefaces.redact
    import livefaces.serve.config
    import livefaces.sources
    import livefaces.sources.redact

    assert livefaces.sources.redact_url is livefaces.redact.redact_url
    assert livefaces.sources.redact.redact_text is livefaces.redact.redact_text
    assert livefaces.serve.config.redact_url is livefaces.redact.redact_url
    # avio (PyAV) is below the feature modules: it must not reach into sources for this
    imported = {n.module for n in ast.walk(ast.parse(inspect.getsource(livefaces.avio)))
                if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.startswith("sources") for m in imported), imported
    ground = {n.module for n in ast.walk(ast.parse(inspect.getsource(livefaces.redact)))
              if isinstance(n, ast.ImportFrom) and n.level}
    assert not ground  # no livefaces imports at all
    pw = "hunter2"
    cam = livefaces.serve.config.CameraConfig(name="a", url=f"rtsp://u:{pw}@h/x")
    assert cam.safe_url == "rtsp://u:***@h/x" and pw not in repr(cam)


# --------------------------------------------------------------------------- signals


def test_one_signals_class_remembers_the_first_signal_and_restores_handlers():
    import signal
    import threading

    from livefaces.cli import serve as serve_cli
    from livefaces.cli._live import Signals

    assert serve_cli.Signals is Signals and not hasattr(serve_cli, "_Signals")
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with Signals(stop.set) as s:
        assert s.signum is None and not s.interrupted
        signal.raise_signal(signal.SIGTERM)  # handled on the main thread right here
        assert stop.is_set() and s.signum == signal.SIGTERM and s.count == 1
    assert signal.getsignal(signal.SIGTERM) is before
