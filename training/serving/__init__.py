"""The model served: the HTTP endpoint that speaks SageMaker's contract (endpoint), its data capture in
SageMaker's format (capture), and how fast each serving path classifies (benchmark).

The inference itself is training.inference, which evaluation, export and the SageMaker container share.
"""
