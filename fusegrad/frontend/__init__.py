"""The user-facing layer: Tensor and the functions that make and combine tensors."""
