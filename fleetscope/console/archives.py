"""Uploaded bundle archives (zip, tar, tar.gz) unpacked safely for the Investigate page.

Nothing leaves the destination folder: tar members pass the standard library's ``data`` extraction
filter (PEP 706: no absolute paths, no ``..``, no links out of the folder, no devices), zip member names
are checked the same way, and the sizes the archive declares are summed before anything is written, so
a small archive that would expand to fill the disk is refused whole.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

#: Most bytes an archive may expand to.
MAX_UNPACKED_BYTES = 4 << 30
#: Most members an archive may hold.
MAX_MEMBERS = 200_000


class ArchiveError(Exception):
    """The upload is not a zip or tar archive, is damaged, or is refused (unsafe names, too large)."""


def _check_totals(name: str, count: int, size: int) -> None:
    if count > MAX_MEMBERS:
        raise ArchiveError(f"{name} holds {count} members (at most {MAX_MEMBERS})")
    if size > MAX_UNPACKED_BYTES:
        raise ArchiveError(f"{name} would unpack to {size} bytes (at most {MAX_UNPACKED_BYTES})")


def _unzip(archive: zipfile.ZipFile, name: str, dest: Path) -> None:
    members = archive.infolist()
    _check_totals(name, len(members), sum(m.file_size for m in members))
    for member in members:
        parts = PurePosixPath(member.filename.replace("\\", "/")).parts
        if member.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise ArchiveError(f"{name}: member {member.filename!r} would land outside the bundle")
    archive.extractall(dest)


def _untar(archive: tarfile.TarFile, name: str, dest: Path) -> None:
    members = archive.getmembers()
    _check_totals(name, len(members), sum(m.size for m in members if m.isfile()))
    try:
        archive.extractall(dest, filter="data")
    except tarfile.FilterError as exc:
        raise ArchiveError(f"{name}: {exc}") from exc


def unpack(upload: IO[bytes], name: str, dest: Path) -> Path:
    """Unpack an uploaded archive into ``dest`` and return the bundle's root folder: the archive's one
    top-level folder when it has exactly one, else ``dest`` itself.

    Args:
        upload: the archive's bytes (a seekable file object).
        name: its file name, for messages.
        dest: an empty folder.

    Raises:
        ArchiveError: not a zip or tar archive (tar.gz and tar.bz2 included), damaged, or refused.
    """
    try:
        if zipfile.is_zipfile(upload):
            upload.seek(0)
            with zipfile.ZipFile(upload) as archive:
                _unzip(archive, name, dest)
        else:
            upload.seek(0)
            with tarfile.open(fileobj=upload, mode="r:*") as archive:
                _untar(archive, name, dest)
    except tarfile.ReadError as exc:
        raise ArchiveError(f"{name} is not a zip, tar or tar.gz archive ({exc})") from exc
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"{name} cannot be unpacked: {exc}") from exc
    entries = list(dest.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest
