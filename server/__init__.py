"""The service: where frames come from and where results go.

One live frame, each step named by the function that does it (every dotted name here is checked to exist by
`tests/server/test_frame_path_map.py`):

1. inbound wire format: `server.wire.inbound.parse_frame` validates header, size and image magic
   (WebSocket: `server.routers.streams_ws._StreamHandler._on_frame`; RTSP cameras: `server.sources.rtsp.RtspSource`
   calls `server.rtsp_streams.RtspManager._on_frame`; uploads: `server.jobs.runner.JobRunner._produce`)
2. decode ahead: `server.worker.device_worker.DeviceWorker.offer` / `server.worker.device_worker.DeviceWorker.put`
   start the image's decode off the lanes (`server.worker.decode_ahead.DecodeAhead.start`) as the frame is queued
3. the queue: `server.worker.scheduler.Scheduler.offer` / `server.worker.scheduler.Scheduler.put` (the stream's
   bounded queue and its drop policy; `server.streaming.put_frame` for asyncio producers), served round-robin to
   each lane's loop `server.worker.scheduler.serve_lane` by `server.worker.scheduler.Scheduler.next`
4. the lane: `server.worker.frame_processing.FrameProcessor.process` (or
   `server.worker.frame_processing.FrameProcessor.process_many`, several streams in one batched call) takes the
   decoded image (`server.worker.decode_ahead.DecodeAhead.result`), runs `mask2former_ttt.ttt.frame_step.step_frame`
   (TTT step -> prediction -> post-processing, timings) and delivers a `server.events.FrameResult` (or
   `server.events.FrameError`) with `server.worker.stream_session.StreamSession.send`
5. the forwarder: `server.streaming.LoopForwarder` moves each delivery from the lane's thread onto the event loop
   (read by `server.routers.streams_ws._StreamHandler._send_loop`, and `server.rtsp_streams.RtspManager._pump`
   for cameras)
6. outbound wire format: `server.wire.outbound.outgoing_message` encodes the result off the event loop
   (`server.wire.outbound.result_message`: JSON with the requested mask encodings); jobs write the same record with
   `mask2former_ttt.outputs.VideoResultWriter` instead (`server.jobs.runner.JobRunner._consume`)

With the Ray backend, step 4 runs on a device-worker actor: `server.ray_backend.service_worker.RayDeviceWorker._process`
calls `server.ray_backend.actor.DeviceWorkerActor.process`, which returns the `server.events.FrameResult` itself;
step 6 encodes it in the front-end, as for the local backend.

Beside the lanes: `server.worker.admission.Admission` (stream and memory limits),
`server.worker.state_store.StreamStateStore` (stream checkpoint / restore files),
`server.worker.controls.StreamControls` (in-order controls), `server.worker.rebalance.LaneBalancer` (lane loads).
"""
