"""Clients of OpenAI-compatible servers, shared by bench and eval."""
