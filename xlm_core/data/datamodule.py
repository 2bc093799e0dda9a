"""XLMDataModule: named, explicitly-typed dataloaders per stage over cached datasets.

Built with ``hydra.utils.instantiate(cfg.datamodule, tokenizer=tokenizer, _recursive_=False)``. Config structure (``datamodule:``)::

    _target_: xlm_core.data.datamodule.XLMDataModule
    cache_dir: ${paths.cache_dir}           # where dataset caches are saved (save_to_disk)
    seed: ${seed}                           # shuffling seed (train sampler / shuffle buffer)
    per_device_batch_size: ${per_device_batch_size}
    eval_batch_size: null                   # val/test/predict batch size; null = per_device_batch_size
    num_workers: 0                          # DataLoader workers
    num_proc: ${num_dataset_workers}        # processes for preprocessing (.map) when > 1
    rewrite_manual_cache: false             # true: rebuild every cache in prepare_data
    debug_overfit: false                    # true (debug=overfit) or env DEBUG_OVERFIT=1: debug sources
    pin_memory: false
    dataloaders:
      train:                                # stages: train, val, test, predict
        lm:                                 # dataloader name (order = order of the returned loaders)
          kind: lm                          # lm -> loss, prediction -> predictor
          dataset: {...}                    # a DatasetManager config (configs/datasets/*.yaml)
          collator: ${collator.train}       # instantiated with tokenizer=
          shuffle: true                     # optional; default true for train, false otherwise
          drop_last: true                   # optional; default true for train, false otherwise
          batch_size: null                  # optional per-loader override
      val: {lm: {...}, prediction: {kind: prediction, ...}}

Return types: ``train_dataloader()`` returns the DataLoader itself when the train stage has one
loader, else a dict name -> DataLoader (Lightning combines them). ``val/test/predict_dataloader()``
return a list in the order of ``dataloader_specs(stage)``, so ``dataloader_idx`` indexes that list.

Shuffling is a pure function of (seed, epoch): map-style training uses ``SeededRandomSampler`` (or a
seeded ``DistributedSampler`` under DDP); Lightning calls their ``set_epoch`` at every epoch, so a
run resumed at an epoch boundary sees the same order. Iterable datasets reshuffle through
``set_epoch`` too: call ``datamodule.set_epoch(epoch)`` from ``on_train_epoch_start``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import hydra
import lightning as L
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from xlm_core.config.checks import instantiate
from xlm_core.config.tools import to_plain
from xlm_core.data.dataset_manager import (
    DatasetManager,
    debug_overfit_enabled,
    dist_rank_and_world_size,
)
from xlm_core.kit.renamed import moved_attributes

__all__ = ["STAGES", "DATALOADER_KINDS", "DataloaderSpec", "SeededRandomSampler", "XLMDataModule", "prepare_datamodule"]

logger = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("train", "val", "test", "predict")
DATALOADER_KINDS: tuple[str, ...] = ("lm", "prediction")
"""What a dataloader's batches feed: ``lm`` the loss, ``prediction`` the predictor (its ``kind:`` in the config)."""
__getattr__ = moved_attributes(__name__, {"KINDS": f"{__name__}.DATALOADER_KINDS"}, removed_in="xlm-core 0.3")
# Lightning's setup(stage) names -> our stage names
_LIGHTNING_STAGES: dict[str | None, tuple[str, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
    None: STAGES,
}
_LOADER_KEYS = {"kind", "dataset", "collator", "shuffle", "drop_last", "batch_size"}


@dataclass(frozen=True)
class DataloaderSpec:
    """What the harness needs to route one dataloader's batches."""

    name: str
    kind: Literal["lm", "prediction"]
    stage: str
    dataset_name: str
    batch_size: int
    shuffle: bool
    drop_last: bool


class SeededRandomSampler(Sampler[int]):
    """Random permutation drawn from ``seed + epoch``; ``set_epoch`` (called by Lightning) changes it."""

    def __init__(self, num_samples: int, seed: int = 42):
        self.num_samples, self.seed, self.epoch, self._start = num_samples, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_first(self, n: int) -> None:
        """Start the next pass at position ``n`` of the epoch's permutation (for mid-epoch resume)."""
        self._start = n

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.num_samples, generator=g).tolist()
        start, self._start = self._start, 0
        yield from perm[start:]


