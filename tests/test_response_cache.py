"""The per-snapshot cache of answers (publish.api.conventions.remember_entry): past its bound
the oldest answer leaves, one for each new one, never the whole cache at once."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace
from typing import Any, cast

import pytest

from publish.api import conventions
from publish.data import Snapshot


def _entry(n: int) -> Any:
    return (f"body {n}".encode(), f'"{n}"', {})


def test_past_its_bound_the_oldest_answer_leaves_one_for_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conventions, "RESPONSE_CACHE_MAX", 3)
    snap = cast(Snapshot, SimpleNamespace(responses=OrderedDict()))
    assert conventions.remember_entry(snap, ("q", 0), _entry(0)) == _entry(0)
    assert conventions.cached(snap, ("q", 0)) == _entry(0)
    for n in range(1, 5):
        conventions.remember_entry(snap, ("q", n), _entry(n))
        assert len(snap.responses) == min(n + 1, 3)
    assert list(snap.responses) == [("q", 2), ("q", 3), ("q", 4)]
    assert conventions.cached(snap, ("q", 1)) is None
