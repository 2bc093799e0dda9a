"""XLMHarness: the one LightningModule for every family.

It builds the family's model, loss, predictor and metrics from the composed config, routes each
batch by the kind of its dataloader ("lm" -> loss, "prediction" -> predictor), owns the optimizer
and scheduler, writes predictions as JSONL and runs an optional post-hoc evaluator.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from xlm_core.config.checks import instantiate
from xlm_core.config.tools import import_object, to_plain_best_effort
from xlm_core.errors import UsageError
from xlm_core.run.files import predictions_path, write_jsonl
from xlm_core.training.optim import build_lr_scheduler, build_optimizer
from xlm_core.training.reported_metrics import MetricWrapper, build_metrics, metric_log_name, metrics_for
from xlm_core.training.runtime import Runtime, model_runtime_kwargs
from xlm_core.training.settings import RunSettings, run_settings

__all__ = ["XLMHarness"]

_SPLIT_OF_STAGE = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
_RNG_KEY = "xlm_rng_state"
_CONFIG_KEY = "xlm_config"


def _resolve_target(target: Any) -> Any:
    """The class a ``_target_`` names (None when it cannot be imported: instantiate reports that)."""
    try:
        return import_object(str(target))
    except (ImportError, ValueError):
        return None


def _select(cfg: DictConfig | None, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    value = OmegaConf.select(cfg, key, default=default)
    return default if value is None else value


def _batch_size(batch: Any) -> int | None:
    if isinstance(batch, Mapping):
        for value in batch.values():
            if isinstance(value, torch.Tensor) and value.ndim > 0:
                return int(value.shape[0])
    return None


def _dataset_len(dataloaders: Any, idx: int) -> int | None:
    if dataloaders is None:
        return None
    loaders = list(dataloaders) if isinstance(dataloaders, (list, tuple)) else [dataloaders]
    if idx >= len(loaders):
        return None
    try:
        return len(loaders[idx].dataset)
    except (TypeError, AttributeError):
        return None


class XLMHarness(L.LightningModule):
    """Wires a family's model, loss, predictor and metrics into Lightning (see module docstring).

    ``cfg`` is the composed config (keys: model, loss, predictor, reported_metrics, optimizer,
    lr_scheduler, compile, ema, post_hoc_evaluator, paths.run_dir); ``runtime`` holds the tokenizer and
    the family's declared names the job built (:func:`xlm_core.training.runtime.build_runtime`; the names
    say how a training batch counts its tokens: ``tokens_seen``, the reported throughput); ``settings``
    the job's resolved precision and clipping (:func:`xlm_core.training.settings.run_settings`, the
    default).
    """

    def __init__(self, cfg: DictConfig, runtime: Runtime, settings: RunSettings | None = None) -> None:
        super().__init__()
        if not isinstance(runtime, Runtime):
            raise TypeError(
                f"XLMHarness needs a Runtime (xlm_core.training.runtime.build_runtime(cfg)); got {type(runtime).__name__}."
            )
        self.cfg = cfg
        self.settings = settings or run_settings(cfg)
        tokenizer = runtime.tokenizer
        object.__setattr__(self, "tokenizer", tokenizer)
        object.__setattr__(self, "names", runtime.names)
        target = OmegaConf.select(cfg, "model._target_")
        self.model: torch.nn.Module = instantiate(
            cfg.model, "model", **model_runtime_kwargs(_resolve_target(target), tokenizer)
        )
        train_model: Any = torch.compile(self.model) if bool(cfg.get("compile", False)) else self.model
        # loss / predictor hold the model; kept out of the module tree so parameters are not listed twice.
        object.__setattr__(self, "loss_fn", instantiate(cfg.loss, "loss", model=train_model, tokenizer=tokenizer))
        object.__setattr__(
            self,
            "predictor",
            instantiate(cfg.predictor, "predictor", model=self.model, tokenizer=tokenizer)
            if cfg.get("predictor") is not None
            else None,
        )
        evaluator_cfg = cfg.get("post_hoc_evaluator")
        object.__setattr__(
            self,
            "post_hoc_evaluator",
            instantiate(evaluator_cfg, "post_hoc_evaluator") if evaluator_cfg is not None else None,
        )
        self.ema: AveragedModel | None = None
        decay = _select(cfg, "ema.decay")
        if decay is not None:
            if not 0.0 < float(decay) < 1.0:
                raise ValueError(f"ema.decay must be in (0, 1), got {decay}.")
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(float(decay)), use_buffers=False)
            self.ema.requires_grad_(False)
        self.metrics = torch.nn.ModuleDict()
        self._specs: dict[str, list[Any]] = {}
        self._rows: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        self._ema_swapped = False
        self._ema_step = -1
        self._loaded_step = 0
        self.last_val_step = -1
        self._pending_rng: dict[str, Any] | None = None
        self.output_dir: Path | None = None  # eval/generate write into a directory of their own
        self.register_buffer("tokens_seen", torch.zeros((), dtype=torch.long), persistent=False)

    # ------------------------------------------------------------------ setup
    @property
    def run_dir(self) -> Path:
        """Where predictions and checkpoints of this run go (``paths.run_dir``)."""
        rd = _select(self.cfg, "paths.run_dir")
        if rd is None:
            rd = self.trainer.default_root_dir if self._trainer is not None else "."
        return Path(rd)

    @property
    def output_root(self) -> Path:
        """Where prediction files go: ``output_dir`` (set by eval/generate) or the run directory."""
        return self.output_dir if self.output_dir is not None else self.run_dir

    @property
    def step(self) -> int:
        """The training step of the weights: the trainer's, or the loaded checkpoint's when evaluating."""
        gs = self.trainer.global_step if self._trainer is not None else 0
        return max(int(gs), int(self._loaded_step))

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "dataloader_specs"):
            raise RuntimeError(
                "XLMHarness needs a datamodule with dataloader_specs(stage) "
                "(e.g. xlm_core.data.datamodule.XLMDataModule); pass datamodule= to the trainer call."
            )
        new: dict[str, list[tuple[str, str]]] = {}
        for split in _SPLIT_OF_STAGE[stage]:
            specs = list(dm.dataloader_specs(split))
            self._specs[split] = specs
            if split != "predict" and not any(k.startswith(f"{split}|") for k in self.metrics.keys()):
                new[split] = [(s.name, s.kind) for s in specs]
        if "train" in self._specs:
            train_specs = self._specs["train"]
            if len(train_specs) != 1 or train_specs[0].kind != "lm":
                raise ValueError(
                    f"Training needs exactly one 'lm' dataloader; got {[(s.name, s.kind) for s in train_specs]}."
                )
        for key, wrapper in build_metrics(self.cfg.get("reported_metrics"), new).items():
            self.metrics[key] = wrapper

    def configure_callbacks(self) -> list[L.Callback]:
        from xlm_core.training.callbacks import NaNGuard

        return [NaNGuard(dirpath=self.run_dir / "checkpoints")]

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.model, self.cfg.get("optimizer"), self.settings.amp_clipping)
        max_steps = self.trainer.max_steps
        if max_steps is None or max_steps < 0:
            max_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = build_lr_scheduler(optimizer, self.cfg.get("lr_scheduler"), max_steps)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # ------------------------------------------------------------------ steps
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        spec = self._specs["train"][0]
        loss_dict = self.loss_fn(batch, batch_idx, 0, spec.name)
        loss = loss_dict["loss"]
        bs = _batch_size(batch)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, batch_size=bs)
        opt = self.optimizers(use_pl_optimizer=False) if self._trainer is not None else None
        if isinstance(opt, torch.optim.Optimizer):
            self.log("train/lr", float(opt.param_groups[0]["lr"]), on_step=True, on_epoch=False, batch_size=bs)
        for wrapper in metrics_for(self.metrics, "train", 0):
            wrapper(batch, loss_dict, self.tokenizer)
            self.log(
                wrapper.log_name, wrapper.metric, on_step=True, on_epoch=False, add_dataloader_idx=False, batch_size=bs
            )
        n_tok = self.names.count_tokens_in(batch)
        if n_tok is not None:
            self.tokens_seen += n_tok.to(self.tokens_seen.device)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("val", batch, batch_idx, dataloader_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch, batch_idx, dataloader_idx)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        spec = self._spec("predict", dataloader_idx)
        if spec.kind != "prediction":
            raise ValueError(
                f"predict dataloader {spec.name!r} has kind {spec.kind!r}; predict dataloaders must be "
                "kind 'prediction'."
            )
        rows = self._predict_rows("predict", batch, batch_idx, dataloader_idx, spec.name)
        return rows

    def _spec(self, split: str, dataloader_idx: int) -> Any:
        specs = self._specs.get(split) or []
        if dataloader_idx >= len(specs):
            raise IndexError(
                f"No {split} dataloader #{dataloader_idx}; the datamodule declares {[s.name for s in specs]}."
            )
        return specs[dataloader_idx]

    def _qualifier(self, split: str, dataloader_idx: int) -> str | None:
        spec = self._spec(split, dataloader_idx)
        first = next(i for i, s in enumerate(self._specs[split]) if s.kind == spec.kind)
        return None if first == dataloader_idx else spec.name

    def _eval_step(self, split: str, batch: dict[str, Any], batch_idx: int, dataloader_idx: int) -> None:
        spec = self._spec(split, dataloader_idx)
        bs = _batch_size(batch)
        if spec.kind == "lm":
            outputs = self.loss_fn(batch, batch_idx, dataloader_idx, spec.name)
            self.log(
                metric_log_name(split, "lm", "loss", self._qualifier(split, dataloader_idx)),
                outputs["loss"].detach(),
                on_step=False,
                on_epoch=True,
                add_dataloader_idx=False,
                batch_size=bs,
                sync_dist=True,
            )
        else:
            if self.predictor is None:
                raise ValueError(
                    f"{split} dataloader {spec.name!r} is kind 'prediction' but the config has no predictor."
                )
            outputs = self._predict(batch, batch_idx, dataloader_idx, spec.name)
            self._rows[(split, dataloader_idx)].extend(
                self.predictor.to_dict(batch, outputs, batch_idx, dataloader_idx, spec.name)
            )
        wrapper: MetricWrapper
        for wrapper in metrics_for(self.metrics, split, dataloader_idx):
            wrapper.update(batch, outputs, self.tokenizer)
            self.log(
                wrapper.log_name, wrapper.metric, on_step=False, on_epoch=True, add_dataloader_idx=False, batch_size=bs
            )

    def _predict(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int, name: str) -> dict[str, Any]:
        return self.predictor.predict(batch, batch_idx, dataloader_idx, name)

    def _predict_rows(
        self, split: str, batch: dict[str, Any], batch_idx: int, dataloader_idx: int, name: str
    ) -> list[dict[str, Any]]:
        preds = self._predict(batch, batch_idx, dataloader_idx, name)
        rows = self.predictor.to_dict(batch, preds, batch_idx, dataloader_idx, name)
        self._rows[(split, dataloader_idx)].extend(rows)
        return rows

    # ------------------------------------------------------------------ predictions at epoch end
    def _gather_rows(self, rows: list[dict[str, Any]], split: str, dataloader_idx: int) -> list[dict[str, Any]]:
        """Every rank's rows, in dataset order when a DistributedSampler split them (padding dropped)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return rows
        world = dist.get_world_size()
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, rows)
        longest = max(len(g) for g in gathered)
        merged = [g[k] for k in range(longest) for g in gathered if k < len(g)]
        loaders = {
            "val": self.trainer.val_dataloaders,
            "test": self.trainer.test_dataloaders,
            "predict": self.trainer.predict_dataloaders,
        }.get(split)
        n = _dataset_len(loaders, dataloader_idx)
        return merged[:n] if n is not None else merged

    def _finish_predictions(self, split: str) -> None:
        if self._trainer is not None and self.trainer.sanity_checking:
            self._rows.clear()
            return
        for idx, spec in enumerate(self._specs.get(split) or []):
            if spec.kind != "prediction":
                continue
            rows = self._gather_rows(self._rows.pop((split, idx), []), split, idx)
            metrics: dict[str, float] = {}
            run_eval = self.post_hoc_evaluator is not None and split != "predict"
            if self.trainer.is_global_zero:
                if run_eval:
                    rows, metrics = self.post_hoc_evaluator.eval(
                        rows, tokenizer=self.tokenizer, split=split, dataloader_name=spec.name
                    )
                    metrics = {str(k): float(v) for k, v in dict(metrics).items()}
                write_jsonl(predictions_path(self.output_root, split, spec.name, self.step), rows)
            if run_eval:
                metrics = self.trainer.strategy.broadcast(metrics, src=0)
                for name, value in metrics.items():
                    self.log(
                        metric_log_name(split, "prediction", name, self._qualifier(split, idx)),
                        value,
                        on_step=False,
                        on_epoch=True,
                        add_dataloader_idx=False,
                        sync_dist=False,
                    )
        self._rows = defaultdict(list, {k: v for k, v in self._rows.items() if k[0] != split})

    # ------------------------------------------------------------------ EMA
    def _swap_ema(self) -> None:
        if self.ema is None:
            return
        with torch.no_grad():
            for p, e in zip(self.model.parameters(), self.ema.module.parameters()):
                tmp = p.data.clone()
                p.data.copy_(e.data)
                e.data.copy_(tmp)
        self._ema_swapped = not self._ema_swapped

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._pending_rng is not None:
            _set_rng_state(self._pending_rng)
            self._pending_rng = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None and self.trainer.global_step > self._ema_step:
            self.ema.update_parameters(self.model)
            self._ema_step = self.trainer.global_step

    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "set_epoch"):
            dm.set_epoch(self.trainer.current_epoch)

    def on_validation_epoch_start(self) -> None:
        self._swap_ema()

    def on_validation_epoch_end(self) -> None:
        self._finish_predictions("val")
        if not self.trainer.sanity_checking:
            self.last_val_step = self.trainer.global_step
        if self._ema_swapped:
            self._swap_ema()

    def on_test_epoch_start(self) -> None:
        self._swap_ema()

    def on_test_epoch_end(self) -> None:
        self._finish_predictions("test")
        if self._ema_swapped:
            self._swap_ema()

    def on_predict_epoch_start(self) -> None:
        self._swap_ema()

    def on_predict_epoch_end(self) -> None:
        self._finish_predictions("predict")
        if self._ema_swapped:
            self._swap_ema()

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._ema_swapped:  # never store EMA weights as the model's own
            raise RuntimeError("Checkpoint requested while EMA weights are swapped in; save outside evaluation.")
        checkpoint[_RNG_KEY] = _get_rng_state()
        checkpoint[_CONFIG_KEY] = to_plain_best_effort(self.cfg)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        own = self.state_dict()
        bad = [
            f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in checkpoint.get("state_dict", {}).items()
            if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)
        ]
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise UsageError(
                f"the checkpoint does not fit this model ({'; '.join(bad[:3])}{more}): it was trained with "
                "another model or tokenizer config; use the settings it was trained with (allow_config_mismatch"
                "=true only loads checkpoints whose tensors have the same shapes)"
            )
        self._loaded_step = int(checkpoint.get("global_step", 0))
        self._ema_step = self._loaded_step
        if _RNG_KEY in checkpoint:
            self._pending_rng = checkpoint[_RNG_KEY]

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load a Lightning checkpoint's weights (no trainer needed), as eval/generate do."""
        from xlm_core.run.checkpoints import load_checkpoint

        ckpt = load_checkpoint(path)
        self.on_load_checkpoint(ckpt)
        self._pending_rng = None
        self.load_state_dict(ckpt["state_dict"])

    def named_eval_parameters(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        """The parameters evaluation uses: EMA's when EMA is on, else the model's."""
        src = self.ema.module if self.ema is not None else self.model
        return src.named_parameters()


def _get_rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain Python values, so ``torch.load(weights_only=True)`` reads them."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, pystate, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(pystate), gauss],
        "numpy": [
            str(kind),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, pystate, gauss = state["python"]
    random.setstate((version, tuple(pystate), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):  # different number of GPUs than when saved
            pass
