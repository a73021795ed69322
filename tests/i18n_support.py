"""What the language tests share: the visible text of a page, English words left in a Chinese
page, Chinese in an English one, and requests in a chosen language.

A page's visible text is its text nodes (without <script>, <style>, <code>, <kbd>, <pre>,
<samp>) and the attributes people read: title, placeholder, aria-label, alt, the value of a
button-like <input>, and the confirmation texts the page's script shows (data-confirm). An
element marked with a `lang` other than the page's (the language switch's "简体中文" on an
English page) is written in its own language on purpose and is left out.

In a Chinese page, a word of two or more ASCII letters is untranslated English unless it is a
name kept in both languages (ALLOWED_WORDS) or part of user data: a token (whitespace apart,
outer punctuation stripped) holding a digit or one of . / : _ - @ is data (file names, paths,
URLs, names such as db1, dates, versions).
"""

import re
from html.parser import HTMLParser

from flask import g

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
ZH = {"Accept-Language": "zh-CN"}
EN = {"Accept-Language": "en"}

# Kept in English in both languages (docs/glossary.md): the product, tools, units, codes, and
# "English", the language's name in its own language wherever languages are offered. The tools'
# names may also show in lower case (the stored source kinds); the rest exactly so ("RESTORE" is
# the word to type, "Restore" is an English word).
ALLOWED_WORDS = frozenset("""
    Cairn SQLite PostgreSQL Postgres MySQL MariaDB zstd gzip tar cron S3 API APIs URL URLs JSON SHA UTC
    RESTORE htmx IANA ISO KiB MiB GiB TiB English age
    Webhook Ping healthchecks Slack Mattermost HTTP
""".split())
# Webhook and Ping name kinds of notification channel (docs/glossary.md keeps them in Chinese too);
# healthchecks (healthchecks.io), Slack and Mattermost are products; HTTP names the protocol of a
# receiver's answer ("接收方返回 HTTP 500").
# The API's field and filter names never change; a message about one names it as it is sent.
FIELD_NAMES = frozenset("since until".split())
ALLOWED_IN_LOWER_CASE = frozenset("sqlite postgresql postgres mysql mariadb zstd gzip tar cron json htmx".split())

SKIPPED_ELEMENTS = {"script", "style", "code", "kbd", "pre", "samp", "template"}
VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                 "source", "track", "wbr"}
READ_ATTRIBUTES = {"title", "placeholder", "aria-label", "alt", "data-confirm", "label"}
BUTTON_INPUTS = {"submit", "button", "reset"}
OUTER_PUNCTUATION = "\"'“”‘’«»()[]{}<>.,;:!?…—–·、，。：；！？（）【】《》"
DATA_MARKS = re.compile(r"[0-9./:_\-@\\]")
ASCII_WORD = re.compile(r"[A-Za-z]{2,}")


class VisibleText(HTMLParser):
    """Collects (where, text) for every piece of text a reader sees in a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.texts = []
        self.stack = []  # (tag, hidden) of the open elements
        self.page_lang = None

    @property
    def hidden(self):
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html":
            self.page_lang = attrs.get("lang")
        hidden = self.hidden or tag in SKIPPED_ELEMENTS or (
            "lang" in attrs and tag != "html" and attrs["lang"] != self.page_lang)
        if not hidden:
            self.read_attributes(tag, attrs)
        if tag not in VOID_ELEMENTS:
            self.stack.append((tag, hidden))

    def handle_startendtag(self, tag, attrs):
        if not self.hidden:
            self.read_attributes(tag, dict(attrs))

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth][0] == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        if not self.hidden and data.strip():
            self.texts.append((self.where(), " ".join(data.split())))

    def read_attributes(self, tag, attrs):
        for name, value in attrs.items():
            readable = name in READ_ATTRIBUTES or (
                name == "value" and tag == "input" and (attrs.get("type") or "").lower() in BUTTON_INPUTS)
            if readable and value and value.strip():
                self.texts.append((f"{self.where(tag)}[{name}]", " ".join(value.split())))

    def where(self, tag=None):
        path = [t for t, _ in self.stack[-3:]] + ([tag] if tag else [])
        return ">".join(path) or "(top)"


def forget_the_language_between_requests(app):
    """Make the app's test clients drop Flask-Babel's per-request cache (locale, time zone,
    translations) before each request.

    The tests hold one app context open, so `g` outlives a request (tests/conftest.py's client
    drops the signed-in user for the same reason); a server gives each request a fresh `g`.
    Without this, the language of a test's first request would stick to all its later ones.
    """
    base = app.test_client_class

    class LanguageClient(base):
        def open(self, *args, **kwargs):
            g.pop("_flask_babel", None)
            return super().open(*args, **kwargs)

    app.test_client_class = LanguageClient


def visible_texts(html):
    """[(where, text)] of a page or fragment, and the page's `<html lang>` (None for a fragment)."""
    parser = VisibleText()
    parser.feed(html)
    parser.close()
    return parser.texts, parser.page_lang


def html_lang(html):
    match = re.search(r"<html[^>]*\blang=\"([^\"]*)\"", html)
    return match.group(1) if match else None


def is_data(token):
    """A token that is user data or a value, not a word of the page's language."""
    return bool(DATA_MARKS.search(token.strip(OUTER_PUNCTUATION)))


def english_words(text):
    """The English words in `text` that a Chinese page must not show."""
    found = []
    for token in text.split():
        if is_data(token):
            continue
        found += [word for word in ASCII_WORD.findall(token)
                  if word not in ALLOWED_WORDS | FIELD_NAMES and word.lower() not in ALLOWED_IN_LOWER_CASE]
    return found


def untranslated(html):
    """[(where, text, words)] for each visible text of a Chinese page that holds English words
    (each text once, however often the page repeats it)."""
    texts, _ = visible_texts(html)
    return [(where, text, words) for where, text in dict.fromkeys(texts) if (words := english_words(text))]


def chinese(html):
    """[(where, text)] for each visible text of an English page that holds Chinese characters."""
    texts, _ = visible_texts(html)
    return [(where, text) for where, text in dict.fromkeys(texts) if CJK.search(text)]


def has_cjk(text):
    return bool(CJK.search(text or ""))


def report(problems):
    """One readable block for an assertion message: every page and its offending texts."""
    lines = []
    for page, found in problems.items():
        lines.append(f"{page}:")
        lines += [f"    {item}" for item in found]
    return "\n".join(lines)
