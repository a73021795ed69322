"""The shapes of the encryption key routes. A record never holds the identity (the secret key):
only the answer to generating a key pair does, once."""

from pydantic import ConfigDict, Field

from ..services.encryption import MAX_NAME
from .fields import Flag, Id, text
from .requests import Body, ClosedBody
from .shapes import Shape, Time

KeyName = text(1, MAX_NAME, strip=True)
Recipient = text(max_length=128, strip=True)


class EncryptionKeyCreate(ClosedBody):
    """A public key to add (`recipient`), or `generate: true` for a new key pair."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "offsite", "generate": True, "keep_identity": True},
        {"name": "vault", "recipient": "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}]})
    name: KeyName
    recipient: Recipient | None = Field(None, description="an age X25519 public key (age1…) whose identity "
                                                          "Cairn never sees")
    generate: Flag = Field(False, description="make a key pair; the identity is answered once")
    keep_identity: Flag = Field(False, description="with generate: keep the identity (a file of mode 0600 under "
                                                   "DATA_DIR) so that verify and restore run unattended")


class EncryptionKey(Shape):
    """An age recipient that encrypted backups are encrypted to."""

    id: Id
    name: str = Field(max_length=MAX_NAME)
    recipient: str = Field(pattern="^age1[0-9a-z]+$", description="the public key")
    has_identity: bool = Field(description="Cairn keeps the identity, so verify and restore need no key given")
    created_at: Time


class EncryptionKeyCreated(EncryptionKey):
    """A new key; for a generated one, its identity, shown this once."""

    identity: str | None = Field(None, description="the secret key (AGE-SECRET-KEY-1…), answered only here: "
                                                   "without it (or a copy Cairn keeps) these backups cannot be "
                                                   "restored")


class EncryptionSettings(Body):
    """Whether every backup is encrypted."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"encrypt_all": True}]})
    encrypt_all: Flag = Field(description="encrypt every backup (manual, scheduled and safety backups) to every key")


class EncryptionSettingsShown(Shape):
    """Whether every backup is encrypted."""

    encrypt_all: bool


REQUESTS = (EncryptionKeyCreate, EncryptionSettings)
RESPONSES = (EncryptionKey, EncryptionKeyCreated, EncryptionSettingsShown)
