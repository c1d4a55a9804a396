"""Addresses derived from keys: the network's overlay prefix and each member's overlay address.

* The overlay prefix is an RFC 4193 unique local /48: ``fd`` followed by a 40-bit global ID.
  RFC 4193 takes the 40 bits from a hash of something unique; meshd hashes the root public
  key, so every member derives the same prefix from the trust root alone.
* A member's overlay address is that prefix, subnet 0, and a 64-bit interface identifier hashed
  from its node key, so nobody can claim another member's address without its key.

The link-local address on the WireGuard interface is derived from the WireGuard key instead
(see meshd/wg/addresses.py).

Prefixes are *interned* (:func:`interned`, :func:`host_prefix`): every module that holds a
member's /128 (the membership's grants, the desired WireGuard peers, the device read back,
Babel's routes) holds the same object. An ``ipaddress`` /128 network costs 400 to 540 bytes
(its ``__dict__``, its address, and a closure for ``hosts`` holding what it was made from),
and a member's two /128s were made afresh by each of them, every round. The interned ones
are :class:`HostPrefix`, an ``IPv6Network`` that is its address's int (an ``int``
subclass) and keeps nothing else (its address is made when asked, its netmask and length are
its class's, and it has no ``hosts`` of its own): 68 bytes, against 80 and its int's 44 when
it kept the int in its attribute storage, and 97 and an address object of 56 when it kept
the three attributes a standard network keeps.

The /128s' table holds them strongly and is swept as it grows (:func:`sweep`): an entry of a
weak table costs ~125 bytes more (its weak reference and callback), 250 a member.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any

Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network


_NETMASK_128 = ipaddress.IPv6Network("::/128").netmask
_HOSTMASK_128 = ipaddress.IPv6Network("::/128").hostmask


class HostPrefix(int, ipaddress.IPv6Network):
    """An IPv6 /128 that is its address's int: an ``IPv6Network`` in every respect (equal
    to, hashed and ordered as the standard one, which it reprs as), and an ``int`` subclass
    whose value is its address, so that one object of 68 bytes stands for both, where the
    network kept its int in its attribute storage (80 bytes beside the int's 44). Its
    address (``network_address``, and ``broadcast_address``, the same) is made when asked,
    its netmask and length are the class's, its hostmask (cached in each standard network's
    ``__dict__``) is read through the class, and ``hosts`` is a method of the class, not the
    closure the standard /128 makes for each instance. Made by :func:`host_prefix_of`
    (interned); anything else given to the class (what the standard methods make through it,
    such as ``supernet``) is a standard ``IPv6Network``.

    ``int`` comes first among its bases: compared with another /128 (the membership's, the
    desired peers' and Babel's sorted tables) or with an int (Babel's look-ups by an
    address's int, :func:`host_int`) it compares as its address's int, in C; compared with
    a standard network, the network's own comparison answers (``int``'s declines), so
    equality and order with networks are the standard ones. What ``int`` would change of a
    network is the network's again: its hash, its text, truth (``::/128`` is true),
    ``format`` with a spec (refused), pickling (by value, interned again). A network is never
    compared with an int, nor given to msgpack, by meshd; the control socket's answers and
    the JSON log lines write any address or network as its text (JSON itself would write
    this one as its int)."""

    __slots__ = ()
    netmask = _NETMASK_128
    _prefixlen = 128

    def __new__(cls, address: object, strict: bool = True) -> Any:
        if type(address) is not int:
            return ipaddress.IPv6Network(address, strict)
        return _host(address)

    def __init__(self, address: object, strict: bool = True) -> None:
        """Made by :meth:`__new__`."""

    @property
    def _value(self) -> int:
        """The address's int: the /128 itself (an int of that value), not a copy."""
        return self

    @property
    def network_address(self) -> ipaddress.IPv6Address:  # type: ignore[override]
        return address_of(self)

    @property
    def broadcast_address(self) -> ipaddress.IPv6Address:
        return address_of(self)

    @property
    def hostmask(self) -> ipaddress.IPv6Address:
        return _HOSTMASK_128

    def hosts(self) -> Iterator[ipaddress.IPv6Address]:
        return iter((address_of(self),))

    def __hash__(self) -> int:
        # The standard network's: its address's int xor its netmask's (all ones for a /128).
        return hash(self ^ _ALL_ONES)

    def __bool__(self) -> bool:
        # A network is true (it has no length), ::/128 included; the int 0 is false.
        return True

    def __format__(self, spec: str) -> str:
        # A network's: its text, and no format spec (an int's would write digits).
        return object.__format__(self, spec)

    def __str__(self) -> str:
        # What the standard network writes, without making its address (UAPI text, logs).
        return ipv6_text(self) + "/128"

    def __repr__(self) -> str:
        return f"IPv6Network('{self}')"

    def __reduce__(self) -> tuple[Callable[[int], ipaddress.IPv6Network], tuple[int]]:
        return host_prefix_of, (_plain(self),)


