"""RQ entry points, one module per operation kind, and the reconciler. Jobs write the status rows
the pages read; services queue them by dotted path (webapp.runs)."""
