"""Choosing how to run a model: the pure memory estimate and the plan built on it."""
