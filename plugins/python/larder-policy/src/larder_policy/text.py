"""Text rules shared with the Rust SDK, so that both SDKs read the same input the same way.

Python's string methods differ from Rust's in small ways that would make a Python policy and
its Rust twin disagree on odd input: `str.strip()` also strips U+001C..U+001F, which Rust's
`str::trim` keeps; `str.lower()` lower-cases non-ASCII letters, where the Rust SDK compares
header names with ASCII case folding only; `repr()` quotes differently from Rust's `{:?}`, which
the Rust SDK's messages use. The SDK uses these helpers wherever the Rust SDK uses the Rust
original; a policy that must match a Rust policy exactly can use them too.
"""

from __future__ import annotations

import unicodedata

#: The characters with the Unicode `White_Space` property: what Rust's `str::trim` removes.
WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_DEBUG_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0", '"': '\\"', "\\": "\\\\"}


def trim(text: str) -> str:
    """`text` without leading and trailing Unicode white space, as Rust's `str::trim`."""
    return text.strip(WHITESPACE)


def ascii_lower(text: str) -> str:
    """`text` with ASCII letters lower-cased and every other character kept, as Rust's
    `str::to_ascii_lowercase`."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def rust_debug(text: str) -> str:
    """`text` quoted as Rust's `{:?}` quotes a string: `"a \\"b\\""`, control and invisible
    characters as `\\u{..}`. Used in messages that must read the same from both SDKs."""
    out = ['"']
    for c in text:
        escape = _DEBUG_ESCAPES.get(c)
        if escape is not None:
            out.append(escape)
        elif c.isprintable() and unicodedata.category(c) not in ("Mn", "Me"):
            out.append(c)
        else:
            out.append(f"\\u{{{ord(c):x}}}")
    out.append('"')
    return "".join(out)
