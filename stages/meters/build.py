"""The cost of one model build (a conversion or compression run): wall time, size of what it
wrote and its energy, in one window of the stage's meter."""
from __future__ import annotations

import time
from pathlib import Path

from stages.core.files import dir_size_mb
from stages.meters import energy as E
from stages.schema import metrics as M


def metered(meter: E.Meter, build, out: Path) -> M.LmRtBuild:
    """Run build() (it writes `out`) in one energy window."""
    t0 = time.perf_counter()
    _, energy = meter.once(build, 1, "run")
    return M.LmRtBuild(build_time_s=round(time.perf_counter() - t0, 2),
                       size_mb=round(dir_size_mb(out), 2), compress_energy=energy)
