"""Offline detection: the hub is probed once; when it does not answer, loads use the local cache only."""

from __future__ import annotations

import socket

import pytest

from xlm_core.data import hub
from xlm_core.data.auto_tokenizer import TokenizerNotFoundError, load_auto_tokenizer
from xlm_core.data.dataset_manager import DatasetManager, DatasetSourceError


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Record connection attempts; every probe fails as on a machine without internet."""
    calls: list[tuple] = []

    def refuse(address, timeout=None):
        calls.append((address, timeout))
        raise OSError("no route to host")

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    hub.hub_reachable.cache_clear()
    yield calls
    hub.hub_reachable.cache_clear()


def test_unreachable_hub_is_probed_once_and_switches_to_cache_only(probes: list, monkeypatch) -> None:
    assert hub.use_hub_or_cache() is False
    assert hub.use_hub_or_cache() is False
    assert probes == [(("huggingface.co", 443), 3.0)]
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_mirror_endpoint_is_probed(probes: list, monkeypatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:8080")
    assert hub.hub_reachable() is False
    assert probes[0][0] == ("mirror.example", 8080)


def test_user_offline_switch_skips_the_probe(probes: list, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_reachable() is False and probes == []


def test_uncached_hub_tokenizer_and_dataset_fail_with_the_fix_without_retrying(probes: list) -> None:
    with pytest.raises(TokenizerNotFoundError, match="Hub is not reachable from this machine.*tokenizer.name_or_path="):
        load_auto_tokenizer("xlm-test-org/never-published-tokenizer")
    with pytest.raises(DatasetSourceError, match="not reachable from here.*point `data_files` at the local copies"):
        DatasetManager(name="t", full_name="xlm-test-org/never-published/train").build()
    assert len(probes) == 1  # one probe for the whole process
