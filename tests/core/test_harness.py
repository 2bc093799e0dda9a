"""XLMHarness pieces on real components: optimizer groups, LR warmup, NaN guard, predictions files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from xlm_core.config.compose import compose_config
from xlm_core.jobs.common import build_datamodule, build_trainer
from xlm_core.run.files import predictions_path, write_jsonl
from xlm_core.training.callbacks import NaNGuard
from xlm_core.training.harness import XLMHarness
from xlm_core.training.optim import build_lr_scheduler, build_optimizer, weight_decay_param_groups
from xlm_core.training.runtime import build_runtime

from tiny_runs import TINY_ARLM_NETWORK


def compose_cfg(root: Path, *overrides: str) -> DictConfig:
    """The composed star_easy_arlm config (as the CLI builds it) with a tiny model."""
    return compose_config(
        "arlm",
        [
            "experiment=star_easy_arlm",
            "job_name=unit",
            f"paths.root_dir={root}",
            "debug=overfit",
            "per_device_batch_size=16",
            "global_batch_size=16",
            "trainer.num_sanity_val_steps=0",
            *TINY_ARLM_NETWORK,
            *overrides,
        ],
    )


@pytest.fixture
def cfg(tmp_path: Path) -> DictConfig:
    return compose_cfg(tmp_path)


def _harness(cfg: DictConfig) -> XLMHarness:
    return XLMHarness(cfg, build_runtime(cfg))


def test_param_groups_split_every_parameter_once(cfg: DictConfig) -> None:
    model = _harness(cfg).model
    decay, no_decay = weight_decay_param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)
    assert all(p.ndim >= 2 for p in decay["params"])
    assert not any("norm" in n or n.endswith("bias") for n in decay["names"])


def test_inconsistent_weight_decay_split_is_reported() -> None:
    class Bad(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

        def get_named_params_for_weight_decay(self):
            return iter([("a.weight", self.a.weight)])

        def get_named_params_for_no_weight_decay(self):
            return iter([("a.bias", self.a.bias)])

    with pytest.raises(ValueError, match=r"in neither \['b.bias', 'b.weight'\]"):
        weight_decay_param_groups(Bad(), 0.1)


def test_optimizer_is_adamw_with_config_values(cfg: DictConfig) -> None:
    model = _harness(cfg).model
    opt = build_optimizer(model, {"lr": 3e-4, "weight_decay": 0.05, "betas": [0.8, 0.9], "eps": 1e-6})
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert opt.param_groups[0]["lr"] == 3e-4 and opt.param_groups[0]["betas"] == (0.8, 0.9)
    with pytest.raises(ValueError, match="momentum"):
        build_optimizer(model, {"momentum": 0.9})


def test_scheduler_warmup_is_honoured_per_optimizer_step() -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = build_lr_scheduler(opt, {"name": "linear", "num_warmup_steps": 4, "num_training_steps": None}, 8)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25])


def test_trainer_steps_the_schedule_every_optimizer_step(tmp_path: Path) -> None:
    cfg = compose_cfg(
        tmp_path,
        "lr_scheduler.name=linear",
        "lr_scheduler.num_warmup_steps=4",
        "optimizer.lr=1.0",
        "trainer.max_steps=3",
        "trainer.limit_val_batches=0",
        "~callbacks",
        "~logger",
    )
    harness = _harness(cfg)
    dm = build_datamodule(cfg, build_runtime(cfg))
    trainer = build_trainer(cfg)
    trainer.fit(harness, datamodule=dm)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.75)  # 3 of 4 warmup steps done


@pytest.mark.parametrize("precision", ["bf16-mixed", "32"])
def test_mixed_precision_with_gradient_clipping_trains(tmp_path: Path, precision: str) -> None:
    # Lightning cannot clip the gradients of a fused AdamW under AMP: the default (fused: null) must
    # then pick the unfused kernel, so bf16-mixed + gradient_clip_val trains instead of raising.
    cfg = compose_cfg(
        tmp_path,
        f"trainer.precision={precision}",
        "trainer.gradient_clip_val=1.0",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=0",
        "~callbacks",
        "~logger",
    )
    harness = _harness(cfg)
    trainer = build_trainer(cfg)
    trainer.fit(harness, datamodule=build_datamodule(cfg, build_runtime(cfg)))
    assert trainer.global_step == 2
    assert trainer.optimizers[0].defaults["fused"] is (None if precision == "bf16-mixed" else True)


def test_explicit_fused_adamw_with_amp_clipping_is_a_config_error(tmp_path: Path) -> None:
    cfg = compose_cfg(
        tmp_path,
        "trainer.precision=bf16-mixed",
        "trainer.gradient_clip_val=1.0",
        "optimizer.fused=true",
        "trainer.max_steps=2",
        "trainer.limit_val_batches=0",
        "~callbacks",
        "~logger",
    )
    harness = _harness(cfg)
    trainer = build_trainer(cfg)
    with pytest.raises(ValueError, match=r"optimizer.fused=true.*bf16-mixed.*gradient_clip_val=1.0"):
        trainer.fit(harness, datamodule=build_datamodule(cfg, build_runtime(cfg)))


def test_nan_guard_saves_a_checkpoint_of_finite_weights_then_raises(tmp_path: Path) -> None:
    cfg = compose_cfg(
        tmp_path,
        "optimizer.lr=1e12",
        "trainer.gradient_clip_val=null",
        "trainer.max_steps=50",
        "trainer.limit_val_batches=0",
        "~callbacks",
        "~logger",
        "model.dropout=0",
    )
    harness = _harness(cfg)
    dm = build_datamodule(cfg, build_runtime(cfg))
    trainer = build_trainer(cfg)
    with pytest.raises(FloatingPointError, match="nan_guard_step_"):
        trainer.fit(harness, datamodule=dm)
    guard = next(c for c in trainer.callbacks if isinstance(c, NaNGuard))
    assert guard.saved_path is not None and guard.saved_path.is_file()
    ckpt = torch.load(guard.saved_path, weights_only=True)
    assert ckpt["global_step"] == trainer.global_step > 0
    assert all(torch.isfinite(v).all() for k, v in ckpt["state_dict"].items() if v.is_floating_point())


def test_write_jsonl_rewrites_instead_of_appending(tmp_path: Path) -> None:
    path = predictions_path(tmp_path, "val", "prediction", 7)
    assert path == tmp_path / "predictions" / "val" / "prediction" / "step_7.jsonl"
    write_jsonl(path, [{"a": 1}, {"a": 2}, {"a": 3}])
    write_jsonl(path, [{"a": torch.tensor([4, 5])}])
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"a": [4, 5]}]


def test_validating_twice_at_one_step_rewrites_the_predictions_file(tmp_path: Path) -> None:
    cfg = compose_cfg(tmp_path, "~callbacks", "~logger", "predictor.max_steps=3")
    harness = _harness(cfg)
    dm = build_datamodule(cfg, build_runtime(cfg))
    trainer = build_trainer(cfg)
    trainer.validate(harness, datamodule=dm, verbose=False)
    trainer.validate(harness, datamodule=dm, verbose=False)
    rows = (Path(cfg.paths.run_dir) / "predictions/val/prediction/step_0.jsonl").read_text().splitlines()
    assert len(rows) == 32  # the debug validation split, once
    assert {"text", "ids", "prompt", "target"} <= json.loads(rows[0]).keys()
    assert set(trainer.callback_metrics) >= {
        "val/lm/accumulated_loss",
        "val/prediction/exact_match",
        "val/prediction/token_accuracy",
    }


def test_ema_weights_are_used_for_evaluation_and_saved(tmp_path: Path) -> None:
    cfg = compose_cfg(
        tmp_path, "+ema.decay=0.5", "trainer.max_steps=2", "trainer.limit_val_batches=0", "~callbacks", "~logger"
    )
    harness = _harness(cfg)
    assert harness.ema is not None
    dm = build_datamodule(cfg, build_runtime(cfg))
    trainer = build_trainer(cfg)
    trainer.fit(harness, datamodule=dm)
    model_w = {k: v.clone() for k, v in harness.model.state_dict().items()}
    ema_w = {k: v.detach().clone() for k, v in harness.ema.module.named_parameters()}
    assert any(not torch.equal(ema_w[k], model_w[k]) for k in ema_w)  # the average lags the weights
    harness.on_validation_epoch_start()  # swaps EMA weights in
    swapped = dict(harness.model.named_parameters())
    assert all(torch.equal(swapped[k], ema_w[k]) for k in ema_w)
    harness._swap_ema()  # and back
    assert all(torch.equal(harness.model.state_dict()[k], model_w[k]) for k in model_w)
    assert any(k.startswith("ema.module.") for k in harness.state_dict())


def test_compile_wraps_the_training_model_only(tmp_path: Path) -> None:
    harness = _harness(compose_cfg(tmp_path, "compile=true"))
    assert isinstance(harness.loss_fn.model, torch._dynamo.eval_frame.OptimizedModule)
    assert harness.predictor.model is harness.model
    assert not any(k.startswith("_orig_mod") or "loss_fn" in k for k in harness.state_dict())
