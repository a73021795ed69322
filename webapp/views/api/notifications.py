"""Notification channels: webhooks, email and pings that hear of events. The secret is never
answered (*** when set); a test sends one notice now, and the deliveries log shows how it went."""

from ... import schemas
from ...backup.messages import N_
from ...services import notifications
from .common import admin_only, body, bp, caller, ok, paged


@bp.route("/notifications", methods=["GET"])
def list_notifications():
    return ok(paged(notifications.all_channels(), schemas.NotificationChannel))


@bp.route("/notifications", methods=["POST"])
@admin_only
def create_notification():
    channel = notifications.create_channel(caller(), body(schemas.NotificationCreate).sent())
    return ok(schemas.dump(schemas.NotificationChannel, channel), N_("notification channel created"), 201)


@bp.route("/notifications/<int:channel_id>", methods=["GET"])
def show_notification(channel_id):
    return ok(schemas.dump(schemas.NotificationChannel, notifications.get_channel(channel_id)))


@bp.route("/notifications/<int:channel_id>", methods=["PUT"])
@admin_only
def update_notification(channel_id):
    channel = notifications.update_channel(caller(), notifications.get_channel(channel_id),
                                           body(schemas.NotificationChange).sent())
    return ok(schemas.dump(schemas.NotificationChannel, channel), N_("notification channel saved"))


@bp.route("/notifications/<int:channel_id>", methods=["DELETE"])
@admin_only
def delete_notification(channel_id):
    notifications.delete_channel(caller(), notifications.get_channel(channel_id))
    return ok(None, N_("notification channel deleted"))


@bp.route("/notifications/<int:channel_id>/test", methods=["POST"])
@admin_only
def test_notification(channel_id):
    delivery = notifications.test_channel(caller(), notifications.get_channel(channel_id))
    return ok(schemas.dump(schemas.Delivery, delivery),
              N_("test notification queued; its delivery shows how it went"), 202)


@bp.route("/notifications/<int:channel_id>/deliveries", methods=["GET"])
def list_deliveries(channel_id):
    return ok(paged(notifications.channel_deliveries(notifications.get_channel(channel_id)), schemas.Delivery))