class XLMDataModule(L.LightningDataModule):
    """Lightning datamodule over DatasetManagers; see the module docstring for the config."""

    def __init__(
        self,
        dataloaders: Mapping[str, Mapping[str, Any]],
        tokenizer: Any,
        *,
        cache_dir: str = "data/cache",
        seed: int = 42,
        per_device_batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_proc: int = 1,
        rewrite_manual_cache: bool = False,
        debug_overfit: bool | str | None = False,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ):
        super().__init__()
        if per_device_batch_size < 1:
            raise ValueError(f"per_device_batch_size must be >= 1, got {per_device_batch_size}.")
        self.tokenizer = tokenizer
        self.cache_dir, self.seed = str(cache_dir), int(seed)
        self.per_device_batch_size = int(per_device_batch_size)
        self.eval_batch_size = int(eval_batch_size or per_device_batch_size)
        self.num_workers, self.num_proc = int(num_workers), int(num_proc or 1)
        self.rewrite_manual_cache = bool(rewrite_manual_cache)
        self.use_debug = debug_overfit_enabled(debug_overfit)
        self.pin_memory, self.persistent_workers = pin_memory, persistent_workers and num_workers > 0
        self._specs: dict[str, list[DataloaderSpec]] = {}
        self._managers: dict[str, list[DatasetManager]] = {}
        self._collators: dict[str, list[Any]] = {}
        self._datasets: dict[str, list[Any]] = {}
        self._prepared: set[str] = set()
        unknown = set(dataloaders or {}) - set(STAGES)
        if unknown:
            raise ValueError(f"Unknown datamodule stage(s) {sorted(unknown)}; stages are {list(STAGES)}.")
        for stage in STAGES:
            self._parse_stage(stage, (dataloaders or {}).get(stage) or {})
        if self.use_debug:
            logger.info("DEBUG_OVERFIT: using the debug variant of every dataset that defines one.")

    def _parse_stage(self, stage: str, loaders: Mapping[str, Any]) -> None:
        specs, managers, collators = [], [], []
        for name, lcfg in loaders.items():
            if lcfg is None:
                continue
            where = f"datamodule.dataloaders.{stage}.{name}"
            extra = set(lcfg) - _LOADER_KEYS
            if extra:
                raise ValueError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(_LOADER_KEYS)}.")
            kind = lcfg.get("kind")
            if kind not in DATALOADER_KINDS:
                raise ValueError(f"{where}.kind is {kind!r}; set it to 'lm' (loss) or 'prediction' (predictor).")
            for key in ("dataset", "collator"):
                if lcfg.get(key) is None:
                    raise ValueError(f"{where}.{key} is missing.")
            manager = DatasetManager.from_config(to_plain(lcfg["dataset"]), use_debug=self.use_debug)
            collator = instantiate(lcfg["collator"], f"{where}.collator", tokenizer=self.tokenizer)
            is_train = stage == "train"
            shuffle = lcfg.get("shuffle")
            drop_last = lcfg.get("drop_last")
            default_bs = self.per_device_batch_size if is_train else self.eval_batch_size
            specs.append(
                DataloaderSpec(
                    name=str(name),
                    kind=kind,
                    stage=stage,
                    dataset_name=manager.name,
                    batch_size=int(lcfg.get("batch_size") or default_bs),
                    shuffle=is_train if shuffle is None else bool(shuffle),
                    drop_last=is_train if drop_last is None else bool(drop_last),
                )
            )
            managers.append(manager)
            collators.append(collator)
        self._specs[stage], self._managers[stage], self._collators[stage] = specs, managers, collators

    # ----- what the harness reads ----------------------------------------------------------------
    def dataloader_specs(self, stage: str) -> list[DataloaderSpec]:
        """Specs of ``stage``'s dataloaders, in the order its dataloader method returns them."""
        if stage not in STAGES:
            raise ValueError(f"Unknown stage {stage!r}; stages are {list(STAGES)}.")
        return list(self._specs[stage])

    def collator(self, stage: str, name: str) -> Any:
        """The collator instance of one named dataloader."""
        for spec, collator in zip(self._specs[stage], self._collators[stage]):
            if spec.name == name:
                return collator
        raise KeyError(f"No dataloader {name!r} in stage {stage!r}; have {[s.name for s in self._specs[stage]]}.")

    # ----- Lightning hooks -----------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Download/generate, preprocess and cache every dataset (Lightning runs this on rank 0)."""
        for stage in STAGES:
            for manager in self._managers[stage]:
                key = manager.name + "/" + manager.cache_key(self.tokenizer)
                if key in self._prepared:
                    continue
                manager.prepare(
                    self.cache_dir,
                    self.tokenizer,
                    num_proc=self.num_proc,
                    rewrite_manual_cache=self.rewrite_manual_cache,
                )
                self._prepared.add(key)

    def setup(self, stage: str | None = None) -> None:
        """Load the cached datasets of the stages Lightning's ``stage`` needs (every rank)."""
        if stage not in _LIGHTNING_STAGES:
            raise ValueError(f"Unknown Lightning stage {stage!r}; expected one of {list(_LIGHTNING_STAGES)}.")
        rank, world_size = dist_rank_and_world_size()
        for our_stage in _LIGHTNING_STAGES[stage]:
            if our_stage in self._datasets:
                continue
            self._datasets[our_stage] = [
                manager.load(
                    self.cache_dir,
                    self.tokenizer,
                    self.num_proc,
                    shuffle=spec.shuffle,
                    seed=self.seed,
                    rank=rank,
                    world_size=world_size,
                )
                for spec, manager in zip(self._specs[our_stage], self._managers[our_stage])
            ]

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle iterable training datasets for ``epoch`` (map-style samplers get it from Lightning)."""
        for ds in self._datasets.get("train", []):
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(epoch)

    def dataset(self, stage: str, name: str) -> Any:
        """The loaded dataset of one named dataloader (after ``setup``)."""
        self._require_setup(stage)
        for spec, ds in zip(self._specs[stage], self._datasets[stage]):
            if spec.name == name:
                return ds
        raise KeyError(f"No dataloader {name!r} in stage {stage!r}; have {[s.name for s in self._specs[stage]]}.")

    def _require_setup(self, stage: str) -> None:
        if stage not in self._datasets:
            raise RuntimeError(f"Datasets of stage {stage!r} are not loaded; call datamodule.setup(...) first.")

    def _make_loader(self, stage: str, index: int) -> DataLoader:
        spec, ds, collator = self._specs[stage][index], self._datasets[stage][index], self._collators[stage][index]
        kwargs: dict[str, Any] = dict(
            batch_size=spec.batch_size,
            collate_fn=collator,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            drop_last=spec.drop_last,
        )
        if isinstance(ds, torch.utils.data.IterableDataset):
            return DataLoader(ds, **kwargs)
        if spec.shuffle:
            rank, world_size = dist_rank_and_world_size()
            if world_size > 1:
                sampler: Sampler[int] = DistributedSampler(
                    ds, num_replicas=world_size, rank=rank, shuffle=True, seed=self.seed, drop_last=spec.drop_last
                )
            else:
                sampler = SeededRandomSampler(len(ds), seed=self.seed)
            return DataLoader(ds, sampler=sampler, **kwargs)
        return DataLoader(ds, shuffle=False, **kwargs)

    def _loaders(self, stage: str) -> list[DataLoader]:
        self._require_setup(stage)
        return [self._make_loader(stage, i) for i in range(len(self._specs[stage]))]

    def train_dataloader(self) -> DataLoader | dict[str, DataLoader]:
        loaders = self._loaders("train")
        if not loaders:
            raise RuntimeError("No train dataloaders configured (datamodule.dataloaders.train is empty).")
        if len(loaders) == 1:
            return loaders[0]
        return {spec.name: dl for spec, dl in zip(self._specs["train"], loaders)}

    def val_dataloader(self) -> list[DataLoader]:
        return self._loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._loaders("test")

    def predict_dataloader(self) -> list[DataLoader]:
        return self._loaders("predict")


def prepare_datamodule(cfg: DictConfig, runtime: Any = None) -> XLMDataModule:
    """Instantiate ``cfg.datamodule`` (with ``runtime``, built from ``cfg`` when not given) and cache its data."""
    from xlm_core.training.runtime import build_runtime

    runtime = runtime or build_runtime(cfg)
    dm = hydra.utils.instantiate(cfg.datamodule, tokenizer=runtime.tokenizer, _recursive_=False)
    dm.prepare_data()
    return dm
