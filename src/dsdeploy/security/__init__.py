"""Who may use the gateway and what is kept about it: API keys, limits, the network's
allowlists, the audit chain, weights encrypted at rest, model files checked before use."""
