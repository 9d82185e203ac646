"""Tables of Zhang et al. (2024): Chinchilla steps (Table 1), beta2 and EWA tau (Table 4).

"How Does Critical Batch Size Scale in Pre-training?", Appendix G, Table 4:
the values of the runs that reached the target loss in the fewest steps, for
each model size and global batch size (sequences of 512 tokens), all with
beta1 = 0.95 and LR 3.16e-3. Values transcribed from the paper's table.
"""

from __future__ import annotations

# Table 1: model size -> the step of the batch-256 reference run (ctx 512) whose EWA eval
# loss is the target; the paper publishes the steps, not the losses.
TABLE1_CHINCHILLA_STEPS: dict[str, int] = {
    "85M": 13193,
    "151M": 23438,
    "302M": 46875,
    "604M": 93750,
    "1.2B": 187500,
}

# model size -> {batch size: (beta2, tau)}
TABLE4: dict[str, dict[int, tuple[float, float]]] = {
    "85M": {
        64: (0.999, 0.9995),
        128: (0.999, 0.9995),
        256: (0.999, 0.9995),
        512: (0.999, 0.998),
        1024: (0.95, 0.99),
        2048: (0.95, 0.99),
        4096: (0.95, 0.99),
        8192: (0.95, 0.98),
        16384: (0.95, 0.98),
    },
    "151M": {
        64: (0.99, 0.998),
        128: (0.99, 0.998),
        256: (0.99, 0.998),
        512: (0.99, 0.998),
        1024: (0.95, 0.95),
        2048: (0.99, 0.99),
        4096: (0.99, 0.99),
        8192: (0.95, 0.95),
        16384: (0.99, 0.99),
    },
    "302M": {
        64: (0.999, 0.9995),
        128: (0.999, 0.9995),
        256: (0.995, 0.9995),
        512: (0.99, 0.9995),
        1024: (0.99, 0.999),
        2048: (0.95, 0.998),
        4096: (0.95, 0.995),
        8192: (0.95, 0.99),
        16384: (0.99, 0.99),
    },
    "604M": {
        64: (0.9995, 0.9995),
        128: (0.9995, 0.9995),
        256: (0.9995, 0.9995),
        512: (0.9995, 0.9995),
        1024: (0.999, 0.999),
        2048: (0.998, 0.998),
        4096: (0.995, 0.995),
        8192: (0.99, 0.99),
        16384: (0.99, 0.995),
    },
    "1.2B": {
        64: (0.999, 0.9995),
        128: (0.999, 0.9995),
        256: (0.995, 0.9995),
        512: (0.99, 0.9995),
        1024: (0.99, 0.999),
        2048: (0.95, 0.998),
        4096: (0.95, 0.995),
        8192: (0.95, 0.99),
        16384: (0.95, 0.99),
    },
}

PRESET_NAMES = tuple(TABLE4)


def table4_beta2(model_size: str) -> dict[int, float]:
    """Batch size -> Adam beta2 for one of the paper's model sizes."""
    return {B: b2 for B, (b2, _) in TABLE4[model_size].items()}


def table4_tau(model_size: str) -> dict[int, float]:
    """Batch size -> EWA tau for one of the paper's model sizes."""
    return {B: tau for B, (_, tau) in TABLE4[model_size].items()}
