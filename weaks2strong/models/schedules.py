"""Learning-rate schedules, built from config as partials (``_partial_: true``) and completed with
the optimizer and the number of steps once the trainer knows it."""
from __future__ import annotations

import torch


def linear_warmup_decay(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float = 0.1):
    """Linear warmup over ``warmup_ratio`` of the steps, then linear decay to zero (BERT's schedule)."""
    warmup = int(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

