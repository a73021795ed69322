"""Directory sources, streamed file by file into the archive (no outside tool).

Include and exclude are glob lists. A pattern with a '/' matches the path relative to the
source root; one without matches the file or folder name at any depth. An excluded folder is
skipped whole. Symlinks, sockets, FIFOs and devices are not archived; they are listed as skipped.
"""

import errno
import fnmatch
import os
import re
import shutil
import stat

from ..archive import fsync_dir
from ..errors import DumpError, RestoreError, SourceError, error_text
from ..incremental import file_sha256, reference, same_attributes, same_metadata, stat_fields
from ..messages import Message, N_
from .base import Restorer, Source, beside, make_parents, remove_made_parents
from .read_ahead import DescriptorReader, InLine, ReadAhead, open_file
from .staging import BackgroundSync, StagedFile, set_owner_mode_times

MAX_SKIPPED_LISTED = 100


class GlobSet:
    """Glob patterns compiled once into two regular expressions: relative paths and names."""

    def __init__(self, patterns):
        by_path = [p.strip("/") for p in patterns if "/" in p]
        by_name = [p for p in patterns if "/" not in p]
        self._path = self._compile(by_path)
        self._name = self._compile(by_name)
        self.empty = not patterns

    @staticmethod
    def _compile(patterns):
        return re.compile("|".join(fnmatch.translate(p) for p in patterns)).match if patterns else None

    def matches(self, rel):
        if self._name is not None and self._name(rel.rsplit("/", 1)[-1]):
            return True
        return self._path is not None and self._path(rel) is not None


