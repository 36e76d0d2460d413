"""The sandbox's notion of now: real time plus an offset that day-two tests move (`PUT /_sandbox/clock`).

Everything the emulated cloud decides by time reads this clock: creation stamps and the replication delay,
password validity, secured-access propagation, publish completion, and the `Date` header of every Graph,
Dataverse and operator response. Access tokens do not: Entra issues and Graph/Dataverse verify `exp` on
real time, because a client such as msal caches tokens by its own (real) clock and must keep working
after a shift.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from email.utils import formatdate

from aiohttp import web


class Clock:
    def __init__(self, offset_s: float = 0.0) -> None:
        self.offset_s = offset_s

    def set_offset(self, offset_s: float) -> None:
        if not math.isfinite(offset_s):
            raise ValueError("offset_s must be a finite number of seconds")
        self.offset_s = float(offset_s)

    def now(self) -> float:
        """Seconds since the epoch, shifted."""
        return time.time() + self.offset_s

    def utcnow(self) -> datetime:
        return datetime.fromtimestamp(self.now(), timezone.utc)

    def iso(self, ts: float | None = None) -> str:
        """ISO 8601 in UTC to the second, the way Graph and Dataverse write date-times."""
        return datetime.fromtimestamp(self.now() if ts is None else ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def http_date(self) -> str:
        """An RFC 7231 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`)."""
        return formatdate(self.now(), usegmt=True)


CLOCK: web.AppKey[Clock] = web.AppKey("sandbox_clock", Clock)


async def stamp_date(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the Date header of every response, by the sandbox's clock."""
    clock = request.app.get(CLOCK)
    if clock is not None:
        response.headers["Date"] = clock.http_date()
