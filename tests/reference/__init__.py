"""Plain-Python reference implementations of every native function.

Tests check the compiled core against these on random inputs; benchmarks use them as the
baseline. They favour obviousness over speed.
"""
