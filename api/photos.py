"""Photos that come in (citizens' reports, departments' handling feedback): JPEG or PNG, known by their bytes.

The type is read from the file's own first bytes, never from its name or the client's Content-Type, so a
script or an HTML page renamed `.jpg` is refused (415). The size in pixels is read from the header before
anything is decoded: a PNG of a few hundred kilobytes can hold a 400-megapixel image that would take
gigabytes and seconds to decode. Then OpenCV decodes the image at an eighth of its size (cheap for JPEG,
whose decoder scales inside the DCT) to prove the pixel data is there: a truncated upload does not decode.
The body size itself is limited at the door (api.limits: 413).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
from fastapi import HTTPException, status

JPEG: Final = "image/jpeg"
PNG: Final = "image/png"
SUFFIXES: Final = {JPEG: ".jpg", PNG: ".png"}

#: Room for a phone's 50-megapixel photo; beyond it an upload is a decompression bomb, not a photo of a street.
MAX_PIXELS: Final = 64_000_000

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
# Start-of-frame markers carry the size; C4 (Huffman tables), C8 (reserved) and CC (arithmetic coding) do not.
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # markers without a length field


@dataclass(frozen=True, slots=True)
class Photo:
    """An upload that is a whole JPEG or PNG image."""

    data: bytes
    media_type: str
    width: int
    height: int

    @property
    def suffix(self) -> str:
        """The file name suffix of its type, for the evidence store."""
        return SUFFIXES[self.media_type]


def media_type(data: bytes) -> str | None:
    """image/jpeg or image/png by the file's magic bytes; None for anything else."""
    if data.startswith(_JPEG_SIGNATURE):
        return JPEG
    if data.startswith(_PNG_SIGNATURE):
        return PNG
    return None


def check_photo(data: bytes) -> Photo:
    """The upload as a photo; 415 if it is not JPEG or PNG, 422 if it is empty, too large in pixels or broken."""
    if not data:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the photo is empty")
    kind = media_type(data)
    if kind is None:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            "a photo must be a JPEG or PNG image (judged by its content, not its name)")
    size = _jpeg_size(data) if kind == JPEG else _png_size(data)
    if size is None or 0 in size:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"the {kind} photo has no readable image header: truncated or corrupt")
    width, height = size
    if width * height > MAX_PIXELS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"the photo is {width}×{height} pixels, over the limit of {MAX_PIXELS // 1_000_000} "
                            "megapixels")
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"the {kind} photo does not decode: truncated or corrupt")
    return Photo(data, kind, width, height)


def _png_size(data: bytes) -> tuple[int, int] | None:
    # The first chunk of every PNG is IHDR: width and height as 32-bit big-endian integers.
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    # Walk the marker segments after SOI up to the frame header; its size comes before any image data.
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before the marker
            i += 1
        elif marker in _JPEG_FRAMES:
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        elif marker in _JPEG_STANDALONE:
            i += 2
        elif marker in (0xD8, 0xD9, 0xDA):  # another start, the end or a scan before any frame header
            return None
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None
