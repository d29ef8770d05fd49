"""Online test-time training: one adapter per stream, every baseline behind the same interface."""

from mask2former_ttt.ttt.adapter import StreamAdapter
from mask2former_ttt.ttt.config import TTTConfig, ttt_preset
from mask2former_ttt.ttt.methods import METHODS, build_adapter
from mask2former_ttt.ttt.stats import StepResult, StepStats

__all__ = ["METHODS", "StepResult", "StepStats", "StreamAdapter", "TTTConfig", "build_adapter", "ttt_preset"]
