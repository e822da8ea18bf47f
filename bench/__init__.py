"""Benchmarks that print ratios against peers measured in the same run on the same server.

Numbers are printed and written to ``bench/results/``; they are never asserted in tests.
"""