_ALL_ONES = (1 << 128) - 1
_new = object.__new__
_new_int = int.__new__


_plain = int.__int__  # an int's value as an int: itself if it is one, a copy of a subclass's


def address_of(value: int) -> ipaddress.IPv6Address:
    """The ``IPv6Address`` of ``value`` (0 <= value < 2**128), made without the checks of
    its ``__init__`` (~110 ns, ~330 through it). It holds a plain int (a /128's value is
    copied: an address's int is what ``int(address)`` returns)."""
    address: ipaddress.IPv6Address = _new(ipaddress.IPv6Address)
    address._ip = _plain(value)  # type: ignore[attr-defined]
    address._scope_id = None  # type: ignore[attr-defined]
    return address


def ipv6_text(value: int) -> str:
    """The text of the IPv6 address ``value`` as ``str(ipaddress.IPv6Address(value))``
    writes it (RFC 5952: hextets without leading zeros, the first longest run of two or
    more zero hextets as ``::``): a /128's text in ~2.2 us where making its address and
    writing that took ~3.9 (two a peer in the UAPI text of a start-up: 10,000 peers' text
    93 -> 62 ms)."""
    h = int.__format__(value, "032x")
    parts = [h[i : i + 4].lstrip("0") or "0" for i in range(0, 32, 4)]
    best, best_len, start = -1, 1, -1
    for i in range(8):
        if parts[i] == "0":
            if start < 0:
                start = i
            if i - start + 1 > best_len:
                best, best_len = start, i - start + 1
        else:
            start = -1
    if best < 0:
        return ":".join(parts)
    return ":".join(parts[:best]) + "::" + ":".join(parts[best + best_len :])


def host_int(prefix: ipaddress.IPv6Network) -> int:
    """The address of a /128 as an int: an interned one is itself (no address made, no
    copy), which compares as that int but hashes as the network: a key to sort or bisect
    by, not one to find in a dict by a plain int (:func:`int` of it is a plain copy)."""
    if prefix.__class__ is HostPrefix:
        return prefix
    return int(prefix.network_address)


def _host(value: int) -> HostPrefix:
    """A new :class:`HostPrefix` of ``value``, made without the calls to its ``__new__`` and
    ``__init__``."""
    return _new_int(HostPrefix, value)


# Interned prefixes. IPv6 /128s (two a member: its overlay and link-local addresses) in a
# table of their own, open-addressed: a list of the prefixes, each in the slot its address
# picks (the address's low bits, then the probe sequence of CPython's dict), found by the
# address it holds. 8 bytes a slot, 11 to 32 a prefix (16 at 1,000 members, 13 at
# 10,000), where a dict's entry (hash, key and value, at most two-thirds of them used) cost
# 37 and 30. Held strongly: a /128 nobody else holds leaves the table when it is next
# rebuilt (sweep), once three-quarters full; rebuilt at least twice the size of what is
# held, so amortised O(1) a prefix and the table at most 1.5 times what is held. Any other
# prefix (a few a network, not a member) by packed network address and prefix length (5 or
# 17 bytes, so the two families never share a key), weakly: it leaves the table as soon as
# nobody holds it.
_SMALLEST = 256  # 2 KiB idle
_hosts: list[HostPrefix | None] = [None] * _SMALLEST
_filled = 0  # prefixes in _hosts
_OTHERS: weakref.WeakValueDictionary[bytes, Prefix] = weakref.WeakValueDictionary()


def interned(prefix: Prefix) -> Prefix:
    """The one object standing for ``prefix`` (equal to it) while anything holds one."""
    if prefix.prefixlen == 128 and isinstance(prefix, ipaddress.IPv6Network):
        return host_prefix_of(int(prefix.network_address))
    key = prefix.network_address.packed + bytes((prefix.prefixlen,))
    found = _OTHERS.get(key)
    if found is None:
        _OTHERS[key] = found = prefix
    return found


