"""Real images for the media tests, and a loopback server that serves them (and lies about them).

``ImageServer.serve(path, response)`` answers ``GET path`` with a ``Response``; ``image_response``
builds one with any ``Content-Type`` (the code under test must sniff the type from the bytes).
The images are made with Pillow at test time: noise (which does not compress, so sizes are real),
flat colours, transparency, an EXIF orientation, and hostile bytes (a PNG header claiming
10⁵ × 10⁵ pixels, a truncated JPEG).
"""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image as PIL

from tests.fakes.http import LoopbackServer, Request, Response


class ImageServer(LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[str, Response] = {}

    def serve(self, path: str, response: Response) -> str:
        """Answer ``GET path`` with ``response``; returns the URL."""
        with self.lock:
            self.routes[path] = response
        return self.url + path

    def handle(self, request: Request) -> Response:
        with self.lock:
            response = self.routes.get(request.path)
        return response if response is not None else Response.text("not found", status=404)

    def __enter__(self) -> ImageServer:
        self.start()
        return self

    def gets(self, path: str) -> int:
        return len(self.seen("GET", path))


def image_response(data: bytes, content_type: str = "image/jpeg", **headers: str) -> Response:
    return Response(200, data, {"Content-Type": content_type, **headers})


def noise(width: int, height: int, *, mode: str = "RGB", seed: int = 1) -> PIL.Image:
    """Random pixels: they do not compress, so a PNG of them is about width × height × channels bytes."""
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    return PIL.frombytes(mode, (width, height), random.Random(seed).randbytes(width * height * channels))


def encode(image: PIL.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def jpeg(width: int = 640, height: int = 480, *, quality: int = 85, seed: int = 1) -> bytes:
    return encode(noise(width, height, seed=seed), "JPEG", quality=quality)


def png(width: int = 640, height: int = 480, *, mode: str = "RGB", seed: int = 1) -> bytes:
    return encode(noise(width, height, mode=mode, seed=seed), "PNG")


def flat_png(width: int, height: int, colour: tuple[int, ...] = (200, 30, 30), mode: str = "RGB") -> bytes:
    return encode(PIL.new(mode, (width, height), colour), "PNG")


def jpeg_with_orientation(width: int, height: int, orientation: int) -> bytes:
    """A JPEG stored ``width`` × ``height`` whose EXIF says to show it rotated (6: 90° clockwise)."""
    exif = PIL.Exif()
    exif[0x0112] = orientation
    return encode(noise(width, height), "JPEG", quality=85, exif=exif.tobytes())


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming ``width`` × ``height`` 1-bit pixels, with a few rows of zeros: tens of
    bytes that would decode to gigabytes."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + (width + 7) // 8) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def big_sparse_png(width: int, height: int) -> bytes:
    """A real, complete 1-bit PNG of ``width`` × ``height`` white pixels: small on the wire, huge decoded."""
    return encode(PIL.new("1", (width, height), 1), "PNG")
