"""A real RTSP server for the reconnect tests: GStreamer's gst-rtsp-server serving a live test pattern.

Run it with the system ``python3`` (it needs ``python3-gi`` and ``gir1.2-gst-rtsp-server-1.0``,
which ``make rtsp-server`` installs with apt): ``python3 rtsp_server.py PORT [PATH]``. It serves
``rtsp://127.0.0.1:PORT/PATH`` (default ``/cam``): H.264, 320x240, 25 fps, a key frame every
second, and prints ``ready`` once it listens. Kill it to simulate a camera that drops.
"""

from __future__ import annotations

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


def main(argv: list[str]) -> int:
    port = argv[1]
    path = argv[2] if len(argv) > 2 else "/cam"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        sys.stderr.write(f"rtsp_server: cannot listen on 127.0.0.1:{port}\n")
        return 1
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
