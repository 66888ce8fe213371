"""Small writers of the original model formats, used by the tests to build inputs.

* :mod:`.caffe_writer` -- ``.caffemodel`` (new and legacy V1/V0 layouts), protobuf wire
  format encoded by hand so that it is independent of the reader's schema;
* :mod:`.t7_writer` -- Torch7 binary serialisation (tables, nn modules, tensors and storages
  with shared references and cycles, tds containers, functions);
* :mod:`.net_writer` -- the Deep Compression ``.net`` format.
"""
