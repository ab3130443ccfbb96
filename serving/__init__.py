"""HTTP model server: the registry's champion on onnxruntime, features from the online snapshot."""
