"""Batch-size policies from the papers and from practice, one module each.

- ``noise_scale``: the batch follows a multiple of the gradient noise scale
  B_simple measured inside the step (McCandlish et al. 2018).
- ``probe``: branched local-CBS probes; double when the CBS exceeds 2 B
  (Merrill et al. 2025).
- ``wsd_es``: raise the batch to the fitted B_opt of the next target loss, or
  at token counts (Zhou et al. 2026).
- ``fsl``: the late switch point(s) that minimise the functional-scaling-law
  loss under a data budget, as a fixed table (Wang et al. 2026).
- ``seesaw``: double the batch where the LR schedule would halve the LR, and
  multiply the LR by 1/sqrt(2) instead.
Each module defines its config section, its ``build`` and a ``SPEC``;
``config.POLICIES`` registers them and builds any of them (or the fixed
``ScheduledPolicy``) from ``batch.policy``.
"""

from bsjax.batching.policies.common import (
    BuildContext,
    Ladder,
    PolicyBase,
    PolicySpec,
    TablePolicy,
)
from bsjax.batching.policies.config import (
    POLICIES,
    POLICY_NAMES,
    REGISTRY,
    policy_from_config,
    validate_policy_config,
)
from bsjax.batching.policies.fsl import fsl_policy, schedule_from_solution
from bsjax.batching.policies.noise_scale import (
    NoiseScaleEMA,
    NoiseScalePolicy,
    NoiseScaleWarning,
    noise_scale_estimate,
)
from bsjax.batching.policies.probe import (
    ProbePolicy,
    Prober,
    ProberMissingError,
    measured_cbs_factor,
)
from bsjax.batching.policies.seesaw import SeesawPolicy
from bsjax.batching.policies.wsd_es import (
    LossTargetPolicy,
    parse_loss_targets,
    token_stepped_policy,
)

__all__ = [
    "BuildContext",
    "Ladder",
    "LossTargetPolicy",
    "NoiseScaleEMA",
    "NoiseScalePolicy",
    "NoiseScaleWarning",
    "POLICIES",
    "POLICY_NAMES",
    "REGISTRY",
    "PolicyBase",
    "PolicySpec",
    "Prober",
    "ProberMissingError",
    "ProbePolicy",
    "SeesawPolicy",
    "TablePolicy",
    "fsl_policy",
    "measured_cbs_factor",
    "noise_scale_estimate",
    "parse_loss_targets",
    "policy_from_config",
    "schedule_from_solution",
    "token_stepped_policy",
    "validate_policy_config",
]
