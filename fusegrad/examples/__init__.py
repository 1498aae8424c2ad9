"""Runnable examples: `python -m fusegrad.examples.NAME`."""
