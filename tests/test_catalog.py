"""The Simplified Chinese catalog (translations/zh_CN/LC_MESSAGES/messages.po): complete, current,
compiled, consistent with the code's words and with docs/glossary.md.

`make messages` extracts the words (babel.cfg, the Makefile's keywords) and updates the .po;
`make` compiles it to messages.mo, which the app reads.
"""

import gettext
import io
import re
from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from i18n_support import CJK

ROOT = Path(__file__).resolve().parents[1]
CATALOG_DIR = ROOT / "translations" / "zh_CN" / "LC_MESSAGES"
PO = CATALOG_DIR / "messages.po"
MO = CATALOG_DIR / "messages.mo"
PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]|%%")

# English word (as a regular expression, case-insensitive) -> the Chinese term its translation uses.
GLOSSARY = {
    r"restor(e|es|ed|ing)": "恢复",
    r"verif(y|ies|ied|ying|ication)": "校验",
    r"retention": "保留",
    r"backups?": "备份",
    r"back(s|ed|ing)? up": "备份",
}
NEVER = {"还原": "restore is 恢复, never 还原 (docs/glossary.md)"}
# Kept as they are in both languages.
KEPT = ("Cairn", "SQLite", "PostgreSQL", "MySQL", "MariaDB", "zstd", "gzip", "cron", "API", "URL", "JSON",
        "SHA-256", "RESTORE", "UTC")
HALF_WIDTH_NEXT_TO_CHINESE = re.compile(
    rf"(?:{CJK.pattern}[.,;:?!()])|(?:[,;:?!()]{CJK.pattern})")


@pytest.fixture(scope="module")
def catalog():
    with open(PO, "rb") as f:
        return read_po(f)


def entries(catalog):
    """Every message but the header."""
    return [message for message in catalog if message.id]


def ids(message):
    return message.id if isinstance(message.id, (list, tuple)) else (message.id,)


def strings(message):
    return message.string if isinstance(message.string, (list, tuple)) else (message.string,)


def key(message):
    return (ids(message)[0], message.context)


def show(message):
    return f"{ids(message)[0]!r} -> {strings(message)[0]!r}"


def make_keywords():
    """The extraction keywords of `make messages` (the Makefile's EXTRACT_KEYWORDS)."""
    makefile = (ROOT / "Makefile").read_text()
    line = re.search(r"^EXTRACT_KEYWORDS\s*:=(.*)$", makefile, re.M)
    assert line, "the Makefile has no EXTRACT_KEYWORDS"
    return line.group(1).split()


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """What `make messages` extracts from the code and the templates now."""
    pot = tmp_path_factory.mktemp("pot") / "messages.pot"
    CommandLineInterface().run(["pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), *make_keywords(),
                                "--no-wrap", "-o", str(pot), str(ROOT)])
    with open(pot, "rb") as f:
        return read_po(f)


def test_every_entry_is_translated(catalog):
    missing = [show(m) for m in entries(catalog) if not all(s.strip() for s in strings(m))]
    assert not missing, f"{len(missing)} untranslated entries:\n" + "\n".join(missing)


def test_no_entry_is_fuzzy_or_obsolete(catalog):
    assert not catalog.fuzzy, "the catalog's header is marked fuzzy: pybabel compile would skip it"
    fuzzy = [show(m) for m in entries(catalog) if m.fuzzy]
    obsolete = [show(m) for m in catalog.obsolete.values()]
    assert not fuzzy and not obsolete, f"fuzzy: {fuzzy}\nobsolete: {obsolete}"


def test_placeholders_are_the_same_in_the_translation(catalog):
    problems = [f"{show(message)}: {'; '.join(map(str, errors))}"
                for message, errors in catalog.check() if message.id]
    for message in entries(catalog):
        wanted = sorted(PLACEHOLDER.findall(ids(message)[0]))
        for string in strings(message):
            if string and sorted(PLACEHOLDER.findall(string)) != wanted:
                problems.append(f"{show(message)}: placeholders {sorted(PLACEHOLDER.findall(string))}, "
                                f"the English has {wanted}")
        has_placeholder = any(PLACEHOLDER.search(i) for i in ids(message))
        if has_placeholder and "python-format" not in message.flags:
            problems.append(f"{show(message)}: not marked python-format")
    assert not problems, "\n".join(problems)


def test_the_catalog_covers_every_word_the_code_and_templates_say(catalog, extracted):
    missing = [ids(m)[0] for m in entries(extracted)
               if catalog.get(ids(m)[0], m.context) is None
               or not all(s.strip() for s in strings(catalog.get(ids(m)[0], m.context)))]
    assert not missing, (f"{len(missing)} words of the code are not translated in {PO.relative_to(ROOT)} "
                         "(run `make messages`, then translate):\n" + "\n".join(map(repr, missing)))


def test_the_catalog_holds_nothing_the_code_no_longer_says(catalog, extracted):
    stale = [ids(m)[0] for m in entries(catalog) if extracted.get(ids(m)[0], m.context) is None]
    assert not stale, "entries no code or template uses (run `make messages`):\n" + "\n".join(map(repr, stale))


def test_the_compiled_catalog_is_current(catalog):
    assert MO.exists(), f"{MO.relative_to(ROOT)} is missing: run `make`"
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    want = gettext.GNUTranslations(compiled)._catalog
    with open(MO, "rb") as f:
        have = gettext.GNUTranslations(f)._catalog
    differ = sorted(str(k) for k in set(want) | set(have) if want.get(k) != have.get(k))
    assert not differ, (f"{MO.relative_to(ROOT)} is older than the .po (run `make`); it differs in "
                        f"{len(differ)} entries, e.g. {differ[:5]}")


def test_the_app_reads_the_compiled_catalog(app, catalog):
    from flask_babel import force_locale, gettext as translate

    translated = [m for m in entries(catalog) if isinstance(m.id, str) and m.string and not m.context
                  and not PLACEHOLDER.search(m.id)]
    assert translated, "no translated entry to look up"
    with app.test_request_context("/", headers={"Accept-Language": "zh-CN"}), force_locale("zh_Hans_CN"):
        wrong = [show(m) for m in translated[:50] if translate(m.id) != m.string]
    assert not wrong, "the app does not find these translations:\n" + "\n".join(wrong)


def test_the_glossary_terms_are_used(catalog):
    problems = []
    for message in entries(catalog):
        english = PLACEHOLDER.sub(" ", " ".join(ids(message)))
        for string in strings(message):
            if not string:
                continue
            for word, term in GLOSSARY.items():
                if re.search(rf"\b{word}\b", english, re.I) and term not in string:
                    problems.append(f"{show(message)}: says {word!r} without {term}")
            problems += [f"{show(message)}: {why}" for bad, why in NEVER.items() if bad in string]
            problems += [f"{show(message)}: {name} must stay as it is" for name in KEPT
                         if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", english) and name not in string]
    assert not problems, "\n".join(problems)


def test_chinese_sentences_use_full_width_punctuation(catalog):
    problems = [f"{show(m)}: {found.group()!r}" for m in entries(catalog) for string in strings(m) if string
                for found in [HALF_WIDTH_NEXT_TO_CHINESE.search(PLACEHOLDER.sub("x", string))] if found]
    assert not problems, "use ，。：；？！（） next to Chinese:\n" + "\n".join(problems)
