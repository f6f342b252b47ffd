"""Experiments: the demo, sweeps (executors, result store), Monte-Carlo studies, benchmarks."""
