"""``dsdeploy finetune``: LoRA on the user's own chat data, from a stored model to a stored,
served adapter (data checks, training, export to GGUF, storage, search)."""
