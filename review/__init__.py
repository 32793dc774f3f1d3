"""The review page: people decide the photos the model is unsure of, and their decisions become ground truth."""