class FilesSource(Source):
    kind = "files"
    previous = None  # {relative path: manifest entry} of the parent backup, for an incremental one

    def __init__(self, name, path=None, url=None, include=(), exclude=(), verify_contents=False):
        super().__init__(name, path, url, include, exclude)
        self.verify_contents = verify_contents  # compare contents, not only size, times and inode

    def restorer(self, token, lock_timeout, staging_dir):
        return FolderRestorer(self, token, lock_timeout)

    def validate(self):
        path = self.path
        if not path:
            raise SourceError(N_("a folder source needs the path of its folder"))
        if not os.path.isabs(path):
            raise SourceError(N_("%(path)s: use an absolute path"), path=path)
        if not os.path.exists(path):
            raise SourceError(N_("%(path)s: no such folder"), path=path)
        if not os.path.isdir(path):
            raise SourceError(N_("%(path)s: not a folder"), path=path)
        if not os.access(path, os.R_OK | os.X_OK):
            raise SourceError(N_("%(path)s: folder not readable by the Cairn worker"), path=path)

    def check(self):
        self.validate()
        size = files = 0
        for rel, st, is_dir in self.walk():
            if not is_dir:
                size += st.st_size
                files += 1
        return {"size": size, "file_count": files}

    def estimate_size(self):
        return sum(st.st_size for _, st, is_dir in self.walk() if not is_dir)

    def walk(self, skipped=None, stat_files=True):
        """Yield (relative path, stat, is_dir) in sorted order, folders before their contents.

        With include patterns, a folder is yielded only when something inside it is. With
        `stat_files` false, regular files come with stat None: the dump opens and fstats each
        file anyway, so a second lstat per file would be wasted.
        """
        filters = GlobSet(self.include), GlobSet(self.exclude)
        yield from self._walk_dir(self.path, "", [], skipped, stat_files, filters)

    def _walk_dir(self, abspath, rel, pending_dirs, skipped, stat_files, filters):
        try:
            entries = sorted(os.scandir(abspath), key=lambda e: e.name)
        except FileNotFoundError:
            if rel:
                return  # a subfolder deleted while the backup ran
            raise DumpError(N_("cannot list %(path)s: no such folder"), path=abspath) from None
        except OSError as e:
            raise DumpError(N_("cannot list %(path)s: %(error)s"), path=abspath, error=e.strerror) from None
        include, exclude = filters
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            if not exclude.empty and exclude.matches(child):
                continue
            try:
                # d_type answers these without a system call on most file systems.
                is_dir = entry.is_dir(follow_symlinks=False)
                is_file = not is_dir and entry.is_file(follow_symlinks=False)
                st = entry.stat(follow_symlinks=False) if is_dir or (is_file and stat_files) else None
            except FileNotFoundError:
                continue  # deleted since its folder was listed
            if is_dir:
                pending_dirs.append((child, st))
                if include.empty:
                    yield from self._flush(pending_dirs)
                yield from self._walk_dir(entry.path, child, pending_dirs, skipped, stat_files, filters)
                if pending_dirs and pending_dirs[-1][0] == child:
                    pending_dirs.pop()
            elif is_file:
                if not include.empty and not include.matches(child):
                    continue
                yield from self._flush(pending_dirs)
                yield child, st, False
            elif skipped is not None:
                skipped.append(child)

    @staticmethod
    def _flush(pending_dirs):
        for rel, st in pending_dirs:
            yield rel, st, True
        pending_dirs.clear()

    def dump(self, writer, staging_dir, reporter):
        reporter.set_phase(f"archiving files:{self.name}")
        prefix = f"files/{self.name}"
        skipped, counts = [], {"size": 0, "files": 0, "unchanged": 0}
        root = os.stat(self.path)
        writer.add_dir(prefix, root.st_mode, root.st_mtime, root.st_uid, root.st_gid)
        with self._entries(skipped) as entries:
            self._archive_tree(writer, prefix, skipped, counts, reporter, entries)
        summary = {"name": self.name, "kind": self.kind, "size": counts["size"], "file_count": counts["files"],
                   "skipped_count": len(skipped), "skipped": skipped[:MAX_SKIPPED_LISTED]}
        if self.previous is not None:
            summary["unchanged_count"] = counts["unchanged"]
        return summary

    def _entries(self, skipped):
        """The walk, read ahead for a full backup; walked in line for an incremental one, which
        needs each file's stat before deciding to open it."""
        if self.previous is not None:
            return InLine(self.walk(skipped))
        return ReadAhead(self.path, self.walk(skipped, stat_files=False))

    def _archive_tree(self, writer, prefix, skipped, counts, reporter, entries):
        for rel, st, is_dir, opened in entries:
            if is_dir:
                writer.add_dir(f"{prefix}/{rel}", st.st_mode, st.st_mtime, st.st_uid, st.st_gid)
                continue
            if self._refer_to_parent(writer, f"{prefix}/{rel}", rel, st, reporter):
                counts["size"] += st.st_size
                counts["files"] += 1
                counts["unchanged"] += 1
            elif (file_size := self._add_file(writer, f"{prefix}/{rel}", rel, opened)) is None:
                skipped.append(rel)
            else:
                counts["size"] += file_size
                counts["files"] += 1

    def _refer_to_parent(self, writer, member, rel, st, reporter):
        """List an unchanged file as held by an earlier archive; False when it must be stored."""
        old = self.previous.get(rel) if self.previous is not None else None
        if old is None or not self._unchanged(old, rel, st):
            return False
        writer.add_reference(reference(member, old, st))
        reporter.advance(st.st_size)  # not read, but backed up all the same
        return True

    def _unchanged(self, old, rel, st):
        if not self.verify_contents:
            return same_metadata(old, st)
        # The reference keeps the parent's mode, mtime and owner: those must be today's as well.
        if old.get("size") != st.st_size or not same_attributes(old, st) or "sha256" not in old:
            return False
        try:
            fd = os.open(os.path.join(self.path, rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return False  # storing it reports what is wrong with it
        try:
            return file_sha256(fd) == old["sha256"]
        finally:
            os.close(fd)

    def _add_file(self, writer, member, rel, opened=None):
        """Stream one file and return its size; None when it vanished or stopped being a regular
        file after listing. `opened` is what the read-ahead found opening it (an Opened file or
        the OSError raised); None to open it here.

        O_NOFOLLOW and the fstat check keep a file swapped for a symlink from pulling in data from
        outside the folder; O_NONBLOCK keeps one swapped for a FIFO from hanging the backup.
        """
        opened = open_file(os.path.join(self.path, rel)) if opened is None else opened
        if isinstance(opened, OSError):
            return self._unopened(rel, opened)
        try:
            st = opened.st or os.fstat(opened.fd)  # the descriptor's own, never the walk's lstat
            if not stat.S_ISREG(st.st_mode):
                return None
            try:
                entry = writer.add_stream(member, DescriptorReader(opened.fd), st.st_size, st.st_mode, st.st_mtime,
                                          st.st_uid, st.st_gid)
                entry.update(stat_fields(st))  # what the next incremental backup compares with
            except OSError as e:
                if writer_error(e):
                    raise
                raise DumpError(N_("%(file)s in %(path)s changed or became unreadable while it was being backed "
                                   "up (%(error)s)"), file=rel, path=self.path, error=error_text(e)) from None
        finally:
            os.close(opened.fd)
        return st.st_size

    def _unopened(self, rel, error):
        """None for a file that vanished or became a symlink since it was listed; DumpError for
        any other reason it could not be opened."""
        if isinstance(error, FileNotFoundError) or error.errno == errno.ELOOP:
            return None
        raise DumpError(N_("cannot read %(file)s in %(path)s: %(error)s"), file=rel, path=self.path,
                        error=error.strerror)


def writer_error(error):
    """Errors of the archive's own disk (full, read-only) must not be blamed on the source file."""
    return error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class FolderRestorer(Restorer):
    """Extracts into a fresh staging folder beside the target, then swaps the two by rename.

    The old tree is kept (renamed aside) until every source of the restore has been applied.
    A target reached through a symlink is restored where the link points, and the link stays.
    After a killed restore, recover_folder() finishes the job from what set_aside() recorded.
    """

    def __init__(self, source, token, lock_timeout):
        super().__init__(source, token, lock_timeout)
        self.target = os.path.realpath(source.path)
        self.staging = beside(self.target, "restore", token)
        self.old = beside(self.target, "old", token)
        self.folders = {}  # relative path -> tar header
        self.made_parents = None
        self.staged = False
        self.sync = None  # writes the staging folder out while it fills (staging.BackgroundSync)
        self.applied = False

    def _staged_path(self, relative):
        return os.path.join(self.staging, relative) if relative else self.staging

    def _make_staging(self):
        if self.staged:
            return
        if os.path.ismount(self.target):
            raise RestoreError(N_("%(path)s is a mount point: Cairn restores a folder by renaming a complete copy "
                                  "into its place, which a mount point does not allow; back up and restore a "
                                  "folder inside it, or unpack the archive by hand"), path=self.target)
        try:
            self.made_parents = make_parents(self.target)
            os.mkdir(self.staging, 0o700)  # fails if it exists: staging is always new and private
            self.sync = BackgroundSync(self.staging, self.target)
        except OSError as e:
            raise RestoreError(N_("cannot create a staging folder beside %(path)s: %(error)s"), path=self.target,
                               error=e.strerror) from None
        self.staged = True

    def file_sink(self, relative, member):
        self._make_staging()
        path = self._staged_path(relative)
        try:
            if member.isdir():
                self.folders[relative] = member  # its attributes are set once everything is staged
                if relative:
                    os.makedirs(path, 0o700, exist_ok=True)
                return None
            return StagedFile(path, member, relative, self.target, self.sync.staged)
        except OSError as e:
            raise RestoreError(N_("cannot write %(file)s into staging beside %(path)s: %(error)s"), file=relative,
                               path=self.target, error=e.strerror) from None

    def check(self, manifest_members):
        """Staged files must be exactly the manifest's, with their sizes; then the folders get
        their owners, modes and times (from their tar headers, as `tar x` would set them)."""
        if "" not in self.folders:
            # Swapping in an empty staging folder would empty the target.
            raise RestoreError(N_("the archive holds no folder for %(name)s"), name=repr(self.name))
        prefix = f"files/{self.name}/"
        for member in manifest_members:
            if member.get("type") != "dir" and member["path"].startswith(prefix):
                if not staged_as_listed(self._staged_path(member["path"][len(prefix):]), member["size"]):
                    raise RestoreError(N_("%(path)s was not staged as the manifest lists it"), path=member["path"])
        self._keep_what_backups_leave_out()
        # Deepest folders first and the root last, so a read-only mode never blocks what follows.
        for relative in sorted(self.folders, key=lambda r: r.count("/") + bool(r), reverse=True):
            set_owner_mode_times(self._staged_path(relative), self.folders[relative])
        self.sync.finish()  # on disk before it replaces the live folder

    def _keep_what_backups_leave_out(self):
        """Carry what the live folder holds but backups leave out into staging, by hard links.

        The swap replaces the whole folder, so excluded entries, files not included, and the
        links, sockets and FIFOs the backup skips would otherwise be lost: they are in no archive.
        A live entry wins over an archived one at the same path (the archive still has its copy).
        Folders the staging lacks for them are made with the live folders' attributes.
        """
        if not os.path.isdir(self.target):
            return
        made = []
        for relative, st in left_out_entries(self.source, self.target):
            staged = self._staged_path(relative)
            made += self._make_staged_parents(relative)
            if os.path.lexists(staged):
                remove_tree(staged)
            try:
                link_tree(os.path.join(self.target, relative), staged, st)
            except FileNotFoundError:
                continue  # deleted meanwhile
            except OSError as e:
                raise RestoreError(N_("cannot keep %(file)s, which backups of %(name)s leave out, through the "
                                      "restore: %(error)s"), file=relative, name=repr(self.name),
                                   error=e.strerror) from None
        for relative in reversed(made):  # deepest first
            copy_attributes(os.path.join(self.target, relative), self._staged_path(relative))

    def _make_staged_parents(self, relative):
        """Make the staged folders above `relative` that the archive did not have; list them."""
        made, parent = [], os.path.dirname(relative)
        while parent and not os.path.isdir(self._staged_path(parent)):
            made.insert(0, parent)
            parent = os.path.dirname(parent)
        for folder in made:
            os.mkdir(self._staged_path(folder), 0o700)
        return made

    def apply(self, undoable=True):
        had_target = os.path.lexists(self.target)
        if had_target:
            os.rename(self.target, self.old)
        try:
            os.rename(self.staging, self.target)
        except OSError:
            if had_target:
                os.rename(self.old, self.target)
            raise
        self.applied = True
        fsync_dir(os.path.dirname(self.target))  # the swap itself survives a crash

    def undo(self):
        if not self.applied:
            return
        os.rename(self.target, self.staging)  # discard() removes it
        if os.path.lexists(self.old):
            os.rename(self.old, self.target)
        self.applied = False

    def commit(self):
        return [self.old] if os.path.lexists(self.old) else []

    def discard(self):
        if self.sync is not None:
            self.sync.stop()
        remove_tree(self.staging)
        if not os.path.lexists(self.target):
            remove_made_parents(self.target, self.made_parents)

    def set_aside(self):
        return {"kind": "folder", "source": self.name, "target": self.target, "staging": self.staging,
                "old": self.old, "existed": os.path.lexists(self.target)}


def staged_as_listed(path, size):
    """A regular file of `size` bytes at `path` (one stat: there are tens of thousands)."""
    try:
        st = os.stat(path)
    except OSError:  # missing, or a parent is not a folder
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size


def recover_folder(entry, complete):
    """After a killed restore: drop the replaced tree if the whole restore was done (`complete`),
    else put the target back as it was; drop the staging folder. Returns what became of it."""
    target, old = entry["target"], entry["old"]
    outcome = "unchanged"
    if complete:
        remove_tree(old)
        outcome = "restored"
    elif os.path.lexists(old):
        # The first rename of the swap happened, so what stands at the target, if anything, is
        # the restored tree: the target goes back to what it was.
        remove_tree(target)
        os.rename(old, target)
        outcome = "put back"
    elif not entry["existed"] and os.path.lexists(target) and not os.path.lexists(entry["staging"]):
        remove_tree(target)  # the swap brought in a folder that was not there before
        outcome = "put back"
    remove_tree(entry["staging"])
    return outcome


def left_out_entries(source, root):
    """(relative path, lstat) of what backups of `source` leave out of `root`, as FilesSource.walk
    decides: excluded entries (folders whole), files not included, links, sockets, FIFOs and
    devices. A mount point inside `root` is refused: a swap would carry it away with the old tree.
    """
    include, exclude = GlobSet(source.include), GlobSet(source.exclude)
    device = os.lstat(root).st_dev
    pending = [("", root)]
    while pending:
        rel, path = pending.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                child = f"{rel}/{entry.name}" if rel else entry.name
                try:
                    # d_type answers these without a system call; only folders and what is kept are stat-ed.
                    is_dir = entry.is_dir(follow_symlinks=False)
                    if is_dir and entry.stat(follow_symlinks=False).st_dev != device:
                        raise RestoreError(N_("%(path)s is a mount point inside %(root)s: restoring the folder "
                                              "would move it away; back up and restore the folders on either "
                                              "side of the mount separately"), path=entry.path, root=root)
                    if not exclude.empty and exclude.matches(child):
                        yield child, entry.stat(follow_symlinks=False)
                    elif is_dir:
                        pending.append((child, entry.path))
                    elif not entry.is_file(follow_symlinks=False) or (not include.empty
                                                                      and not include.matches(child)):
                        yield child, entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted since its folder was listed


def link_tree(source, target, st):
    """Hard-link `source` at `target`: a folder is made anew, with everything in it linked."""
    if not stat.S_ISDIR(st.st_mode):
        os.link(source, target, follow_symlinks=False)
        return
    os.mkdir(target, 0o700)
    with os.scandir(source) as entries:
        for entry in entries:
            child_st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(child_st.st_mode) and child_st.st_dev != st.st_dev:
                raise OSError(errno.EXDEV, Message(N_("%(path)s is a mount point"), path=entry.path))
            link_tree(entry.path, os.path.join(target, entry.name), child_st)
    copy_attributes(source, target, st)


def copy_attributes(source, target, st=None):
    """Owner (as root), mode and times of the folder `source`, given to `target`."""
    st = st or os.lstat(source)
    if os.geteuid() == 0:
        os.chown(target, st.st_uid, st.st_gid)
    os.chmod(target, stat.S_IMODE(st.st_mode))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def remove_tree(path):
    """Remove a staged or old tree, read-only folders included; a link is removed, not followed."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
        return
    if not os.path.lexists(path):
        return
    top = os.path.normpath(path)

    def make_writable_and_retry(function, failed_path, exc_info):
        parent = os.path.dirname(os.path.normpath(failed_path))
        if parent != top and not parent.startswith(top + os.sep):
            raise exc_info[1]  # never change permissions outside the tree being removed
        os.chmod(parent, 0o700)
        function(failed_path)

    shutil.rmtree(path, onerror=make_writable_and_retry)
