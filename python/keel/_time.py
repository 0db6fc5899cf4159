"""One rule for time: a timestamp carries a zone, or it is refused.

Keel stores every time as milliseconds since the Unix epoch (UTC). A time given without a zone (a
naive ``datetime``, an ISO string without ``Z`` or an offset, a naive pandas Timestamp or a
``datetime64`` column) could mean UTC, the caller's local time or the zone the data was recorded in;
guessing silently shifts results by hours, so every entry point (ingest, ``as_of``, feature reads,
lineage, tracking timestamps, the CLI) refuses it here with an error saying how to add the zone.
Epoch milliseconds (an int) are unambiguous and stay accepted.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

import numpy as np

from keel.errors import InvalidArgument

__all__ = ["to_epoch_ms", "to_epoch_ms_array", "zoned_timestamps", "ZONE_HINT"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)
# Far beyond any real time, still clear of int64 overflow once scaled to micro- or nanoseconds.
_MAX_ABS_MS = 2**62

#: How to give a time Keel accepts; every refusal ends with it.
ZONE_HINT = ("give the time zone: datetime(2026, 1, 1, tzinfo=timezone.utc), pd.Timestamp('2026-01-01', tz='UTC'), "
             "an ISO 8601 string with 'Z' or an offset ('2026-01-01T00:00:00Z', '2026-01-01T12:00+01:00'), "
             "or milliseconds since the epoch (int)")
_COLUMN_HINT = ("localize it first: df['{name}'] = df['{name}'].dt.tz_localize('UTC') (or the zone the data was "
                "recorded in), or parse text with pd.to_datetime(..., utc=True)")


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


def zoned_timestamps(arr, name: str, what: str = "column"):
    """A pyarrow column of timestamps that carry a zone, ready to read as UTC instants: ISO strings
    are parsed (each must end in 'Z' or an offset); a date column, a tz-naive timestamp column and
    any other type raise InvalidArgument naming the column, the first bad row and the fix."""
    import pyarrow as pa

    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        import pandas as pd
        text = arr.to_pandas()
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        bad = parsed.isna() & text.notna()
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            raise InvalidArgument(f"{what} '{name}' has an unparseable timestamp at row {i}: {text.iloc[i]!r}")
        zoned = text.astype(object).fillna("").str.strip().str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
        naive = text.notna() & ~zoned
        if naive.any():
            i = int(np.argmax(naive.to_numpy()))
            raise InvalidArgument(f"{what} '{name}' has a timestamp without a time zone at row {i}: "
                                  f"{text.iloc[i]!r} could mean UTC or local time; add an offset ('...Z' or '+02:00')")
        arr = pa.array(parsed, from_pandas=True)
        t = arr.type
    if pa.types.is_date(t):
        raise InvalidArgument(f"{what} '{name}' holds dates, not timestamps: convert with "
                              "pd.to_datetime(..., utc=True)")
    if not pa.types.is_timestamp(t):
        raise InvalidArgument(f"{what} '{name}' has type {t}, expected timestamps with a time zone "
                              "(e.g. pd.to_datetime(col, utc=True))")
    if t.tz is None:
        raise InvalidArgument(f"{what} '{name}' has timestamps without a time zone, so they could mean UTC or "
                              f"local time: {_COLUMN_HINT.format(name=name)}")
    return arr
