"""The templates obey the Content-Security-Policy (no inline script, style or event handler, nothing
htmx would have to eval) and write CSRF fields only through the csrf_field macro."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
JINJA = re.compile(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)
EVENT_HANDLER = re.compile(r"^on[a-z]+$")
# hx-on* and hx-vars run their value as JavaScript, as do a js: or javascript: value and an
# hx-trigger event filter ("keyup[key=='Enter']").
HTMX_EVAL = re.compile(r"^(data-)?hx-(on\b|vars$)")
HTMX_TRIGGER = re.compile(r"^(data-)?hx-trigger$")


def without_jinja(source):
    """The markup with Jinja blocks and comments taken out and expressions replaced by a word, so an
    attribute inside `{% if %}…{% endif %}` is still seen as one (line numbers are kept)."""
    def blank(match):
        return ("X" if match.group().startswith("{{") else " ") + "\n" * match.group().count("\n")

    return JINJA.sub(blank, source)


class PolicyChecker(HTMLParser):
    """Collects what the start tags of a template do that the policy or the csrf_field rule forbids."""

    def __init__(self, allow_csrf_input=False):
        super().__init__(convert_charrefs=True)
        self.allow_csrf_input = allow_csrf_input
        self.problems = []

    def handle_starttag(self, tag, attrs):
        names = {name for name, _ in attrs}
        line = self.getpos()[0]
        if tag == "script" and "src" not in names:
            self.problems.append(f"line {line}: inline <script>")
        if tag == "style":
            self.problems.append(f"line {line}: <style> element")
        for name, value in attrs:
            value = (value or "").strip()
            if name == "style":
                self.problems.append(f"line {line}: style= attribute on <{tag}>")
            if EVENT_HANDLER.match(name):
                self.problems.append(f"line {line}: {name}= handler on <{tag}>")
            if HTMX_EVAL.match(name) or (HTMX_TRIGGER.match(name) and "[" in value):
                self.problems.append(f"line {line}: {name} needs eval")
            if value.lower().startswith(("js:", "javascript:")):
                self.problems.append(f"line {line}: {name}={value[:20]!r} is script")
        if tag == "input" and dict(attrs).get("name") == "csrf_token" and not self.allow_csrf_input:
            self.problems.append(f"line {line}: hand-written csrf_token input (use csrf_field())")


def problems(source, allow_csrf_input=False):
    checker = PolicyChecker(allow_csrf_input)
    checker.feed(without_jinja(source))
    checker.close()
    return checker.problems


def template_files():
    return sorted(path for path in TEMPLATES.rglob("*") if path.is_file())


def test_there_are_templates_to_check():
    names = {str(path.relative_to(TEMPLATES)) for path in template_files()}
    assert {"base.html", "_macros.html", "partials/backup_status.html", "settings/index.html"} <= names


@pytest.mark.parametrize("path", template_files(), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_template_obeys_the_policy(path):
    found = problems(path.read_text(encoding="utf-8"), allow_csrf_input=path.name == "_macros.html")
    assert not found, f"{path.relative_to(TEMPLATES)}: " + "; ".join(found)


@pytest.mark.parametrize("snippet", [
    "<script>alert(1)</script>",
    '<script type="module">x()</script>',
    "<style>p { color: red }</style>",
    '<div class="bar" style="width: {{ n }}%"></div>',
    '<tr{% if active %} style="color: red"{% endif %}>',
    '<button onclick="go()">Go</button>',
    '<form {% if x > 1 %}onsubmit="return check()"{% endif %}>',
    '<body onload="init()">',
    '<button hx-on:click="go()">',
    '<button hx-on-click="go()">',
    '<div data-hx-on:htmx:load="go()">',
    '<div hx-get="/x" hx-vars="a: 1">',
    '<div hx-get="/x" hx-vals=\'js:{a: 1}\'>',
    '<input hx-get="/x" hx-trigger="keyup[key==\'Enter\']">',
    '<a href="javascript:go()">',
    '<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">',
], ids=lambda s: s[:40])
def test_the_check_finds_what_the_policy_forbids(snippet):
    assert problems(snippet)


@pytest.mark.parametrize("snippet", [
    '<script src="{{ url_for(\'static\', filename=\'app.js\') }}" defer></script>',
    '<progress class="progress" max="100" value="{{ item.percent }}"></progress>',
    '<body hx-headers=\'{"X-CSRFToken": "{{ csrf_token() }}"}\'>',
    '<div hx-get="/x" hx-trigger="every 1s" hx-swap="outerHTML" data-confirm="Cancel {{ name }}?">',
    '{{ csrf_field() }}',
    '<p>The online style guide says on=off.</p>',
], ids=lambda s: s[:40])
def test_the_check_lets_allowed_markup_through(snippet):
    assert problems(snippet) == []
