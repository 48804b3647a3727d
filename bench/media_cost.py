"""What Pillow costs tagrelay: ``.venv/bin/python -m bench.media_cost`` (docs/architecture.md, "Why these libraries").

Each figure comes from a fresh process (median of 7): the import of ``PIL.Image`` alone after the
project's usual imports, the RSS it adds, and the time and RSS of identifying one 2,560 × 1,440 JPEG
(a WordPress-sized featured image) and of fitting it to X's 5 MB / Mastodon's 16 MB (unchanged), to
1,280 px (re-encoded), and of a 6 MB noise PNG to 1 MB.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

CHILD = r"""
import io, os, random, sys, time
def rss():
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
import httpx, bot.media as media
r0, t0 = rss(), time.perf_counter()
from PIL import Image as PIL
t1, r1 = time.perf_counter(), rss()
rng = random.Random(1)
def photo(w, h):  # smooth gradients with some noise: compresses like a photo
    base = PIL.linear_gradient("L").resize((w, h)).convert("RGB")
    grain = PIL.frombytes("RGB", (w // 8, h // 8), rng.randbytes((w // 8) * (h // 8) * 3)).resize((w, h))
    return PIL.blend(base, grain, 0.3)
out = io.BytesIO(); photo(2560, 1440).save(out, "JPEG", quality=85); jpeg = out.getvalue()
out = io.BytesIO(); PIL.frombytes("RGB", (1400, 1400), rng.randbytes(1400 * 1400 * 3)).save(out, "PNG")
noise = out.getvalue()
r2 = rss()
t = time.perf_counter(); image = media.identify(jpeg); t_id = time.perf_counter() - t
t = time.perf_counter(); same = media.fit_image(image, max_bytes=5_000_000)
t_same = time.perf_counter() - t
assert same is image
t = time.perf_counter(); small = media.fit_image(image, max_bytes=5_000_000, max_side=1280)
t_side = time.perf_counter() - t
t = time.perf_counter(); png = media.fit_image(media.identify(noise), max_bytes=1_000_000)
t_png = time.perf_counter() - t
r3 = rss()
print(1000 * (t1 - t0), r1 - r0, 1000 * t_id, 1000 * t_same, 1000 * t_side, 1000 * t_png, r3 - r2,
      len(jpeg), len(noise), len(small.data), len(png.data))
"""

LABELS = ("import PIL.Image (ms)", "RSS added by the import (MiB)", "identify a 2560x1440 JPEG (ms)",
          "fit_image, already fits (ms)", "fit_image to 1280 px (ms)", "fit_image 1400x1400 noise PNG to 1 MB (ms)",
          "RSS added by the fits (MiB)", "JPEG bytes", "PNG bytes", "1280 px JPEG bytes", "fitted PNG→JPEG bytes")


def main() -> None:
    runs = [list(map(float, subprocess.run([sys.executable, "-c", CHILD], check=True, capture_output=True,
                                           text=True).stdout.split())) for _ in range(7)]
    for i, label in enumerate(LABELS):
        values = [run[i] for run in runs]
        print(f"{label:48} median {statistics.median(values):10.1f}  (min {min(values):.1f}, max {max(values):.1f})")


if __name__ == "__main__":
    main()
