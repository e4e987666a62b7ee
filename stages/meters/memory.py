"""Memory a process used: its peak resident set size."""
from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far: VmHWM of /proc/self/status (reset by
    exec, so a spawned child reports its own), else ru_maxrss (KiB; inherited through fork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
