"""What a model is, independent of how it is stored or run: the shared vocabulary."""
