"""The LightningModule that trains any network on (soft target, weight) rows: the strong student
and the fine-tuned weak teacher, so that the ceiling, the student and the teacher differ only in
their labels. The network, optimizer and schedule come in built (from config, as partials)."""
from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torchmetrics
from torch import nn

from weaks2strong.models.losses import logconf_coefficient, logconf_loss, weighted_soft_cross_entropy
from weaks2strong.models.schedules import linear_warmup_decay

LOSSES = ("soft_ce", "logconf")


class SoftTargetModule(pl.LightningModule):
    """``net(input_ids, attention_mask) -> (B, K)`` logits (or ``net(features)`` on batches of cached
    encoder features: the frozen-feature student), trained with ``loss``:

    - ``soft_ce``: the confidence-weighted soft cross-entropy (``models.losses``);
    - ``logconf``: Burns et al. 2023's auxiliary confidence loss, α ramping to ``aux_coef`` over the
      first ``aux_warmup_frac`` of training.

    Validation scores the gold ``val`` split (``val/acc``, ``val/auroc``); it never sees test.
    """

    def __init__(self, net: nn.Module, num_classes: int, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable | None = None, loss: str = "soft_ce", aux_coef: float = 0.5,
                 aux_warmup_frac: float = 0.1):
        super().__init__()
        if loss not in LOSSES:
            from weaks2strong.runtime.errors import UserInputError

            raise UserInputError(f"student.model.loss='{loss}' is not one of {', '.join(LOSSES)}")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net, self.optimizer_factory = net, optimizer
        # decided before any strategy wraps the net (FSDP flattens every parameter to 1-D)
        self._decayed = {f"net.{n}" for n, p in net.named_parameters() if p.ndim >= 2}
        self.scheduler_factory = scheduler or linear_warmup_decay
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)
        self.val_auroc = torchmetrics.AUROC(task="multiclass", num_classes=num_classes) if num_classes > 2 \
            else torchmetrics.AUROC(task="binary")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids, attention_mask)

    def _logits(self, batch: dict) -> torch.Tensor:
        if "features" in batch:
            return self.net(batch["features"])  # (B, K)
        return self(batch["input_ids"], batch["attention_mask"])  # (B, K)

    def training_step(self, batch, batch_idx):
        logits = self._logits(batch)  # (B, K)
        weights = batch["weights"]  # (B,)
        normalizer = None
        if self.trainer.world_size > 1:  # DDP averages gradients over ranks: normalise by the global weight
            normalizer = self.trainer.strategy.reduce(weights.sum(), reduce_op="sum") / self.trainer.world_size
        if self.hparams.loss == "logconf":
            progress = self.global_step / max(1, self.trainer.estimated_stepping_batches)
            alpha = logconf_coefficient(progress, self.hparams.aux_coef, self.hparams.aux_warmup_frac)
            loss = logconf_loss(logits, batch["targets"], weights, alpha, normalizer)
            self.log("train/logconf_alpha", alpha, batch_size=len(logits))
        else:
            loss = weighted_soft_cross_entropy(logits, batch["targets"], weights, normalizer)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        return loss

    def validation_step(self, batch, batch_idx):
        probs = self._logits(batch).softmax(-1)  # (B, K)
        labels = batch["targets"].argmax(-1)  # val rows carry one-hot gold
        self.val_acc(probs, labels)
        self.val_auroc(probs if self.hparams.num_classes > 2 else probs[:, 1], labels)
        self.log_dict({"val/acc": self.val_acc, "val/auroc": self.val_auroc}, prog_bar=True, batch_size=len(probs))

    def predict_step(self, batch, batch_idx):
        return self._logits(batch).softmax(-1)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # dropout draws from the global generator; restoring it makes a resumed run replay exactly
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])

    def configure_optimizers(self):
        # parameters that are 2D (matrices, embeddings) are weight-decayed; biases and norms are not
        named = [(n.replace("_fsdp_wrapped_module.", ""), p) for n, p in self.named_parameters()]
        decay = [p for n, p in named if n in self._decayed]
        no_decay = [p for n, p in named if n not in self._decayed]
        optimizer = self.optimizer_factory([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
        scheduler = self.scheduler_factory(optimizer, total_steps=max(1, int(self.trainer.estimated_stepping_batches)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def logits(module: nn.Module, batch: dict, device: torch.device) -> torch.Tensor:
    """(B, K): a module that scores a whole batch (``batch_logits``: the verbalizer student), a head
    over cached features (the frozen-feature student) or one called on token ids and mask (the
    encoder students)."""
    if hasattr(module, "batch_logits"):
        return module.batch_logits({k: v.to(device) for k, v in batch.items()})
    if "features" in batch:
        return module.net(batch["features"].to(device))
    return module(batch["input_ids"].to(device), batch["attention_mask"].to(device))


@torch.no_grad()
def predict_proba(module: nn.Module, loader) -> torch.Tensor:
    """(N, K) probabilities over a loader, in order, without a Trainer (rank 0 alone, after training).
    A loader that batches rows out of order (by length) gives each batch's ``row_index`` (B,): its
    rows' places in the order, where their probabilities go."""
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    out, places = [], []
    for batch in loader:
        out.append(logits(module, batch, device).softmax(-1).float().cpu())
        places += [batch["row_index"]] if isinstance(batch, dict) and "row_index" in batch else []
    module.train(was_training)
    probs = torch.cat(out)  # (N, K)
    return probs[torch.cat(places).argsort()] if places else probs
