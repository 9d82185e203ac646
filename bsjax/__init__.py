"""bsjax: critical batch size and batch-size scheduling for LM pre-training."""

__version__ = "0.1.0"
