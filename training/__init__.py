"""Scones Unlimited vehicle classifier: model, preprocessing, training, export and evaluation.

Serving needs only `training.inference` (numpy, Pillow, onnxruntime); torch is imported by
the training, export and model-definition modules alone.
"""
