"""``dsdeploy bench``: streamed load against OpenAI-compatible servers, measured against the
memory-bandwidth ceiling of the machine it runs on."""
