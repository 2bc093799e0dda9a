"""XLMDataModule over the real star-graph configs, SimpleSpaceTokenizer and ARLM collators."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from xlm_core.config.compose import compose_config
from xlm_core.data.datamodule import DataloaderSpec, SeededRandomSampler, XLMDataModule, prepare_datamodule
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.tasks.star_graphs import graph_key


def _compose(tmp_path: Path, *overrides: str) -> DictConfig:
    return compose_config(
        "arlm",
        [
            "datamodule=star",
            "model_type=arlm_seq2seq",
            "block_size=14",
            "input_block_size=28",
            "per_device_batch_size=8",
            f"paths.cache_dir={tmp_path}",
            *overrides,
        ],
    )


def _datamodule(cfg: DictConfig) -> XLMDataModule:
    return hydra.utils.instantiate(
        cfg.datamodule,
        tokenizer=SimpleSpaceTokenizer.for_numbers(20),
        _recursive_=False,
    )


@pytest.fixture()
def debug_cfg(tmp_path: Path, monkeypatch) -> DictConfig:
    monkeypatch.delenv("DEBUG_OVERFIT", raising=False)
    return _compose(tmp_path, "debug=overfit")


def test_dataloader_specs_name_and_kind_every_loader(debug_cfg: DictConfig) -> None:
    dm = _datamodule(debug_cfg)
    assert [(s.name, s.kind) for s in dm.dataloader_specs("train")] == [("lm", "lm")]
    assert [(s.name, s.kind) for s in dm.dataloader_specs("val")] == [("lm", "lm"), ("prediction", "prediction")]
    assert [(s.name, s.kind) for s in dm.dataloader_specs("test")] == [("lm", "lm"), ("prediction", "prediction")]
    assert [(s.name, s.kind) for s in dm.dataloader_specs("predict")] == [("prediction", "prediction")]
    train = dm.dataloader_specs("train")[0]
    assert isinstance(train, DataloaderSpec) and train.batch_size == 8 and train.shuffle and train.drop_last
    assert train.dataset_name == "star_easy_train_debug"  # debug=overfit picked the debug sources
    with pytest.raises(ValueError, match="Unknown stage"):
        dm.dataloader_specs("fit")


def test_fit_batches_come_from_the_real_collators(debug_cfg: DictConfig) -> None:
    dm = _datamodule(debug_cfg)
    dm.prepare_data()
    dm.setup("fit")
    train = dm.train_dataloader()
    assert len(dm.dataset("train", "lm")) == 512 and len(train) == 512 // 8
    batch = next(iter(train))
    assert batch["input_ids"].shape == (8, 28 + 14) and batch["target_ids"].shape == (8, 42)
    assert (batch["target_ids"][:, :26] == -100).all()  # prompt (<= 26 tokens) never scored
    val_lm, val_pred = dm.val_dataloader()
    pred_batch = next(iter(val_pred))
    assert pred_batch["input_ids"].shape == (8, 28)
    assert (pred_batch["input_ids"][:, -1] == dm.tokenizer.bos_token_id).all()
    assert next(iter(val_lm))["input_ids"].shape == (8, 42)
    with pytest.raises(RuntimeError, match="call datamodule.setup"):
        dm.test_dataloader()


def test_debug_splits_are_disjoint(debug_cfg: DictConfig) -> None:
    dm = _datamodule(debug_cfg)
    dm.setup(None)  # builds missing caches outside distributed runs
    keys = {stage: {graph_key(r) for r in dm.dataset(stage, "lm")} for stage in ("train", "val", "test")}
    assert [len(keys[s]) for s in ("train", "val", "test")] == [512, 32, 64]
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]


def test_train_order_is_a_function_of_seed_and_epoch(debug_cfg: DictConfig) -> None:
    dm = _datamodule(debug_cfg)
    dm.setup("fit")
    first = [b["input_ids"] for b in dm.train_dataloader()]
    again = [b["input_ids"] for b in dm.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, SeededRandomSampler)
    loader.sampler.set_epoch(1)
    assert not all(torch.equal(a, b["input_ids"]) for a, b in zip(first, loader))


def test_seeded_sampler_permutes_and_skips() -> None:
    s = SeededRandomSampler(10, seed=3)
    order = list(s)
    assert sorted(order) == list(range(10)) and list(s) == order
    s.skip_first(4)
    assert list(s) == order[4:] and list(s) == order  # skip applies to one pass only
    s.set_epoch(2)
    assert list(s) != order


def test_env_debug_overfit_switches_sources(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DEBUG_OVERFIT", "1")
    assert _datamodule(_compose(tmp_path)).dataloader_specs("val")[0].dataset_name == "star_easy_validation_debug"
    monkeypatch.setenv("DEBUG_OVERFIT", "0")
    assert _datamodule(_compose(tmp_path)).dataloader_specs("val")[0].dataset_name == "star_easy_validation"


def test_prepare_datamodule_caches_every_dataset(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DEBUG_OVERFIT", "1")
    cfg = _compose(
        tmp_path,
        "+tokenizer._target_=xlm_core.data.simple_tokenizer.SimpleSpaceTokenizer.for_numbers",
        "+tokenizer.n=20",
    )
    dm = prepare_datamodule(cfg)
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("_"))
    assert names == ["star_easy_test_debug", "star_easy_train_debug", "star_easy_validation_debug"]
    assert all(len(list((tmp_path / n).iterdir())) == 1 for n in names)  # one cache each, shared by lm/prediction
    assert dm.dataloader_specs("predict")[0].kind == "prediction"


def test_bad_kind_is_rejected_with_its_location(debug_cfg: DictConfig) -> None:
    loaders = OmegaConf.to_container(debug_cfg.datamodule.dataloaders, resolve=True)
    loaders["val"]["prediction"]["kind"] = "predict"
    with pytest.raises(ValueError, match=r"dataloaders\.val\.prediction\.kind is 'predict'"):
        XLMDataModule(loaders, tokenizer=SimpleSpaceTokenizer.for_numbers(20))


@pytest.mark.parametrize("setting, prompt, target", [("medium", 36, 16), ("hard", 116, 28)])
def test_one_star_datamodule_serves_every_setting(tmp_path: Path, setting: str, prompt: int, target: int) -> None:
    cfg = _compose(tmp_path, f"star_setting={setting}", f"block_size={target}", f"input_block_size={prompt}")
    dm = hydra.utils.instantiate(
        cfg.datamodule, tokenizer=SimpleSpaceTokenizer.for_numbers(SETTING_VOCAB[setting]), _recursive_=False
    )
    assert [s.dataset_name for s in dm.dataloader_specs("test")] == [f"star_{setting}_test"] * 2
    assert [s.dataset_name for s in dm.dataloader_specs("val")] == [f"star_{setting}_validation"] * 2
    assert dm.dataloader_specs("train")[0].dataset_name == f"star_{setting}_train"
    kwargs = cfg.datamodule.dataloaders.train.lm.dataset.generator_kwargs
    assert (kwargs.setting, kwargs.split, kwargs.num_train) == (setting, "train", 50000)


SETTING_VOCAB = {"easy": 20, "medium": 20, "hard": 56}


class _CountingModule:
    """Builds a minimal LightningModule recording which dataloader each eval batch came from."""

    @staticmethod
    def make(dm: XLMDataModule):
        import lightning as L

        class M(L.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.w = torch.nn.Parameter(torch.zeros(()))
                self.seen: list[tuple[str, str, tuple]] = []

            def training_step(self, batch, batch_idx):
                return (self.w - batch["input_ids"].float().mean()) ** 2

            def validation_step(self, batch, batch_idx, dataloader_idx=0):
                spec = dm.dataloader_specs("val")[dataloader_idx]
                self.seen.append((spec.name, spec.kind, tuple(batch["input_ids"].shape)))

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        return M()


def test_lightning_trainer_runs_prepare_setup_and_both_val_loaders(debug_cfg: DictConfig, tmp_path: Path) -> None:
    import lightning as L

    dm = _datamodule(debug_cfg)
    module = _CountingModule.make(dm)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        accelerator="cpu",
    )
    trainer.fit(module, datamodule=dm)
    assert ("lm", "lm", (8, 42)) in module.seen and ("prediction", "prediction", (8, 28)) in module.seen
