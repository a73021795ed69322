"""What every source kind offers the engine: check, estimate, prepare, dump."""

import os
import re
import urllib.parse

from ..errors import RestoreError, SourceError
from ..messages import N_

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


REDACTED = "***"


def url_without_password(url, mask=None):
    """The connection URL without its password (in the user part or as a `password=`
    parameter), or with `mask` in its place. Everything up to the last '@' counts as the user
    part, so a password with an unencoded '/', '?' or '@' is hidden too."""
    if not url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return re.sub(r":[^:@/]*@", f":{mask or ''}@", url)  # not a URL we know; hide what may be one
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        login = f"{user}:{mask}" if colon and mask else user
        rest = f"{login}@{rest}" if login else rest
    path, qmark, query = rest.partition("?")
    if qmark:
        params = [p for p in query.split("&") if p.split("=", 1)[0].lower() != "password" or mask]
        params = [f"password={mask}" if p.split("=", 1)[0].lower() == "password" else p for p in params]
        rest = path + ("?" + "&".join(params) if params else "")
    return f"{scheme}://{rest}"


def redact_url(url):
    """A connection URL as it may be shown, logged or returned: its password replaced by ***."""
    return url_without_password(url, mask=REDACTED)


def keep_password(new_url, old_url):
    """`new_url` as typed in an edit form or API call, with the stored password kept when the
    new one is left out or still the *** it was shown with (same user, host and port)."""
    if not new_url or not old_url:
        return new_url
    new, old = urllib.parse.urlsplit(new_url), urllib.parse.urlsplit(old_url)
    if new.password not in (None, REDACTED) or old.password is None:
        return new_url
    if (new.username, new.hostname, new.port) != (old.username, old.hostname, old.port):
        if new.password is None:
            return new_url
        raise SourceError(N_("the user, host or port changed: type the password for the new connection"))
    host = new.netloc.rpartition("@")[2]
    user = urllib.parse.quote(urllib.parse.unquote(new.username or ""), safe="")
    password = urllib.parse.quote(urllib.parse.unquote(old.password), safe="")
    return urllib.parse.urlunsplit(new._replace(netloc=f"{user}:{password}@{host}"))


def check_name(name):
    """Source names become archive paths, so they are kept to a safe alphabet."""
    if not name or not NAME_PATTERN.fullmatch(name):
        raise SourceError(
            N_("name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        )
    return name


class Source:
    """One thing to back up. Subclasses set `kind` and implement the three steps."""

    kind = None

    def __init__(self, name, path=None, url=None, include=(), exclude=()):
        self.name = check_name(name)
        self.path = path
        self.url = url
        self.include = list(include or ())
        self.exclude = list(exclude or ())

    def describe(self):
        """What cairn.json records about the source (never a secret)."""
        return {"name": self.name, "kind": self.kind, "path": self.path,
                "include": self.include, "exclude": self.exclude}

    def validate(self):
        """Raise SourceError with a clear message unless the source can be backed up now (cheap)."""
        raise NotImplementedError

    def check(self):
        """validate(), then report what a backup would read: size and file or table count."""
        raise NotImplementedError

    def estimate_size(self):
        """Bytes the dump is expected to read, for the progress bar."""
        raise NotImplementedError

    def prepare(self, staging_dir, reporter):
        """Take what must be taken before streaming starts (a database snapshot); may be a no-op.

        The engine calls it for every source before the first dump, while the size estimate is
        computed on another thread, and removes `staging_dir` afterwards.
        """

    def dump(self, writer, staging_dir, reporter):
        """Add this source's members to the archive; return its summary for the manifest."""
        raise NotImplementedError

    def restorer(self, token, lock_timeout, staging_dir):
        """The object that stages, checks, applies and undoes a restore of this source.

        `staging_dir` is a private folder for scratch files (a server database's dump), removed
        after the restore; folder and SQLite restorers stage beside their targets instead.
        """
        raise NotImplementedError

    # Database kinds: the extension of their archive member (database/<name>.<dump_kind>), and
    # check_dump(path, on_start), which returns what is wrong with a dump file or None, and
    # hands on_start a function that stops it early (verify and restore run it on a thread).
    dump_kind = None
    check_dump = None


def beside(path, label, token):
    """A hidden scratch path next to `path`, on the same file system, so a rename can swap them."""
    parent, base = os.path.split(os.path.normpath(path))
    return os.path.join(parent, f".{base}.cairn-{label}-{token}")


def make_parents(path):
    """Create the missing folders above `path`; return the topmost one created, or None."""
    parent, topmost = os.path.dirname(os.path.normpath(path)), None
    while parent and not os.path.lexists(parent):
        topmost, parent = parent, os.path.dirname(parent)
    if topmost is not None:
        os.makedirs(os.path.dirname(os.path.normpath(path)), exist_ok=True)
    return topmost


def remove_made_parents(path, topmost):
    """Undo make_parents() when nothing was restored there: remove those folders while empty."""
    if topmost is None:
        return
    folder = os.path.dirname(os.path.normpath(path))
    while True:
        try:
            os.rmdir(folder)
        except OSError:
            return  # not empty (or gone): someone else uses it now
        if folder == topmost:
            return
        folder = os.path.dirname(folder)


class Restorer:
    """One source's part of a restore; every step must leave the target whole when it fails."""

    undo_cost = 0  # restorers are applied cheapest-to-undo first (see restore.apply_all)

    def __init__(self, source, token, lock_timeout):
        self.source = source
        self.name = source.name
        self.token = token
        self.lock_timeout = lock_timeout

    def file_sink(self, relative, member):
        raise RestoreError(N_("the archive holds files for %(name)s, which is not a folder source"),
                           name=repr(self.name))

    def database_sink(self, kind, member):
        raise RestoreError(N_("the archive holds a database dump for %(name)s, which is a folder source"),
                           name=repr(self.name))

    def check(self, manifest_members):
        """After staging: is what was staged complete and sound?"""

    def apply(self, undoable=True):
        """Put the staged data in place of the target; with `undoable` false, undo() will not
        be asked for (this is the last source applied)."""

    def undo(self):
        """Put the target back as it was before apply()."""

    def commit(self):
        """The whole restore succeeded: drop what undo() would have needed. Return the paths of
        replaced trees left for the caller to remove (removing them may take long)."""
        return []

    def discard(self):
        """Remove staged data (always called at the end, whatever happened)."""

    def set_aside(self):
        """What this restorer may create or move beside the user's data (a dict with `kind`,
        `source`, `target` and the paths), recorded before anything is; None when it keeps its
        scratch files in the restore's private folder. See restore.recover_set_aside."""
        return None
