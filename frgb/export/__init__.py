"""Export targets: the fitted model as an ONNX graph that keeps the fr_regressor_v2 contract."""
