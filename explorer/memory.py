"""Giving memory back to the operating system after runs end (glibc only; a no-op elsewhere).

Training threads each get a malloc arena of their own, and freed tensors leave holes that
glibc keeps: a server whose sessions have come and gone can hold hundreds of MB it no longer
uses. Fewer arenas (`limit_arenas`, once at start) and a trim when runs end (`give_back`)
return it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_ARENA_MAX = -8          # mallopt's parameter number (malloc.h)
ARENAS = 2                # enough for the server's threads not to queue on one lock


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


_LIBC = _libc()


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (as MALLOC_ARENA_MAX would, unless that is set); True if done."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(M_ARENA_MAX, arenas))


def give_back() -> bool:
    """Return the free memory at the top of every arena and in whole free pages to the OS."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))
