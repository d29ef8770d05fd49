"""Python client of the mask2former-ttt service (docs/api.md):

    from mask2former_ttt.client import Client, decode_masks
    client = Client("http://127.0.0.1:8000", api_key=None)
    for result in client.stream("video.mp4", task="panoptic"):
        ids = decode_masks(result)["png"]          # (height, width) segment ids
    job = client.submit_job("video.mp4", task="panoptic")    # waits, with a progress bar
    client.download(job["id"], "out/")

Uses httpx, websockets (sync client) and PyAV; it does not import the server.
"""

from .client import Client
from .errors import AuthError, CapacityError, ClientError, JobFailedError, NotFoundError, SourceError
from .masks import decode_masks, decode_overlay, decode_png, decode_rle
from .stream import Stream
from .wire import pack_frame

__all__ = [
    "AuthError", "CapacityError", "Client", "ClientError", "JobFailedError", "NotFoundError", "SourceError",
    "Stream", "decode_masks", "decode_overlay", "decode_png", "decode_rle", "pack_frame",
]
