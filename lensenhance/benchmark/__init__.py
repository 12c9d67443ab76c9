"""Benchmarks: commands that print figures and write JSON (see DESIGN.md)."""
