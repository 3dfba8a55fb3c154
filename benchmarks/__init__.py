"""The benchmark suite: the product against bare Temporal, in one run (``python -m benchmarks``; docs/benchmarks.md).

One module per benchmark (listed in :mod:`benchmarks.suite`), the bare Temporal side in :mod:`benchmarks.bare`
and its worker process in :mod:`benchmarks.bare_worker`, the shared harness in :mod:`benchmarks.harness`.
"""
