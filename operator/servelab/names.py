"""Names and label values of everything servelab derives from a resource's name.

A resource name is a DNS-1123 subdomain (up to 253 characters, dots allowed); what servelab creates from
it must be valid where it is used (a Service name is a DNS-1035 label: 63 characters, no dots, a letter
first) and must never collide with what another resource derives. So a derived name is kept readable when
it is already valid, and otherwise shortened and made unique with a hash of everything it stands for.
"""

from __future__ import annotations

import hashlib
import re

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# one letter per kind in child names, so a QuantJob and a ServeBenchmark of one name never share a child
KIND_MARK = {"ServeBenchmark": "g", "QuantJob": "q"}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def dns_name(text: str, limit: int = 63) -> str:
    """A lowercase RFC 1123 label made from text (deterministic; not unique: see child_name)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return name[:limit].rstrip("-") or "x"


def child_name(kind: str, name: str, generation: int, suffix: str) -> str:
    """`<name>-g<generation>-<suffix>` (`-q` for a QuantJob's children) when that is a valid DNS-1035
    label; otherwise a shortened, lowercased form with a hash of the full name, so two resources whose
    names share a long prefix, or differ only in dots or case, never get the same child."""
    full = f"{name}-{KIND_MARK.get(kind, 'x')}{generation}-{suffix}"
    if len(full) <= 63 and DNS1035.match(full):
        return full
    base = dns_name(full, 54)
    if not base[0].isalpha():
        base = ("s" + base)[:54].rstrip("-")
    return f"{base}-{_digest(full)}"


def label_value(text: str) -> str:
    """text when it is a valid label value, else a shortened form with a hash of text (unique)."""
    if len(text) <= 63 and LABEL_VALUE.match(text):
        return text
    return f"{dns_name(text, 54)}-{_digest(text)}"


__all__ = ["child_name", "dns_name", "label_value"]
