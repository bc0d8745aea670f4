"""dsdeploy: DeepSeek on your own hardware, as a safe OpenAI-compatible service."""

__version__ = "0.1.0"
