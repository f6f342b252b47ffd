"""Sweeps: ``plan`` (the grid and its trials), ``store`` (SQLite: one row per trial),
``executors`` (a local process pool or Ray tasks) and ``driver`` (runs what still needs running).
"""
