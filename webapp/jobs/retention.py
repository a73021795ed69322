"""The retention job: remove what the retention policies remove now."""

from ..backup.messages import Message, N_
from ..errors import ServiceError
from ..models import Status
from ..services.retention import apply_retention, describe_result, scopes_for
from .tracking import OperationTracker, requester


def run_retention(operation_id, attempt):
    """RQ job: apply one schedule's policy, or (no schedule) every policy."""
    tracker = OperationTracker(operation_id, attempt)
    operation = tracker.start()
    if operation is None:
        return "skipped: cancelled before it started"
    try:
        with tracker.heartbeat():
            result = apply_retention(requester(operation), scopes_for(operation.params.get("schedule_id")),
                                     progress=tracker.progress, should_cancel=tracker.should_cancel)
    except ServiceError as e:  # the schedule was deleted while the run was queued
        tracker.finish(Status.FAILED, e)
        return "failed"
    summary = describe_result(result)
    if tracker.should_cancel():
        tracker.finish(Status.CANCELLED, Message(N_("cancelled on request; %(summary)s"), summary=summary), result)
        return "cancelled"
    # The summary in English for the API, and as a record a page translates.
    tracker.complete(dict(result, summary=str(summary), summary_message=summary.as_record()))
    return "completed"
