"""The serving runtime a bundle ships: ``oemkit serve`` (docs/SERVE.md).

An Open Inference Protocol v2 server (KServe v2 / Triton HTTP, with the binary tensor
data and classification extensions) for the bundle's ONNX model, on Starlette and
uvicorn; Prometheus metrics; several worker processes, each with its own onnxruntime
session and a dynamic batcher; the bundle's license policy enforced at start, every
``check_interval_s`` and on SIGHUP.

Modules: :mod:`.tensors` (the wire format, pure), :mod:`.model` (the session and its
checks), :mod:`.batcher` (dynamic batching), :mod:`.metrics`, :mod:`.runtime` (one
worker's state and its license checks), :mod:`.app` (the HTTP routes), :mod:`.target`
(prefix or bundle file), :mod:`.server` (socket, workers, signals), :mod:`.logs`. The
license policy itself is pure data in :mod:`oemkit.models.serving`. Nothing here is
imported by ``oemkit --help`` or by the license API.
"""