def held(packed: bytes, prefixlen: int) -> Prefix | None:
    """The interned prefix whose network address is ``packed`` (4 or 16 bytes) with this
    length, if anything holds one; None otherwise (nothing is made)."""
    if prefixlen == 128 and len(packed) == 16:
        return _hosts[_slot(_hosts, int.from_bytes(packed, "big"))]
    return _OTHERS.get(packed + bytes((prefixlen,)))


def overlay_prefix(root_public_key: bytes) -> ipaddress.IPv6Network:
    """The network's unique local /48, from its root key."""
    global_id = hashlib.sha256(b"meshd ula v1\x00" + root_public_key).digest()[:5]
    return ipaddress.IPv6Network((b"\xfd" + global_id + bytes(10), 48))


def overlay_address(root_public_key: bytes, node_public_key: bytes) -> ipaddress.IPv6Address:
    """A member's overlay address: the network's /48, subnet 0, a key-derived interface id."""
    iid = hashlib.sha256(b"meshd iid v1\x00" + node_public_key).digest()[:8]
    return ipaddress.IPv6Address(_subnet_zero(root_public_key) + iid)


@functools.lru_cache(maxsize=4)
def _subnet_zero(root_public_key: bytes) -> bytes:
    """The first 8 bytes of every overlay address of the network (its /48, subnet 0): made
    once, not for each of 10,000 members at start-up."""
    return overlay_prefix(root_public_key).network_address.packed[:6] + bytes(2)


def host_prefix(address: ipaddress.IPv6Address) -> ipaddress.IPv6Network:
    """The /128 of ``address``, interned (made only if no one holds it yet)."""
    return host_prefix_of(int(address))


def host_prefix_of(value: int) -> ipaddress.IPv6Network:
    """The /128 of the IPv6 address whose value is ``value``, interned."""
    global _filled
    hosts = _hosts
    # The probe of _slot, written here again: a call is a third of a lookup's time.
    mask = len(hosts) - 1
    slot = value & mask
    perturb = value & _ALL_ONES
    while (found := hosts[slot]) is not None:
        if found == value:  # both ints: compared in C
            return found
        perturb >>= 5
        slot = (5 * slot + 1 + perturb) & mask
    found = hosts[slot] = _host(value)
    _filled += 1
    if 4 * _filled >= 3 * len(hosts):
        sweep()
    return found


def _slot(hosts: list[HostPrefix | None], value: int) -> int:
    """The slot of ``hosts`` that holds the /128 of ``value``, or the empty one where it
    goes. The table is never full, and the probe sequence visits every slot."""
    mask = len(hosts) - 1
    slot = value & mask
    perturb = value & _ALL_ONES  # an invalid value (negative) probes too, then fails
    while (found := hosts[slot]) is not None:
        if found == value:
            return slot
        perturb >>= 5
        slot = (5 * slot + 1 + perturb) & mask
    return slot


def sweep() -> int:
    """Let go of the interned /128s nobody else holds, and size the table for what is held;
    how many went. Runs by itself as the table fills; a caller that wants the table small
    now (a test) may run it."""
    global _hosts, _filled
    old = _hosts
    kept = [old[i] for i in range(len(old)) if old[i] is not None and _holders(old, i) > _UNHELD]
    size = _SMALLEST
    while size < 2 * len(kept):
        size *= 2
    hosts: list[HostPrefix | None] = [None] * size
    for prefix in kept:
        assert prefix is not None
        hosts[_slot(hosts, prefix)] = prefix
    _hosts, _filled = hosts, len(kept)
    return len(old) - old.count(None) - len(kept)


def _holders(hosts: list[HostPrefix | None], slot: int) -> int:
    return sys.getrefcount(hosts[slot])


def _unheld() -> int:
    """What :func:`_holders` says of a /128 that only the table holds (the table and the
    count's own argument: 2 on CPython 3.11), measured on one made for the purpose rather
    than assumed, since interpreters count borrowed references differently."""
    return _holders([_host(_ALL_ONES)], 0)


_UNHELD = _unheld()


def prefix_within(inner: Prefix, outer: Prefix) -> bool:
    """True when ``inner`` is ``outer`` or lies inside it (same address family)."""
    if inner.version != outer.version:
        return False
    return inner.subnet_of(outer)  # type: ignore[arg-type]
