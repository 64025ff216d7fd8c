"""Benchmark rendering a model's answer for Telegram: Markdown to Telegram HTML, then the split into messages,
for answers of 10 KB to 4 MB of mixed Markdown (every block and inline mark).
Prints the CPU time (`time.process_time()`) of each step, the best of `--repeats` runs, and the time per MB,
which stays flat when both steps are linear.
Run: `python -m bench.render_bench [--sizes 10000 100000 1000000 4000000] [--repeats 3]`.
"""

import argparse
import time

from host.telegram.markdown import to_telegram_html
from host.telegram.split import split_message
from tests.telegram.test_render import mixed_markdown


def best_of(repeats: int, source: str) -> tuple[float, float, int]:
    render_times, split_times, parts = [], [], 0
    for _ in range(repeats):
        started = time.process_time()
        html = to_telegram_html(source)
        rendered = time.process_time()
        parts = len(split_message(html))
        render_times.append(rendered - started)
        split_times.append(time.process_time() - rendered)
    return min(render_times), min(split_times), parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 4_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    print(f"{'size':>10} {'render s':>9} {'split s':>8} {'parts':>6} {'s per MB':>9}")
    for size in arguments.sizes:
        render, split, parts = best_of(arguments.repeats, mixed_markdown(size))
        print(f"{size:>10} {render:>9.3f} {split:>8.3f} {parts:>6} {(render + split) / size * 1e6:>9.3f}")


if __name__ == "__main__":
    main()
