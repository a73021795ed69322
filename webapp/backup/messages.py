"""Sentences for people, kept as an English template and its parameters until the edge.

The engine and the services never decide the language a person reads. They raise or record a
`Message`: the template is the catalog's key (marked with `N_` so `pybabel extract` finds it),
the parameters fill it. Whoever shows it (a page, the API envelope, the CLI) translates the
template for its reader and fills it then. `str(message)` is the English sentence, for logs.
"""


def N_(template):
    """Mark a template for the catalog without translating it here."""
    return template


class Message:
    """A template such as "The folder %(path)s does not exist" and the values it names.

    A parameter may itself be a Message (a tool's failure inside "The dump failed: %(reason)s");
    it is translated with the sentence around it.
    """

    __slots__ = ("template", "params")

    def __init__(self, template, **params):
        self.template = str(template)
        self.params = params

    def render(self, translate_template):
        """The sentence, with `translate_template` applied to this template and to nested ones."""
        text = translate_template(self.template)
        if not self.params:
            return text
        values = {name: value.render(translate_template) if isinstance(value, Message) else value
                  for name, value in self.params.items()}
        try:
            return text % values
        except (KeyError, ValueError, TypeError):  # a translation that lost a parameter
            return self.template % values

    def __str__(self):
        return self.render(lambda template: template)

    def __repr__(self):
        return f"Message({self.template!r}, **{self.params!r})"

    def __eq__(self, other):
        return isinstance(other, Message) and (self.template, self.params) == (other.template, other.params)

    def __hash__(self):
        return hash(self.template)

    def as_record(self):
        """A JSON-able form, for a status row or an audit event."""
        return {"template": self.template,
                "params": {name: value.as_record() if isinstance(value, Message) else plain(value)
                           for name, value in self.params.items()}}

    @classmethod
    def from_record(cls, record):
        if not isinstance(record, dict) or "template" not in record:
            return None
        params = {name: cls.from_record(value) if isinstance(value, dict) else value
                  for name, value in (record.get("params") or {}).items()}
        return cls(record["template"], **params)


def plain(value):
    """A parameter as JSON can hold it."""
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


# How joined() links two parts: clauses "a; b", or the items of a list "a, b".
CLAUSES = N_("%(first)s; %(rest)s")
LIST = N_("%(first)s, %(rest)s")


def joined(parts, separator=CLAUSES):
    """Several parts (Messages, errors or text) as one Message, "first; second; third", each
    translated where it is shown; None for none."""
    messages = [as_message(part) for part in parts if part is not None]
    if not messages:
        return None
    message = messages[-1]
    for part in reversed(messages[:-1]):
        message = Message(separator, first=part, rest=message)
    return message


def texts_and_records(parts):
    """Sentences (Messages or text) as a row's JSON keeps them: the English texts, and the records
    a page translates them from (Message.as_record())."""
    messages = [as_message(part) for part in parts]
    return [str(message) for message in messages], [message.as_record() for message in messages]


def as_message(value):
    """A Message from a Message, an exception that carries one, or plain text."""
    if isinstance(value, Message):
        return value
    carried = getattr(value, "message", None)
    if isinstance(carried, Message):
        return carried
    return Message(str(value)) if value is not None else None
