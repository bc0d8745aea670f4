"""Running engines: the pool that owns them and loads models on demand."""
