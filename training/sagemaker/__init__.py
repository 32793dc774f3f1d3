"""The classifier on SageMaker: training jobs, the endpoint (deploy, canary updates, rollback, teardown), its
container's handler and Model Monitor. One command line: `python -m training sagemaker COMMAND` (cli.py).

The SageMaker SDK is imported only by the command that runs it.
"""
