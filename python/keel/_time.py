"""One rule for time: a timestamp carries a zone, or it is refused.

Keel stores every time as milliseconds since the Unix epoch (UTC). A time given without a zone (a
naive ``datetime``, an ISO string without ``Z`` or an offset, a naive pandas Timestamp or a
``datetime64`` column) could mean UTC, the caller's local time or the zone the data was recorded in;
guessing silently shifts results by hours, so every entry point (ingest, ``as_of``, feature reads,
lineage, tracking timestamps, the CLI) refuses it here with an error saying how to add the zone.
Epoch milliseconds (an int) are unambiguous and stay accepted.

This module reads single values and arrays of Python's own time types. Columns (ingest, labels,
keys, quality checks) cross to the core as Arrow data and meet the same rule there, in one C++
function for every caller: ``core/common/time_columns.cpp`` (timestamps must name their zone; ISO
text must carry 'Z' or an offset).
"""

from __future__ import annotations

import math
import numbers
import re
from datetime import date, datetime, timedelta, timezone

import numpy as np

from keel.errors import InvalidArgument

__all__ = ["to_epoch_ms", "to_epoch_ms_array", "duration_ms", "ZONE_HINT"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)
# Far beyond any real time, still clear of int64 overflow once scaled to micro- or nanoseconds.
_MAX_ABS_MS = 2**62

#: How to give a time Keel accepts; every refusal ends with it.
ZONE_HINT = ("give the time zone: datetime(2026, 1, 1, tzinfo=timezone.utc), pd.Timestamp('2026-01-01', tz='UTC'), "
             "an ISO 8601 string with 'Z' or an offset ('2026-01-01T00:00:00Z', '2026-01-01T12:00+01:00'), "
             "or milliseconds since the epoch (int)")


def _naive(what: str, value) -> InvalidArgument:
    return InvalidArgument(f"{what}={value!r:.80} has no time zone, so it could mean UTC or local time: {ZONE_HINT}")


def _parse_iso(text: str, what: str) -> datetime:
    stripped = text.strip()
    try:
        return datetime.fromisoformat(stripped)
    except ValueError:
        pass
    try:  # forms fromisoformat does not read (e.g. '2026-01-01 12:00:00 +0100'); pandas is optional here
        import pandas as pd
        stamp = pd.Timestamp(stripped)
    except (ImportError, ValueError, TypeError, OverflowError):
        stamp = None
    if not isinstance(stamp, datetime) or str(stamp) == "NaT":
        raise InvalidArgument(f"{what}={text!r:.80} is not a time Keel can read: {ZONE_HINT}") from None
    return stamp


def to_epoch_ms(value, what: str = "time") -> int | None:
    """``value`` as milliseconds since the epoch; None stays None.

    Accepts an int (ms already; a float is truncated), a zone-aware ``datetime`` or pandas
    Timestamp, and an ISO 8601 string with ``Z`` or an offset. A naive time, a date without a time
    of day, NaT and anything else raise InvalidArgument naming ``what`` and the value.
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise InvalidArgument(f"{what}={value!r} is not a time: {ZONE_HINT}")
    if isinstance(value, (int, np.integer)):
        ms = int(value)
    elif isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise InvalidArgument(f"{what}={value!r} is not a time: {ZONE_HINT}")
        ms = int(value)
    else:
        when = _parse_iso(value, what) if isinstance(value, str) else value
        if isinstance(when, np.datetime64):  # numpy times have no zone at all
            raise _naive(what, value)
        if not isinstance(when, datetime):
            if isinstance(when, date):
                raise InvalidArgument(f"{what}={value!r} is a date, not a point in time: {ZONE_HINT}")
            raise InvalidArgument(f"{what}={value!r:.60} is a {type(value).__name__}, not a time: {ZONE_HINT}")
        if str(when) == "NaT":  # pandas' missing time is a datetime subclass
            raise InvalidArgument(f"{what}={value!r} is a missing time (NaT): {ZONE_HINT}")
        if when.tzinfo is None or when.utcoffset() is None:
            raise _naive(what, value)
        try:
            ms = (when - _EPOCH) // _ONE_MS
        except OverflowError:
            raise InvalidArgument(f"{what}={value!r:.80} is out of range: {ZONE_HINT}") from None
        ms = int(ms)
    if abs(ms) >= _MAX_ABS_MS:
        raise InvalidArgument(f"{what}={value!r:.80} is out of range: {ZONE_HINT}")
    return ms


def to_epoch_ms_array(values, what: str = "timestamps") -> np.ndarray:
    """Many times as a contiguous int64 array of epoch ms: ints as they are, a zone-aware pandas
    Series / DatetimeIndex converted; a ``datetime64`` array (numpy's are naive) refused."""
    dtype = getattr(values, "dtype", None)
    if dtype is not None and getattr(dtype, "tz", None) is not None:  # pandas DatetimeTZDtype
        import pandas as pd
        index = pd.DatetimeIndex(values)
        if index.isna().any():
            raise InvalidArgument(f"{what} hold a missing time (NaT) at position {int(np.argmax(index.isna()))}")
        return np.ascontiguousarray(index.as_unit("ms").asi8, dtype=np.int64)
    if dtype is not None and np.dtype(dtype).kind == "M":
        raise InvalidArgument(f"{what} have no time zone (numpy datetime64 is naive), so they could mean UTC or "
                              "local time: pass a zone-aware pandas Series (s.dt.tz_localize('UTC')) or "
                              "milliseconds since the epoch (int64)")
    array = np.asarray(values)
    if array.dtype == object:
        return np.fromiter((to_epoch_ms(v, what) for v in array.ravel()), np.int64, array.size)
    return np.ascontiguousarray(array, dtype=np.int64)


_DURATION_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")


def duration_ms(value, what: str = "duration") -> int:
    """A length of time in milliseconds, from '90s', '30m', '12h', '10d', '2w' or several ('1h30m'),
    a number of seconds, or a timedelta (pandas' too) or numpy timedelta64. InvalidArgument naming
    ``what`` for anything else, and for a negative length."""
    if isinstance(value, timedelta):
        ms = value.total_seconds() * 1000
    elif isinstance(value, np.timedelta64):
        ms = float(value / np.timedelta64(1, "ms"))
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        ms = float(value) * 1000
    elif isinstance(value, str) and _DURATION.fullmatch(text := re.sub(r"\s+", "", value)):
        ms = sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    else:
        raise InvalidArgument(f"{what}={value!r:.80} is not a duration: use e.g. '30m', '12h', '10d', '1h30m', "
                              "a number of seconds or a timedelta")
    if not math.isfinite(ms) or ms < 0:
        raise InvalidArgument(f"{what}={value!r:.80} is not a length of time of 0 or more: use e.g. '1h' or 3600")
    return int(ms)
