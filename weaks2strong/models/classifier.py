"""A pretrained encoder, mean pooling and a linear head, trained on soft targets: the strong student,
and (truncated to a few layers) the fine-tuned weak teacher."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
import torchmetrics
from torch import nn

from weaks2strong.models.losses import weighted_soft_cross_entropy


class SoftTargetClassifier(pl.LightningModule):
    """Fine-tunes ``encoder_path`` (a local HF folder) with a K-way head.

    The same module trains the ceiling (one-hot gold targets, unit weights) and the student
    (aggregated soft targets, confidence weights), so the two differ only in their labels.
    ``num_layers`` keeps only the encoder's first layers (the fine-tuned weak teacher);
    ``encoder_dropout`` overrides the encoder's own dropout (None keeps the checkpoint's).
    """

    def __init__(self, encoder_path: str, num_classes: int, lr: float = 5e-5, weight_decay: float = 0.01,
                 warmup_ratio: float = 0.1, dropout: float = 0.1, trust_remote_code: bool = False,
                 num_layers: int | None = None, encoder_dropout: float | None = None):
        super().__init__()
        from weaks2strong.models.encoders import load_encoder

        self.save_hyperparameters()
        self.encoder = load_encoder(encoder_path, num_layers, trust_remote_code, dropout=encoder_dropout)
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # we mean-pool; an unused pooler would stall DDP's gradient sync
        self.encoder.train()  # from_pretrained returns eval mode; fine-tuning wants dropout on
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.encoder.config.hidden_size, num_classes))
        task = "binary" if num_classes == 2 else "multiclass"
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)
        self.val_auroc = torchmetrics.AUROC(task=task, num_classes=num_classes) if task == "multiclass" \
            else torchmetrics.AUROC(task="binary")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (B, H) mean over real tokens
        return self.head(pooled)  # (B, K)

    def training_step(self, batch, batch_idx):
        logits = self(batch["input_ids"], batch["attention_mask"])
        weights = batch["weights"]
        normalizer = None
        if self.trainer.world_size > 1:  # DDP averages gradients over ranks: normalise by the global weight
            normalizer = self.trainer.strategy.reduce(weights.sum(), reduce_op="sum") / self.trainer.world_size
        loss = weighted_soft_cross_entropy(logits, batch["targets"], weights, normalizer)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        return loss

    def validation_step(self, batch, batch_idx):
        logits = self(batch["input_ids"], batch["attention_mask"])
        labels = batch["targets"].argmax(-1)
        probs = logits.softmax(-1)
        self.val_acc(probs, labels)
        self.val_auroc(probs if self.hparams.num_classes > 2 else probs[:, 1], labels)
        self.log_dict({"val/acc": self.val_acc, "val/auroc": self.val_auroc}, prog_bar=True, batch_size=len(logits))

    def predict_step(self, batch, batch_idx):
        return self(batch["input_ids"], batch["attention_mask"]).softmax(-1)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # dropout draws from the global generator; restoring it makes a resumed run replay exactly
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])

    def configure_optimizers(self):
        decay = [p for n, p in self.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in self.named_parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.hparams.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=self.hparams.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.hparams.warmup_ratio * total)

        def schedule(step: int) -> float:  # linear warmup, then linear decay to zero
            if step < warmup:
                return (step + 1) / max(1, warmup)
            return max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
