"""Benchmarks: they print figures, nothing in the test suite asserts a time."""
