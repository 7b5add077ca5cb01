"""An email's bytes for DATA, written directly: the bytes the stdlib's MIME classes would make.

Every Herald email has one shape: multipart/alternative with a plain-text and an HTML part.
Building it as `email.mime` objects and flattening them with the stdlib's generator cost about
265 µs per message on the bench machine, a tenth of an email worker's CPU, most of it objects
and bookkeeping for a layout that never varies. Writing the same bytes directly costs a quarter
of that. The stdlib still does everything that is not plain concatenation: folding and RFC 2047 for
a header that does not fit on one line (Compat32's folding, as aiosmtplib flattens with) and
quoted-printable for a body that is not plain ASCII (the charset's body encoder). The bytes are
checked against the MIME classes flattened by aiosmtplib, for generated messages of every kind,
in tests/channels/test_email_safety.py.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from email.charset import QP, Charset
from email.policy import Compat32

_COMPAT32 = Compat32()
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP  # readable in the raw message, unlike base64
_LINE_ENDINGS = re.compile(r"\r\n|\r|\n")
_FROM_LINE = re.compile(r"^From ", re.MULTILINE)
_BOUNDARY = re.compile(r"[0-9A-Za-z=_]{1,70}")

# The longest header line SMTP's guidance and Compat32 keep unfolded.
MAX_LINE = 78


def compose(
    headers: Sequence[tuple[str, str]], parts: Sequence[tuple[str, str]], boundary: str
) -> bytes:
    """A multipart/alternative message with these headers (after its own Content-Type and
    MIME-Version) and one text part per `(subtype, body)`. `boundary` is letters, digits, "="
    and "_", and must not occur in a body: a random one cannot, and "=_" never occurs in
    quoted-printable."""
    if not _BOUNDARY.fullmatch(boundary):
        raise ValueError(f"not a boundary this module writes: {boundary!r}")
    before, after = _multipart_type(len(boundary))
    out = [before, boundary.encode("ascii"), after, b"MIME-Version: 1.0\n"]
    out += [header(name, value) for name, value in headers]
    out.append(b"\n")
    for index, (subtype, body) in enumerate(parts):
        out.append(f"{chr(10) if index else ''}--{boundary}\n".encode("ascii"))
        out.append(_text_part(subtype, body))
    out.append(f"\n--{boundary}--\n".encode("ascii"))
    return b"".join(out)


def header(name: str, value: str) -> bytes:
    """One header as Compat32 writes it; a value that already fits on one line (printable
    ASCII) as it is, without building the `Header` object Compat32's folding builds for it."""
    if len(name) + 2 + len(value) <= MAX_LINE and value.isascii() and value.isprintable():
        return f"{name}: {value}\n".encode("ascii")
    return _COMPAT32.fold_binary(name, value)


@functools.lru_cache(maxsize=8)
def _multipart_type(boundary_length: int) -> tuple[bytes, bytes]:
    """The Content-Type header as Compat32 folds it, split where the boundary goes. Folding it
    afresh per message was a third of writing the message; it depends only on the boundary's
    length, as Compat32 folds at spaces and ";" and a boundary has neither."""
    marker = "b" * boundary_length
    folded = header("Content-Type", f'multipart/alternative; boundary="{marker}"')
    before, _, after = folded.rpartition(f'{marker}"'.encode("ascii"))  # the value's end
    return before, b'"' + after


def _text_part(subtype: str, body: str) -> bytes:
    """Plain ASCII with SMTP-safe lines goes as 7bit, anything else as quoted-printable UTF-8.
    As the generator does: "From " at a line's start becomes ">From " (Compat32's mbox
    habit), then every line ending becomes a newline."""
    if body.isascii() and all(len(line) <= 998 for line in body.splitlines()):
        charset, encoding, payload = "us-ascii", "7bit", body
    else:
        charset, encoding = "utf-8", "quoted-printable"
        payload = _UTF8_QP.body_encode(body.encode("utf-8"))
    payload = _LINE_ENDINGS.sub("\n", _FROM_LINE.sub(">From ", payload))
    return (
        f'Content-Type: text/{subtype}; charset="{charset}"\nMIME-Version: 1.0\n'
        f"Content-Transfer-Encoding: {encoding}\n\n{payload}"
    ).encode("ascii")
