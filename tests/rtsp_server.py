#!/usr/bin/python3
"""A real RTSP server for the integration tests and the live benchmark (GStreamer's
gst-rtsp-server through python3-gi; run it with Debian's /usr/bin/python3, which has gi).

Serves a folder of JPEG frames (``frame00000.jpg``, ...) as an endless H.264 stream at
``rtsp://127.0.0.1:PORT/live``, looping over the frames at ``--fps``::

    /usr/bin/python3 tests/rtsp_server.py --frames DIR --port 8554 [--fps 25]
        [--user U --password P] [--stall-after SECONDS]

``--stall-after`` stops sending video after that many seconds of each session while keeping
the connection open (a "stalled" camera, for the capture watchdog). ``--user/--password``
make the server require HTTP Basic authentication. Prints ``READY`` on stdout once
listening; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", required=True, help="folder of frame%%05d.jpg")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--stall-after", type=float, default=0.0)
    ap.add_argument("--bitrate", type=int, default=2000, help="kbit/s")
    a = ap.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    caps = f"image/jpeg,framerate={a.fps}/1"
    factory.set_launch(
        f'( multifilesrc location="{a.frames}/frame%05d.jpg" index=0 loop=true caps="{caps}" '
        f"! jpegdec ! videoconvert ! video/x-raw,format=I420 ! valve name=valve drop=false "
        f"! x264enc tune=zerolatency speed-preset=ultrafast bitrate={a.bitrate} "
        f"key-int-max={a.fps} ! video/x-h264,profile=baseline "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    if a.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password or ""), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        perms.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(perms)

    if a.stall_after > 0:
        def on_configure(_factory, media):  # noqa: ANN001
            valve = media.get_element().get_by_name("valve")

            def stall() -> bool:
                valve.set_property("drop", True)
                print("STALLED", flush=True)
                return False

            GLib.timeout_add(int(a.stall_after * 1000), stall)

        factory.connect("media-configure", on_configure)

    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{a.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("READY", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
