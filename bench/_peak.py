"""A process's own peak memory, for benchmarks that run their probes in fresh processes."""

from __future__ import annotations

import resource


def own_peak_kb() -> int:
    """This process's own peak RSS (``VmHWM``), in KiB.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux keeps, across ``exec``, the high-water mark
    of the memory the process had before it, and ``subprocess`` starts a probe by (v)fork + exec
    from the benchmark's process, so that figure is at least the benchmark's own peak (which
    grows with whatever it built), not the probe's.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
