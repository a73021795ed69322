"""The reader's language and time zone, and everything turned into words for them at the edge.

Locale: the signed-in user's choice, else the session's (the switch on the sign-in page), else
the best of `Accept-Language` (zh-CN, zh and zh-Hans all mean Simplified Chinese), else
DEFAULT_LOCALE. Time zone: the user's, else DEFAULT_TIMEZONE. The API keeps UTC; pages show the
reader's zone and name it.

Services and the engine hand over `Message`s (template + parameters); `translate` makes them
words here, so one sentence has one catalog entry whoever shows it.
"""

import os

from babel import support
from flask import current_app, g, has_app_context, has_request_context, request, session
from flask_babel import (Babel, Domain, format_datetime, format_decimal, format_number,
                         get_locale, get_timezone, gettext, refresh)
from flask_login import current_user

from .backup.messages import Message, as_message
from .models import TIMEZONES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRANSLATIONS = os.path.join(ROOT, "translations")

# SPEC's locale codes -> Babel's identifiers and the catalog's folder under translations/.
# Babel calls Simplified Chinese zh_Hans_CN; the catalog keeps gettext's usual name, zh_CN.
LOCALES = {"en": "en", "zh-CN": "zh_Hans_CN"}
CATALOGS = {"zh_Hans_CN": "zh_CN"}
LANGUAGE_NAMES = {"en": "English", "zh-CN": "简体中文"}  # each in its own language
TIMEZONE_CHOICES = sorted(TIMEZONES)


def locale_code(value):
    """A SPEC locale code ("en", "zh-CN") for what a user or a browser may send, or None."""
    tag = str(value or "").strip().lower().replace("_", "-")
    if tag == "zh" or tag.startswith(("zh-cn", "zh-hans", "zh-sg")):
        return "zh-CN"
    if tag == "en" or tag.startswith("en-"):
        return "en"
    return None


class Catalog(Domain):
    """The one catalog, found under its gettext name whatever Babel calls the locale."""

    def get_translations(self):
        locale = get_locale()
        if locale is None:
            return support.NullTranslations()
        # A page asks hundreds of times; naming the locale costs more than the lookup. Flask-Babel
        # keeps one Locale object per request, so the answer is kept for that object.
        known = g.get("cairn_translations") if has_app_context() else None
        if known is not None and known[0] is locale:
            return known[1]
        name = CATALOGS.get(str(locale), str(locale))
        if name not in self.cache:
            self.cache[name] = support.Translations.load(TRANSLATIONS, [name], self.domain[0])
        if has_app_context():
            g.cairn_translations = (locale, self.cache[name])
        return self.cache[name]


def init_app(app):
    babel = Babel(app, locale_selector=select_locale, timezone_selector=select_timezone)
    # Babel caches its domain per app; ours finds the catalog under its gettext name.
    babel.domain_instance = Catalog(TRANSLATIONS)
    # Flask-Babel caches the choice on `g`, which outlives a request when an app context was
    # pushed around it (the CLI, tests): every request chooses afresh.
    app.before_request(refresh)
    app.jinja_env.filters.update(FILTERS)
    app.jinja_env.globals.update(translate=translate, sentence=sentence, current_locale=current_locale,
                                 language_names=LANGUAGE_NAMES, timezone_choices=TIMEZONE_CHOICES)


def reader():
    """The signed-in user of this request (a page's session or the API's credential), or None."""
    user = g.get("api_user")
    if user is None and current_user and current_user.is_authenticated:
        user = current_user
    return user


def current_locale():
    """The SPEC code of the language this request is answered in."""
    if not has_request_context():
        return locale_code(current_app.config["DEFAULT_LOCALE"]) or "en"
    user = reader()
    chosen = (user.locale if user is not None else None) or session.get("locale")
    if locale_code(chosen):
        return locale_code(chosen)
    for tag, _quality in request.accept_languages:
        if locale_code(tag):
            return locale_code(tag)
    return locale_code(current_app.config["DEFAULT_LOCALE"]) or "en"


def select_locale():
    return LOCALES[current_locale()]


def select_timezone():
    user = reader() if has_request_context() else None
    zone = (user.timezone if user is not None else None) or current_app.config["DEFAULT_TIMEZONE"]
    return zone if zone in TIMEZONES else "UTC"


def translate(message):
    """A Message, an error carrying one, or plain text, in the reader's language."""
    message = as_message(message)
    if message is None:
        return ""
    return message.render(gettext)


def sentence(text):
    """A message as a page's sentence: "wrong password" becomes "Wrong password.". Chinese has
    no capitals, and its translations carry their own full stop."""
    if current_locale() != "en":
        return text
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    if text and text[-1].isascii() and text[-1].isalnum():
        text += "."
    return text


def stored_message(value, english=None):
    """A message as a row or a result keeps it (a `Message.as_record()`, a Message, an error or
    plain text) in the reader's words; `english` when there is none."""
    if isinstance(value, dict):
        value = Message.from_record(value)
    value = value or english
    return translate(value) if value else ""


def stored_messages(records, english=()):
    """A list kept in English and as records (verify problems, warnings, retention reasons), in
    the reader's words."""
    return [stored_message(one) for one in (records or english or [])]


def when(value):
    """A moment in the reader's time zone, formatted for their language, with the zone named."""
    if value is None:
        return "—"
    return f"{format_datetime(value, 'medium')} {get_timezone().zone}"


def filesize(value):
    """Bytes as a short size in binary units, the number formatted for the reader."""
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{format_number(int(size))} {unit}" if unit == "B" else f"{format_decimal(size, '#,##0.0')} {unit}"
        size /= 1024


def duration(seconds):
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return gettext("%(seconds)d s", seconds=seconds)
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return gettext("%(minutes)d min %(seconds)d s", minutes=minutes, seconds=seconds)
    hours, minutes = divmod(minutes, 60)
    return gettext("%(hours)d h %(minutes)d min", hours=hours, minutes=minutes)


FILTERS = {"when": when, "messages": stored_messages, "filesize": filesize, "duration": duration, "number": format_number,
           "translate": translate}
