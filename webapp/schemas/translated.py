"""Answers in the caller's language: sentences a row or a service's dict keeps in English, beside
a record of them (Message.as_record(): models.error_columns, the audit trail's detail_message, a
retention reason), are given translated; codes and field names never change."""

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..i18n import stored_message


class Translated(BaseModel):
    """A shape (read from an ORM row's attributes or a dict) whose TRANSLATED fields, text or
    lists of text, are answered from the hidden field each names, which reads the record(s)."""

    model_config = ConfigDict(from_attributes=True)
    TRANSLATED: ClassVar[dict] = {}

    @model_validator(mode="after")
    def in_callers_language(self):
        for field, record in self.TRANSLATED.items():
            english = getattr(self, field)
            if field in self.model_fields_set and english:
                setattr(self, field, in_words(english, getattr(self, record)))
        return self


def in_words(english, record):
    """A text (or a list of texts) from its record(s), in the caller's language; the English
    where there is no record."""
    if isinstance(english, list):
        records = record if isinstance(record, list) and len(record) == len(english) else [None] * len(english)
        return [stored_message(one, text) for text, one in zip(english, records)]
    return stored_message(record, english)


def record_of():
    """A hidden field: the record a Translated shape translates from, never in an answer."""
    return Field(None, exclude=True)
