"""What subscription rules cost: RE2's import and memory, a catastrophic pattern, keyword folding.

``python -m bench.rules_cost`` (not part of ``make bench``): each figure is the median of 7 fresh
processes (import and memory) or of 5 runs; docs/architecture.md, "Patterns: RE2", quotes them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

_IMPORT = r'''
import time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
before = rss(); started = time.perf_counter()
import re2
print((time.perf_counter() - started) * 1000, rss() - before)
'''


def main() -> None:
    runs = [subprocess.run([sys.executable, "-c", _IMPORT], capture_output=True, text=True, check=True, timeout=60)
            for _ in range(7)]
    figures = [tuple(map(float, r.stdout.split())) for r in runs]
    print(f"import re2: {statistics.median(f[0] for f in figures):.1f} ms, "
          f"+{statistics.median(f[1] for f in figures):.1f} MiB resident")

    from bot.domain.rules import compiled
    from bot.domain.tags import fold_words

    def timed(fn: object, *args: object) -> float:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            fn(*args)  # type: ignore[operator]
            samples.append(time.perf_counter() - started)
        return statistics.median(samples) * 1000

    hostile = "a" * 50_000 + "!"
    print(f"(a+)+$ on 50,000 a's and a '!': {timed(compiled('(a+)+$').search, hostile):.3f} ms")
    text = "word " * 50_000
    word = compiled(r"(?i)\bbreaking\b")
    print(f"{word.pattern} over {len(text):,} characters: {timed(word.search, text):.2f} ms")
    latin = "Iran’s Café protest in Basra. " * 8000
    arabic = "اعتراض در إيران مُحَمَّد كتاب " * 8000
    print(f"fold_words, {len(latin):,} Latin characters: {timed(fold_words, latin):.1f} ms")
    print(f"fold_words, {len(arabic):,} Arabic/Persian characters: {timed(fold_words, arabic):.1f} ms")


if __name__ == "__main__":
    main()
