"""Critical batch size: steps-to-target fits, CBS, scaling laws, eval schedule, sweep reports.

Modules (import them directly; this package imports nothing, so the training
loop can use ``bsjax.train.eval_schedule`` without pulling in scipy):

- ``fits``: Y(B) = a + b / B^alpha in log space and the critical batch size B*.
- ``tradeoff``: the steps-examples hyperbola (McCandlish et al. 2018), B_crit.
- ``wsd``: the three-stage E(S) curve under WSD (Zhou et al. 2026; secondary reading).
- ``scaling``: B* = c * N^beta (or D) with forecasts and bootstrap intervals.
- ``eval_schedule``: the hybrid evaluation schedule and steps to target.
- ``results``: reading a sweep folder, best run per batch size.
- ``analysis``: all fits of a sweep; ``report``: report.md, results.csv, plots.
- ``cli``: ``fit_cbs_main`` and ``analyze_main`` for the ``bsjax`` command.
"""
