"""Readers of the formats the original DSD models were released in.

Install with ``pip install dsd-zoo[convert]`` (the Caffe reader needs ``protobuf``).

* :mod:`dsd_zoo.convert.caffe` -- binary ``.caffemodel`` files (``NetParameter`` protobuf, new
  and legacy V1/V0 layouts).
* :mod:`dsd_zoo.convert.torch7` -- Lua Torch7 binary serialisation (``.t7``); numpy only.
* :mod:`dsd_zoo.convert.deep_compression` -- the Deep Compression ``.net`` format
  (pruned + weight-shared SqueezeNet); numpy only.

On top of the readers, :mod:`dsd_zoo.convert.mapping` maps a parsed original onto its
dsd-zoo architecture (:mod:`~dsd_zoo.convert.caffe_mapping`, :mod:`~dsd_zoo.convert.torch7_mapping`,
:mod:`~dsd_zoo.convert.pth_mapping`, sharing
:mod:`~dsd_zoo.convert.tensors`) and writes byte-reproducible safetensors files with their
provenance; ``python -m dsd_zoo.convert SRC --model NAME -o OUT.safetensors`` is its CLI.

Every reader treats its input as hostile: sizes and counts are checked against the bytes
that are really there before anything is allocated, nothing is executed or unpickled, and
every malformed input raises :class:`dsd_zoo.errors.FormatError` naming the file and the
place in it. Importing this package imports none of the readers (and so not ``protobuf``).
"""
