"""The label set: the model's class names in the order of its outputs, and the label only a person gives.

The template's ClassNames parameter passes the class names to the stack's functions, which keep their own copies
(each is a deploy unit of its own); tests/unit/contracts/test_label_set.py holds them equal to these.
"""

BICYCLE = "bicycle"
MOTORCYCLE = "motorcycle"
CLASS_NAMES = (BICYCLE, MOTORCYCLE)  # the model's output order
UNUSABLE = "unusable"  # a reviewer's answer for a photo that shows no vehicle to route: the image is rejected
