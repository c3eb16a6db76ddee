"""The per-snapshot cache of answers (publish.api.conventions.remember_entry): an answer is
kept when asked for the second time, and past the bound the oldest leaves, one at a time."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace
from typing import Any, cast

import pytest

from publish.api import conventions
from publish.data import Snapshot


def _snap() -> Snapshot:
    return cast(Snapshot, SimpleNamespace(responses=OrderedDict(), asked_once=set()))


def _entry(n: int) -> Any:
    return (f"body {n}".encode(), f'"{n}"', {})


def test_an_answer_asked_once_is_not_kept_and_one_asked_again_is() -> None:
    snap = _snap()
    assert conventions.remember_entry(snap, ("q", 1), _entry(1)) == _entry(1)
    assert conventions.cached(snap, ("q", 1)) is None
    conventions.remember_entry(snap, ("q", 1), _entry(1))
    assert conventions.cached(snap, ("q", 1)) == _entry(1)


def test_past_its_bound_the_oldest_answer_leaves_one_for_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conventions, "RESPONSE_CACHE_MAX", 3)
    monkeypatch.setattr(conventions, "ASKED_ONCE_MAX", 100)
    snap = _snap()
    for n in range(5):
        for _ in range(2):
            conventions.remember_entry(snap, ("q", n), _entry(n))
    assert list(snap.responses) == [("q", 2), ("q", 3), ("q", 4)]


def test_the_questions_asked_once_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conventions, "ASKED_ONCE_MAX", 10)
    snap = _snap()
    for n in range(25):
        conventions.remember_entry(snap, ("q", n), _entry(n))
    assert len(snap.asked_once) <= 10 and not snap.responses
