"""The service: where frames come from and where results go.

One live frame, each file visited once:

1. inbound wire format  `server/wire/inbound.py`   `parse_frame` validates header, size and image magic
   (WebSocket: `routers/streams_ws.py`; RTSP cameras: `sources/rtsp.py`; uploads: `jobs/runner.py`)
2. the queue            `server/worker/scheduler.py`   the stream's bounded queue and its drop policy
   (`streaming.put_frame` for asyncio producers), served round-robin
3. the worker           `server/worker/device_worker.py`   decode (lazily) -> `step_frame` -> `FrameResult`
   `mask2former_ttt/ttt/frame_step.py`   TTT step -> prediction -> post-processing -> record with timings
4. outbound wire format `server/wire/outbound.py`   JSON result with the requested mask encodings
   (jobs write the same record with `mask2former_ttt.outputs.VideoResultWriter` instead)

Beside the worker: `worker/admission.py` (stream and memory limits), `worker/state_store.py` (stream
checkpoint / restore files), `worker/stream_session.py` (one stream's queue, settings and counters).
"""
