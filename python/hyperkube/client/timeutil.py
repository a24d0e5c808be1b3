"""Kubernetes time formats: ``metav1.Time`` (RFC 3339, seconds) and ``MicroTime`` (microseconds)."""

from __future__ import annotations

import datetime as _dt


def now_utc() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def rfc3339(t: _dt.datetime | None = None) -> str:
    """``2006-01-02T15:04:05Z`` (metav1.Time)."""
    return (t or now_utc()).astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(t: _dt.datetime | None = None) -> str:
    """``2006-01-02T15:04:05.000000Z`` (metav1.MicroTime, used by Lease and events.k8s.io)."""
    return (t or now_utc()).astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str | None) -> _dt.datetime | None:
    """Parse either format (and offsets other than Z); None for empty input."""
    if not s:
        return None
    return _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def age_seconds(s: str | None, now: _dt.datetime | None = None) -> float | None:
    t = parse_time(s)
    if t is None:
        return None
    return ((now or now_utc()) - t).total_seconds()
