"""A real Home Assistant core for tests: PyPI ``homeassistant`` 2024.3.3 (the last line that
installs on Python 3.11) in its own virtual environment, made here the first time (a few
minutes; kept in ``~/.cache/livefaces/``, or ``$LIVEFACES_HA_VENV``), started as ``hass`` on
a throw-away config folder whose MQTT integration points at the test's mosquitto, with a
long-lived access token for its REST API (written into the folder's auth store: no
onboarding, no login).

Pins beside HA: ``paho-mqtt==1.6.1`` (its MQTT integration's requirement) and the packages HA
would install at its first start (HA is run with ``--skip-pip``: it never installs anything
while it runs) and ``josepy<2`` (josepy 2
removed ``ComparableX509``, which HA 2024.3's ``acme`` still imports on the auth path: every
authenticated request would answer 500).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from _mosquitto import free_port

HA_VERSION = "2024.3.3"
PINS = [f"homeassistant=={HA_VERSION}", "paho-mqtt==1.6.1", "josepy<2",
        # what HA itself would pip-install at its first start for the integrations it always
        # loads (frontend, recorder, file_upload that mqtt needs, ...): its manifests' pins
        "home-assistant-frontend==20240307.0", "SQLAlchemy==2.0.27", "fnv-hash-fast==0.5.0",
        "janus==1.0.0", "numpy==1.26.0", "pillow==10.2.0", "PyTurboJPEG==1.7.1",
        "psutil-home-assistant==0.0.1", "securetar==2024.2.1", "pyotp==2.8.0", "PyQRCode==1.2.1"]


def venv_dir() -> Path:
    return Path(os.environ.get("LIVEFACES_HA_VENV")
                or Path.home() / ".cache" / "livefaces" / f"ha-{HA_VERSION}")


def ensure_venv(timeout: float = 1500) -> Path:
    """The ``hass`` executable, installing the venv first if it is not complete."""
    d = venv_dir()
    marker = d / "livefaces-ready"
    hass = d / "bin" / "hass"
    if marker.exists() and marker.read_text() == " ".join(PINS) and hass.exists():
        return hass
    d.parent.mkdir(parents=True, exist_ok=True)
    try:
        if not (d / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(d)], check=True,
                           capture_output=True, timeout=120)
        subprocess.run([str(d / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", *PINS], check=True,
                       capture_output=True, text=True, timeout=timeout)
    except subprocess.CalledProcessError as e:
        pytest.fail(f"cannot install Home Assistant {HA_VERSION} into {d}: "
                    f"{(e.stderr or e.stdout or '')[-2000:]}")
    except subprocess.TimeoutExpired:
        pytest.fail(f"installing Home Assistant {HA_VERSION} into {d} took over {timeout:.0f} s")
    marker.write_text(" ".join(PINS))
    return hass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(issuer: str, key: str) -> str:
    """An HS256 JWT as HA's auth checks it (``iss`` = the refresh token's id)."""
    now = int(time.time())
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"iss": issuer, "iat": now, "exp": now + 86400}).encode())
    sig = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def write_config(cfg: Path, mqtt_port: int, http_port: int) -> str:
    """A config folder (HTTP on loopback, the REST API, MQTT with discovery as a config entry);
    returns the access token."""
    storage = cfg / ".storage"
    storage.mkdir(parents=True)
    (cfg / "configuration.yaml").write_text(
        "homeassistant:\n  name: livefaces-test\n  latitude: 0\n  longitude: 0\n  elevation: 0\n"
        "  unit_system: metric\n  time_zone: UTC\n  country: DE\n"
        f"http:\n  server_host: 127.0.0.1\n  server_port: {http_port}\napi:\n")

    def store(key: str, data: dict[str, Any], version: int = 1) -> None:
        (storage / key).write_text(json.dumps({"version": version, "minor_version": 1,
                                               "key": key, "data": data}))

    store("core.config_entries", {"entries": [{
        "entry_id": "livefacestestmqtt", "version": 1, "minor_version": 1, "domain": "mqtt",
        "title": "mqtt", "data": {"broker": "127.0.0.1", "port": mqtt_port, "discovery": True},
        "options": {}, "pref_disable_new_entities": False, "pref_disable_polling": False,
        "source": "user", "unique_id": None, "disabled_by": None}]})
    store("onboarding", {"done": ["user", "core_config", "analytics", "integration"]}, 4)
    rid, key = secrets.token_hex(16), secrets.token_hex(64)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    store("auth", {
        "users": [{"id": "livefacestest", "group_ids": ["system-admin"], "is_owner": True,
                   "is_active": True, "name": "test", "system_generated": False,
                   "local_only": False}],
        "groups": [{"id": "system-admin", "name": "Administrators"},
                   {"id": "system-users", "name": "Users"},
                   {"id": "system-read-only", "name": "Read Only"}],
        "credentials": [],
        "refresh_tokens": [{"id": rid, "user_id": "livefacestest", "client_id": None,
                            "client_name": "livefaces-test", "client_icon": None,
                            "token_type": "long_lived_access_token", "created_at": now,
                            "access_token_expiration": 315360000.0,
                            "token": secrets.token_hex(64), "jwt_key": key, "last_used_at": None,
                            "last_used_ip": None, "credential_id": None,
                            "version": HA_VERSION}]})
    return _jwt(rid, key)


class HomeAssistant:
    """``hass`` running on ``cfg`` (:meth:`start`, :meth:`stop`); :meth:`states` through the
    REST API."""

    def __init__(self, hass: Path, cfg: Path, mqtt_port: int):
        self.hass, self.cfg = hass, cfg
        self.port = free_port()
        self.token = write_config(cfg, mqtt_port, self.port)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 240) -> None:
        self.log = open(self.cfg / "hass.out", "ab")
        self.proc = subprocess.Popen([str(self.hass), "-c", str(self.cfg), "--skip-pip"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"hass exited {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.get("/api/") == {"message": "API running."}:
                    return
            except (OSError, ValueError):  # not listening yet (URLError is an OSError)
                pass
            time.sleep(1)
        raise AssertionError(f"Home Assistant did not answer in {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        p = self.cfg / "home-assistant.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""

    def get(self, path: str) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def states(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        """``{entity_id: state object}`` of the entities whose id contains ``prefix``."""
        return {s["entity_id"]: s for s in self.get("/api/states") if prefix in s["entity_id"]}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()

