"""Benchmarks: `make bench` (quick tier) or `python -m benchmarks --tier full`.

Every entry compares against a peer measured in the same process or the same run and rewrites
its own section of benchmarks/RESULTS.md (see benchmarks/results.py).
"""
