"""Destinations: where copies of archives are kept. The secret key is never answered (always ***).
A scan records the archives a destination holds; adopt-config takes over its cairn-config.json."""

from ... import schemas
from ...backup.messages import Message, N_
from ...schemas.disaster import AdoptedConfig, ScanResult
from ...services import adoption, destinations, disaster
from .common import admin_only, body, bp, caller, ok, paged


@bp.route("/destinations", methods=["GET"])
def list_destinations():
    return ok(paged(destinations.all_destinations(), schemas.Destination))


@bp.route("/destinations", methods=["POST"])
@admin_only
def create_destination():
    destination = destinations.create_destination(caller(), body(schemas.DestinationCreate).sent())
    return ok(schemas.dump(schemas.Destination, destination), N_("destination created"), 201)


@bp.route("/destinations/<int:destination_id>", methods=["GET"])
def show_destination(destination_id):
    return ok(schemas.dump(schemas.Destination, destinations.get_destination(destination_id)))


@bp.route("/destinations/<int:destination_id>", methods=["PUT"])
@admin_only
def update_destination(destination_id):
    destination = destinations.update_destination(caller(), destinations.get_destination(destination_id),
                                                  body(schemas.DestinationChange).sent())
    return ok(schemas.dump(schemas.Destination, destination), N_("destination saved"))


@bp.route("/destinations/<int:destination_id>", methods=["DELETE"])
@admin_only
def delete_destination(destination_id):
    destinations.delete_destination(caller(), destinations.get_destination(destination_id))
    return ok(None, N_("destination deleted"))


@bp.route("/destinations/<int:destination_id>/test", methods=["POST"])
@admin_only
def test_destination(destination_id):
    result = destinations.check_destination(caller(), destinations.get_destination(destination_id))
    if result["ok"]:
        message = N_("destination is ready: a test object was written, read back and deleted")
    else:  # what failed, in the caller's words
        message = Message.from_record(result["error_message"]) or result["error"]
    return ok(schemas.dump(schemas.DestinationTest, result), message)


@bp.route("/destinations/<int:destination_id>/scan", methods=["POST"])
@admin_only
def scan_destination(destination_id):
    result = disaster.scan(caller(), destinations.get_destination(destination_id))
    message = Message(N_("%(found)s archives found: %(recorded)s recorded now, %(known)s known already"),
                      found=result["found"], recorded=result["recorded"], known=result["known"])
    return ok(schemas.dump(ScanResult, result), message)


@bp.route("/destinations/<int:destination_id>/adopt-config", methods=["POST"])
@admin_only
def adopt_config(destination_id):
    result = adoption.adopt_config(caller(), destinations.get_destination(destination_id))
    message = Message(N_("configuration taken over: %(sources)s sources and %(schedules)s schedules added"),
                      sources=len(result["sources"]), schedules=len(result["schedules"]))
    return ok(schemas.dump(AdoptedConfig, result), message)
