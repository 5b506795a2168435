"""cProfile of the record-version-2 sealer (``PersonalSealer.seal``) on the bench records.

Usage: ``python bench/profile_personal.py [--records N]``; prints the wall time of the sealer
alone and of the plain writer path (``seal_records`` + ``records_table``) beside it, best of
three, then the sealer's profile sorted by internal time. Profiles kept under
``bench/profiles/`` say the load average they were taken under.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
from collections.abc import Callable
from typing import Any

import _records
from seal_verify import current_write_path, data_key_for

from coexarchive.seal.chain import genesis
from coexarchive.seal.personal import PersonalSealer


def best(fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    args = parser.parse_args()
    n = args.records
    records = _records.generate(n, seed=20250101, raw_detail=False)
    prev = genesis(_records.CHAIN_ID)
    print(f"{n:,} bench records; load average at start {os.getloadavg()[0]:.2f}")
    plain = best(lambda: current_write_path(records, prev))
    sealer = best(lambda: PersonalSealer(data_key_for).seal(records))
    print(f"plain writer path {plain / n * 1e6:.2f} us/record; sealer alone {sealer / n * 1e6:.2f}")
    profile = cProfile.Profile()
    profile.enable()
    PersonalSealer(data_key_for).seal(records)
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(15)
    print(out.getvalue().rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
