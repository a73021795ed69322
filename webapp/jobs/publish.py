"""The publish job: write cairn-config.json to every enabled destination after a change of the
configuration (queued by webapp.services.disaster). It has no status row: a destination it cannot
write to is logged, and the next change writes the document again."""

from ..services.disaster import publish_config


def run_publish():
    """RQ job: write the document now; what it did, for RQ's record of the job."""
    outcome = publish_config()
    written = sorted(name for name, error in outcome.items() if error is None)
    failed = sorted(name for name, error in outcome.items() if error is not None)
    return {"written": written, "failed": failed}
