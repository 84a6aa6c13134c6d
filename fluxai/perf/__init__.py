"""Performance: benchmarks, FLOP counts, step caching, compilation, quantization, offload.

Every shortcut here is opt-in; the default pipeline stays exact. Modules are imported on use so
that optional packages (torchao, gguf, bitsandbytes) are only needed by the feature that wants
them.
"""
