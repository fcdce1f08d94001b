"""What every path's stages share: the config slice that keys a stage and ``build`` (``config``),
how a stage is computed once and reused (``stage``), the classification table layout (``tables``)
and the one DPO trainer (``dpo``)."""
