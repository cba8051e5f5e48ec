"""Deployment: a plain model with its files (export), the model card (card), ONNX and
``torch.export`` formats (formats), prediction from an exported folder (predict)."""
