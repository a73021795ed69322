"""The shapes of a destination's scan and of taking over the configuration it keeps
(cairn-config.json): what was found or added, and what was left out and why."""

from typing import Any, ClassVar, Literal

from pydantic import Field

from .fields import Id
from .shapes import Count, Shape
from .translated import Translated, record_of


class LeftOut(Translated):
    """Something a scan or a take-over left out, and why (in the caller's language)."""

    TRANSLATED: ClassVar[dict] = {"error": "error_message"}
    key: str = Field(None, description="the object's key under the destination's prefix")
    what: Literal["source", "schedule", "retention", "encryption_key", "encryption", "notification_channel"] = Field(None, description="what was not taken over")
    name: str = Field(None, description="the name of the source or schedule")
    error: str
    error_message: Any = record_of()


class ScanResult(Shape):
    """What a scan found at a destination, and the configuration kept there."""

    WHEN: ClassVar[str] = (
        "Each object named like a Cairn archive (backup_<trigger>_<YYYYmmdd_HHMMSS>_<suffix>.tar.zst, .tar.gz or "
        ".tar) that no backup here has the name of is fetched, read whole and checked (manifest, every member, "
        "SHA-256), then recorded as a completed backup that is not local (local false) with a verified copy at "
        "the destination. Other objects are left alone, and scanning again records nothing new. The answer "
        "also carries the destination's cairn-config.json, to take over with adopt-config. 503 when the "
        "destination cannot be listed.")

    found: Count = Field(description="Cairn archives at the destination (by file name)")
    recorded: Count = Field(description="of those, recorded now as backups that are not local, each with a "
                                        "verified copy at the destination")
    known: Count = Field(description="of those, backups known here already by name")
    backups: list[Id] = Field(description="the ids of the backups recorded now")
    problems: list[LeftOut]
    config: dict[str, Any] | None = Field(description="the destination's cairn-config.json (format, format_version, "
                                                      "written_at, host, sources with connection URLs without "
                                                      "passwords, schedules, retention, destinations without "
                                                      "secret keys); null when it keeps none")


class NamedSource(Shape):
    """A source, by id and name."""

    id: Id
    name: str


class AdoptedConfig(Shape):
    """What taking over a destination's configuration added, and what is left to do."""

    WHEN: ClassVar[str] = (
        "Reads the destination's cairn-config.json, adds its sources and schedules that do not exist here yet "
        "(by name; those that do are left as they are), its encryption keys (public keys only), its notification "
        "channels (webhooks without their signing secret: needs_secret) and sets its "
        "retention defaults. Database sources come "
        "without their password (needs_password): change each with its URL and password. 404 when the "
        "destination keeps no configuration; 503 when it cannot be read.")

    sources: list[str] = Field(description="sources added")
    schedules: list[str] = Field(description="schedules added")
    existing_sources: list[str] = Field(description="sources that exist here already, left as they are")
    existing_schedules: list[str] = Field(description="schedules that exist here already, left as they are")
    needs_password: list[NamedSource] = Field(description="database sources added without their password: change "
                                                          "each (PUT /sources/{id}) with its URL and password")
    missing_paths: list[str] = Field(description="folder and SQLite sources whose path is not on this machine "
                                                 "yet (restoring a backup creates it)")
    retention: dict[str, Any] | None = Field(description="the retention defaults as set now")
    encryption_keys: list[str] = Field(description="encryption keys added, as public keys only: restoring the "
                                                   "backups encrypted to them needs their identities")
    existing_encryption_keys: list[str] = Field(description="encryption keys that exist here already")
    notification_channels: list[str] = Field(description="notification channels added")
    existing_notification_channels: list[str] = Field(description="notification channels that exist here already")
    needs_secret: list[str] = Field(description="webhooks added without their signing secret: change each "
                                                "(PUT /notifications/{id}) with its secret")
    problems: list[LeftOut]
