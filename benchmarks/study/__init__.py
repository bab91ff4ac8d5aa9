"""The compression study, second round (issue 12): data + a runner + a report.

- :mod:`benchmarks.study.presets`: tasks (data, model, optimiser) and protocols (epochs, ranks,
  seeds) of the ``quick`` and ``cpu`` presets;
- :mod:`benchmarks.study.arms`: the declarative table of arms (what each run is);
- :mod:`benchmarks.study.runner`: executes the table, resumable, one CSV row per finished arm;
- :mod:`benchmarks.study.report`: CSV -> markdown tables, Pareto plots, Welch tests, verdicts;
- :mod:`benchmarks.study.probes`: seconds per epoch and learning curves that size the presets.

``python -m benchmarks.study --preset quick --out DIR [--resume]``; see ``README.md`` here.
"""
