"""``python -m gogooku3.bench [--only NAME ...] [--quick]``: run benchmarks, print markdown tables."""

from __future__ import annotations

import os

# Before Polars loads (its jemalloc reads this once): keep freed pages mapped instead of handing
# them back to the kernel after 10 s, so a repeated step ("warm" rows) measures the computation,
# not the kernel re-faulting memory. A first run still pays for every fresh page ("cold" rows);
# on a virtual machine that can be a third of the wall time. An explicit setting wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:-1,muzzy_decay_ms:-1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

from gogooku3.bench import discover, markdown_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    benches = discover()
    parser = argparse.ArgumentParser(prog="python -m gogooku3.bench", description=__doc__)
    parser.add_argument("--only", action="append", metavar="NAME", help=f"one of: {', '.join(benches)}")
    parser.add_argument("--quick", action="store_true", help="short smoke-test sizes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    names = args.only or list(benches)
    unknown = [n for n in names if n not in benches]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}: expected one of {', '.join(benches)}")

    failed = 0
    for name in names:
        started = time.perf_counter()
        print(f"## {name}{' (quick)' if args.quick else ''}\n", flush=True)
        try:
            rows = benches[name](args.quick)
        except Exception:  # a broken benchmark must not hide the others' figures
            failed += 1
            print("FAILED:\n```\n" + traceback.format_exc() + "```\n", flush=True)
            continue
        print(markdown_table(rows), flush=True)
        print(f"\n_{name} took {time.perf_counter() - started:.1f} s_\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
