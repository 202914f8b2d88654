#!/usr/bin/env bash
# Debian packages the integration tests start for real (servers, codecs, browser).
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail
PACKAGES=(
  ffmpeg
  # RTSP server for the live-pipeline tests (tests/rtsp_server.py, run by /usr/bin/python3)
  python3-gi
  gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
  gstreamer1.0-plugins-ugly
  gstreamer1.0-plugins-bad
  # a real X server for the preview-window test (xvfb-run)
  xvfb
  xauth
  x11-utils   # xwininfo: the preview test measures the real window
  mosquitto   # MQTT broker: tests/test_serve_mqtt.py, tests/test_serve_e2e.py
  chromium    # headless browser: tests/test_serve_web.py, tests/test_serve_e2e.py
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing Debian packages: ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
