"""A stand-in for vLLM's OpenAI server, for tests on machines without an NVIDIA GPU: a real
process on the Unix socket given by ``--uds`` that takes ``vllm serve``'s command line and
answers in vLLM's HTTP shapes (health, models, chat and text completions plain and
streamed, Prometheus metrics under vLLM's names, its error bodies). It records the command
line and environment it was started with, so tests can compare them with the plan."""
