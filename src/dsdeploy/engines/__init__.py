"""Inference engines dsdeploy runs as child processes."""
