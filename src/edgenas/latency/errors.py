"""The one exception a latency measurement raises.

A search catches `LatencyError` and records the candidate as a failed trial (device gone, model
the converter rejects, host unreachable); the CLI prints its one line and exits with status 2,
because it is a `UserError`.
"""

from __future__ import annotations

from edgenas.errors import UserError


class LatencyError(UserError):
    """A latency could not be measured or predicted; the message names the cause and the fix."""
