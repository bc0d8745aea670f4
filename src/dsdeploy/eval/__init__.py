"""``dsdeploy eval``: what quantization costs in quality, measured on this machine."""
