#!/usr/bin/env bash
# The real peers the end-to-end tests talk to: the ffmpeg command, a Chromium, and GStreamer's RTSP server with
# its Python bindings (run by ${RTSP_CAMERA_PYTHON:-/usr/bin/python3}). `make test` calls this first:
#   all present                    -> nothing to do
#   missing, root with apt-get     -> installs the Debian packages (what CI does), then checks again
#   missing otherwise              -> stops with one message naming what is missing and the command to run
set -uo pipefail
PACKAGES="ffmpeg chromium gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav"
CAMERA_PY="${RTSP_CAMERA_PYTHON:-/usr/bin/python3}"
GI_PROBE="import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); from gi.repository import Gst, GstRtspServer"

missing() {
  local out=()
  command -v ffmpeg >/dev/null 2>&1 || out+=("ffmpeg (command)")
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || command -v google-chrome >/dev/null 2>&1 || out+=("chromium (command)")
  if [ ! -x "$CAMERA_PY" ]; then
    out+=("$CAMERA_PY (the Python that runs the GStreamer RTSP test camera; set RTSP_CAMERA_PYTHON)")
  elif ! "$CAMERA_PY" -c "$GI_PROBE" >/dev/null 2>&1; then
    out+=("GStreamer RTSP server bindings for $CAMERA_PY")
  fi
  [ ${#out[@]} -eq 0 ] || printf '%s; ' "${out[@]}"
}

gaps="$(missing)"
[ -z "$gaps" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "make test: installing the end-to-end test peers (missing: ${gaps%; })" >&2
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq >/dev/null && apt-get install -y -qq $PACKAGES >/dev/null; then
    gaps="$(missing)"
    [ -z "$gaps" ] && exit 0
  fi
fi
cat >&2 <<MSG
make test: the end-to-end tests need real peers that are missing here: ${gaps%; }.
Install them with:
    sudo apt-get install -y $PACKAGES
(or put them on PATH; RTSP_CAMERA_PYTHON must name a Python with the GStreamer RTSP bindings), then run make test again.
MSG
exit 2
