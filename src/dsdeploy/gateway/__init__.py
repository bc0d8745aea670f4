"""The OpenAI-compatible HTTP front of dsdeploy; it forwards to a private engine."""
