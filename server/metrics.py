"""Prometheus metrics of one app instance (own registry, so several apps can live in one process, e.g. tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # no `*_created` series: they double the exposition for no operational value

STAGES = ("queue", "decode", "ttt", "predict", "postprocess", "encode", "end_to_end")
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """All series the service exports at `/metrics`.

    Labels: `source` is `ws | rtsp | job`; `stage` one of STAGES; `stream` a stream id.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("m2f_frames_processed", "Frames processed by the device worker", ["source"], registry=r)
        self.drops = Counter(
            "m2f_frames_dropped", "Frames dropped by the `latest` queue policy", ["source"], registry=r
        )
        self.frame_errors = Counter(
            "m2f_frame_errors", "Frames that failed (bad image, adapter error)", ["source"], registry=r
        )
        self.rollbacks = Counter(
            "m2f_ttt_rollbacks", "TTT steps rolled back because the loss diverged", ["source"], registry=r
        )
        self.steps_skipped = Counter(
            "m2f_ttt_steps_skipped", "TTT steps skipped because the stream's steps fell behind (schedule async)",
            ["source"], registry=r,
        )
        self.step_errors = Counter(
            "m2f_ttt_step_errors", "TTT steps that raised on the step executor (schedule async; frames still served)",
            ["source"], registry=r,
        )
        self.reconnects = Counter("m2f_rtsp_reconnects", "RTSP reconnection attempts", registry=r)
        self.refusals = Counter(
            "m2f_admission_refusals", "Streams refused because the service was full", ["reason"], registry=r
        )
        self.stage_seconds = Histogram(
            "m2f_stage_seconds", "Per-frame latency of each pipeline stage", ["stage"], buckets=_BUCKETS, registry=r
        )
        self.stream_memory = Gauge(
            "m2f_stream_state_bytes", "Adapted-state memory of each stream", ["stream"], registry=r
        )
        self.active_streams = Gauge("m2f_active_streams", "Streams holding adapted state", ["source"], registry=r)
        # Ray backend (server.ray_backend): one series per device-worker actor; fps = rate(m2f_ray_actor_frames_total)
        self.ray_actor_alive = Gauge("m2f_ray_actor_alive", "1 while the device-worker actor answers", ["actor"], registry=r)
        self.ray_actor_streams = Gauge("m2f_ray_actor_streams", "Streams the actor owns", ["actor"], registry=r)
        self.ray_actor_frames = Counter("m2f_ray_actor_frames", "Frames the actor processed", ["actor"], registry=r)
        self.ray_actor_rss = Gauge(
            "m2f_ray_actor_max_rss_bytes", "Peak resident memory of the actor's process", ["actor"], registry=r
        )
        self.jobs = Counter("m2f_jobs_finished", "Upload jobs finished", ["state"], registry=r)
        for source in ("ws", "rtsp", "job"):  # export zeros from the start
            for series in (self.frames, self.drops, self.frame_errors, self.rollbacks, self.steps_skipped,
                           self.step_errors, self.active_streams):
                series.labels(source)

    def observe_timings(self, timings_s: dict[str, float]) -> None:
        """Record one frame's stage timings (seconds)."""
        for stage, value in timings_s.items():
            if stage in STAGES:
                self.stage_seconds.labels(stage).observe(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
