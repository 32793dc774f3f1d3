"""Scones Unlimited vehicle classifier: the model's life, from staged images to a served and updated model.

One command line: `python -m training COMMAND` (training/__main__.py). The model itself: stage_data,
preprocess, model_def, train, evaluate, export and gate. Serving: inference (the one inference path, numpy,
Pillow and onnxruntime only, no torch), serve (the HTTP endpoint), capture and benchmark. On SageMaker:
the `sagemaker` sub-package.
"""
