"""A small stand-in for llama-server, run as a real process by ``tests.stub_engine``.

It answers the endpoints the gateway uses in llama-server's shapes, with deterministic text
("tok0 tok1 …", one token per whitespace word), and can be told on its command line to load
slowly, decode slowly, die or hang, so tests of supervision and of the gateway run in
seconds without a model. It imports nothing from dsdeploy: it runs with the engine's
allowlisted environment, as any engine does.
"""
