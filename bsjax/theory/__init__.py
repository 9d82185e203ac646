"""The theory lab: linear-regression SGD and functional-scaling-law models of batch-size schedules.

Modules (the compute modules import no plotting or I/O library):
  schedules    piecewise-constant (steps, lr, batch) schedules; intrinsic time
  linreg       exact expected risk of mini-batch SGD (+ iterate averaging) by the moment recursion
  linreg_mc    Monte Carlo SGD on sampled Gaussian data, the check on ``linreg``
  cbs_scaling  critical batch size against data size, against Zhang et al. Corollary 6
  fsl          the functional scaling law (docs/science.md section 4), matched to linear regression
  fsl_check    FSL against the exact risk along training
  optimal      FSL-optimal batch schedules under a data budget; switch points between sizes
  catchup      loss gap after a small-to-large switch; catch-up time
  plots        PNG figures (matplotlib); cli: ``bsjax theory ...``
"""
