"""Encoders of segmentation results: RLE, PNG label / panoptic id maps, overlays, H.264 MP4, COCO-panoptic JSON.

Shared by the service (`server/`) and the offline CLI; nothing here knows about HTTP or streams.
"""

from mask2former_ttt.outputs.frame import DEFAULT_ENCODINGS, ENCODINGS, encode_masks, jpeg_encode, segments_info
from mask2former_ttt.outputs.masks import (
    id_to_rgb,
    instance_id_map,
    label_map_png,
    panoptic_png,
    png_decode,
    rgb_to_id,
    rle_decode,
    rle_encode,
)
from mask2former_ttt.outputs.mp4 import Mp4Writer, h264_encoder
from mask2former_ttt.outputs.overlay import blend, overlay, resize_rgb
from mask2former_ttt.outputs.palette import class_colors, class_palette, instance_palette, thing_shades
from mask2former_ttt.outputs.writer import VideoResultWriter

__all__ = [
    "DEFAULT_ENCODINGS",
    "ENCODINGS",
    "Mp4Writer",
    "VideoResultWriter",
    "blend",
    "class_colors",
    "class_palette",
    "encode_masks",
    "h264_encoder",
    "id_to_rgb",
    "instance_id_map",
    "instance_palette",
    "jpeg_encode",
    "label_map_png",
    "overlay",
    "panoptic_png",
    "png_decode",
    "resize_rgb",
    "rgb_to_id",
    "rle_decode",
    "rle_encode",
    "segments_info",
    "thing_shades",
]
