"""Benchmarks (`make bench`): numbers beside a baseline measured in the same run, never asserted."""
