"""ONNX export of dsd-zoo models, checked against PyTorch, and ONNX Runtime sessions of the exported graphs.

``python -m dsd_zoo.export NAME -o FILE.onnx`` writes a model as an ONNX graph with a dynamic
batch dimension; ``python -m dsd_zoo.verify`` runs the same export (cached, keyed by the weight
file's sha256 and the architecture) to evaluate through ONNX Runtime on a CPU. Both go through
:func:`dsd_zoo.export.onnx_export.export_checked`: one export, one check against PyTorch on the
fingerprint probe (:mod:`dsd_zoo.fingerprint`). :class:`~dsd_zoo.export.onnx_export.OnnxModule`
runs an exported file like the PyTorch model.

Importing this package is cheap; torch, ``onnx`` and ``onnxruntime`` are imported by
:mod:`~dsd_zoo.export.onnx_export` (torch on import, the others when a model is exported or run).
"""
