"""The `host` param: the name benchmarks are filed under (metrics/<family>/bench/<host>/)."""
from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

HostName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
