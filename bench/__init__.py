"""Benchmarks of larkbot side by side with the official SDK's bot pattern.

``python -m bench`` (or ``make bench``) runs every scenario against the local Lark
stand-in, prints one table, and writes ``bench/results/latest.json`` and ``latest.png``.
"""
