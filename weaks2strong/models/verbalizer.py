"""A causal LM as a K-way classifier: class k's score is the log-likelihood of its verbalizer after
the prompt, and the scores of a row are its logits. The same LM, data and truncation as the
generation student (``causal_lm``); only the loss differs: a weighted soft cross-entropy over the K
verbalizers, so the aggregate's soft targets train it as they train the encoder classifier."""
from __future__ import annotations

import torch

from weaks2strong.models.causal_lm import SequenceLikelihoodModule
from weaks2strong.models.losses import weighted_soft_cross_entropy


class VerbalizerModule(SequenceLikelihoodModule):
    """Batches from ``CandidateDataModule(every_candidate=True)``: every row's K verbalizers, with the
    row's soft targets as ``probs``. ``val/nll`` is the gold class's cross-entropy on val."""

    def batch_logits(self, batch) -> torch.Tensor:
        return self.sequence_logprobs(batch, fill=float("-inf"))  # (B, K)

    def _loss(self, batch) -> torch.Tensor:
        return weighted_soft_cross_entropy(self.batch_logits(batch), batch["probs"], batch["weights"],
                                           self.global_weight(batch))

    def validation_step(self, batch, batch_idx):
        logits = self.batch_logits(batch)
        size = len(batch["weights"])
        self.log("val/nll", weighted_soft_cross_entropy(logits, batch["probs"], batch["weights"]), prog_bar=True,
                 batch_size=size, sync_dist=True)
        hits = (logits.argmax(-1) == batch["probs"].argmax(-1)).float().mean()
        self.log("val/accuracy", hits, prog_bar=True, batch_size=size, sync_dist=True)
