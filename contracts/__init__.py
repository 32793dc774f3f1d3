"""What several packages share, in one home: the contracts between the stack and the code around it.

- `contracts.stack`: where the stack is: a deployed stack's outputs or the local twin's, as a `Target`.
- `contracts.results`: the results table's record, one typed definition, and how to read it.
- `contracts.labels`: the model's class names in its output order, and the reviewers' extra label.
- `contracts.times`: ISO-8601 timestamps, as the records and SageMaker's data capture carry them.

The command-line packages (client, review, local, monitoring) import from here; nothing here imports them.
"""
