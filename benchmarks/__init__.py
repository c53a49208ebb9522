"""The benchmark suite of ``cqrs``: run it with ``python -m benchmarks`` from the repo root.

Every row times the library beside a raw baseline (the same work done by hand) in the same
process and on the same event loop, and prints µs/op, the overhead and the ratio to the
baseline next to the target of ARCHITECTURE.md §6. See ``benchmarks/README.md``.
"""
