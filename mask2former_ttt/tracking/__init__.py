"""Stream-persistent instance and panoptic ids (`MaskTracker`) and the tracking metric (`id_switches`)."""

from mask2former_ttt.tracking.mask_tracker import THING_ID_BASE, MaskTracker, mask_iou

__all__ = ["THING_ID_BASE", "MaskTracker", "mask_iou"]
