"""Padding / truncation helpers and the truncation counter."""

from __future__ import annotations

import logging

import pytest

from xlm_core.data.padding import TruncationCounter, pad_list, pad_truncate_list, truncate_list
from xlm_core.testing.typecheck import unchecked


def test_pad_list_sides_and_never_shortens() -> None:
    assert pad_list([1, 2], 4, 0) == [1, 2, 0, 0]
    assert pad_list([1, 2], 4, 0, side="left") == [0, 0, 1, 2]
    assert pad_list([1, 2, 3], 2, 0) == [1, 2, 3]
    assert pad_list([], 2, -100) == [-100, -100]


def test_truncate_list_reports_whether_cut() -> None:
    assert truncate_list([1, 2, 3], 5) == ([1, 2, 3], False)
    assert truncate_list([1, 2, 3], 2) == ([1, 2], True)
    assert truncate_list([1, 2, 3], 2, side="left") == ([2, 3], True)
    assert truncate_list([1, 2, 3], 0, side="left") == ([], True)
    assert truncate_list([1, 2, 3], 3) == ([1, 2, 3], False)


def test_pad_truncate_list_exact_length() -> None:
    assert pad_truncate_list([1, 2], 3, 0, pad_side="left") == ([0, 1, 2], False)
    assert pad_truncate_list([1, 2, 3, 4], 3, 0, truncate_side="left") == ([2, 3, 4], True)
    assert pad_truncate_list([1, 2, 3, 4], 3, 0) == ([1, 2, 3], True)


def test_bad_arguments_are_named() -> None:
    with unchecked(), pytest.raises(ValueError, match="'middle'"):
        pad_list([1], 2, 0, side="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_length=-1"):
        truncate_list([1], -1)


def test_truncation_counter_counts_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    counter = TruncationCounter("MyCollator", warn_interval_s=3600.0)
    with caplog.at_level(logging.WARNING, logger="xlm_core.data.padding"):
        counter.update(0, 4, "block_size=8")
        assert caplog.records == []
        counter.update(1, 4, "block_size=8")
        counter.update(2, 4, "block_size=8")  # within the interval: counted, not logged again
    assert (counter.num_truncated, counter.num_examples) == (3, 12)
    assert counter.rate == pytest.approx(0.25)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "MyCollator truncated 1 of 4" in message and "raise block_size=8" in message


def test_truncation_counter_zero_interval_warns_every_time(caplog: pytest.LogCaptureFixture) -> None:
    counter = TruncationCounter("C", warn_interval_s=0.0)
    with caplog.at_level(logging.WARNING, logger="xlm_core.data.padding"):
        counter.update(1, 1, "x")
        counter.update(1, 1, "x")
    assert len(caplog.records) == 2
    counter.reset()
    assert (counter.num_truncated, counter.num_examples, counter.rate) == (0, 0, 0.0)


def test_truncation_counter_rejects_inconsistent_counts() -> None:
    with pytest.raises(ValueError, match="num_truncated <= num_examples"):
        TruncationCounter("C").update(3, 2, "x")
