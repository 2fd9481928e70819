"""Evaluation: datasets, oracle masks and baselines, and the scores (needs the ``eval`` extra). Nothing in the
runtime core imports this package."""
