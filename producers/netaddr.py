"""What an event's ``network_address`` may hold: an IP address or a host name.

DICOM PS3.15 A.5 (ActiveParticipant ``NetworkAccessPointID``) names five kinds of
network access point: 1 machine name (a DNS name), 2 IP address, 3 telephone number,
4 e-mail address, 5 URI. The ledger records where an access came from, so it takes the
two that name a network node, types 1 and 2, and nothing else: an event whose
``network_address`` is not one of them is refused by the producer and quarantined by the
consumer (which validates with the same code), so no free text ever stays in the ledger
under that name.

Invariant: ``is_network_address(v)`` is true exactly when ``v`` is

* an IPv4 address in dotted-quad form or an IPv6 address (``ipaddress.ip_address``; no
  brackets, no port; an IPv6 zone id only of letters, digits, ``_``, ``.``, ``-``), or
* an RFC 1123 host name in ASCII (internationalised names in their ``xn--`` form): at
  most 253 characters without the optional final dot, labels of 1-63 letters, digits and
  hyphens that neither start nor end with a hyphen, and a last label that is not all
  digits (so ``1.2.3`` and ``999.1.1.1`` are neither an address nor a name).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Final

__all__ = ["is_host_name", "is_network_address"]

_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
_ZONE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)


def is_host_name(value: str) -> bool:
    """An RFC 1123 host name (see the module doc)."""
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    if labels[-1].isdigit():
        return False
    return all(_LABEL.fullmatch(label) for label in labels)


#: A dotted-quad IPv4 address exactly as ``ipaddress.ip_address`` accepts one: four
#: decimal octets 0-255 without leading zeros. The consumer checks every event's address,
#: mostly distinct ones, and ``ipaddress`` costs ~10 times this match.
_IPV4_OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4: Final = re.compile(rf"{_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}", re.ASCII)


@functools.lru_cache(maxsize=4096)
def is_network_address(value: str) -> bool:
    """An IP address (v4 or v6) or a host name: DICOM NetworkAccessPointID types 1 and 2."""
    if _IPV4.fullmatch(value):
        return True
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return is_host_name(value)
    _, percent, zone = value.partition("%")
    return not percent or bool(_ZONE.fullmatch(zone))
