"""A client for the vehicle classifier: submit photos and read outcomes, on a deployed stack or the twin.

    python -m client submit photo.jpg [folder ...] [--stack NAME | --port 4590]
    python -m client results [--stack NAME | --port 4590] [--json]
"""
