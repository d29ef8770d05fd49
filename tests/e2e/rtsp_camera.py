#!/usr/bin/python3
"""A fake RTSP camera for end-to-end tests, built on GStreamer's RTSP server.

Run it with Debian's system interpreter (``/usr/bin/python3``), which has the
``gi`` bindings; the project's venv does not::

    /usr/bin/python3 tests/e2e/rtsp_camera.py --port 8554 --width 320 --height 240

It serves, on ``127.0.0.1`` only:

* ``/cam``   -- a live H.264 test pattern (``videotestsrc``) at 10 fps, with a
  key frame every second, so a client can start decoding within ~1 s;
* ``/audio`` -- an audio-only stream (L16 test tone), for "no video stream"
  error paths.

Any other path answers ``404 Not Found``.

When the server is listening it prints one line to stdout::

    READY rtsp://127.0.0.1:<port>/cam <width>x<height>

(``--port 0`` lets the OS choose a free port; the line gives the real one.)
It then runs until SIGTERM or SIGINT and exits with status 0.  Errors while
building the server are printed to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import signal
import sys

FPS = 10


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--host", default="127.0.0.1")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse_args(argv)

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    for element in ("videotestsrc", "x264enc", "rtph264pay", "audiotestsrc", "rtpL16pay"):
        if Gst.ElementFactory.find(element) is None:
            print(f"rtsp_camera: GStreamer element {element!r} is missing", file=sys.stderr)
            return 2

    video = (
        f"( videotestsrc is-live=true pattern=ball "
        f"! video/x-raw,width={args.width},height={args.height},framerate={FPS}/1 "
        f"! videoconvert "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={FPS} "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    audio = (
        "( audiotestsrc is-live=true "
        "! audioconvert ! audio/x-raw,format=S16BE,channels=1,rate=8000 "
        "! rtpL16pay name=pay0 pt=97 )"
    )

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for path, launch in (("/cam", video), ("/audio", audio)):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        mounts.add_factory(path, factory)

    loop = GLib.MainLoop()
    try:
        source_id = server.attach(None)
    except GLib.Error as exc:  # e.g. address already in use
        print(f"rtsp_camera: cannot listen on {args.host}:{args.port}: {exc.message}", file=sys.stderr)
        return 2
    if source_id == 0:
        print(f"rtsp_camera: cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 2

    def _quit(*_: object) -> bool:
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, _quit)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, _quit)

    port = server.get_bound_port()
    print(f"READY rtsp://{args.host}:{port}/cam {args.width}x{args.height}", flush=True)
    loop.run()
    GLib.source_remove(source_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
