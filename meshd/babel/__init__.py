"""Babel (RFC 8966) for meshd: the wire codec, the routing core and its shell.

The wire codec:

- :mod:`meshd.babel.numbers`: type numbers, flags, limits and the field checks;
- :mod:`meshd.babel.tlv`, :mod:`meshd.babel.subtlv_types`, :mod:`meshd.babel.packet`: the
  TLVs, sub-TLVs, RFC 8967 TLVs and the packet as frozen dataclasses;
- :mod:`meshd.babel.prefix`: address encodings (AE 0-4) and prefix compression;
- :mod:`meshd.babel.subtlv`: the sub-TLV codec;
- :mod:`meshd.babel.codec`: ``decode_packet_untrusted`` / ``encode_packet``;
- :mod:`meshd.babel.expand`: the RFC 8966 parser state: TLVs to routes and back;
- :mod:`meshd.babel.mac`, :mod:`meshd.babel.auth`: RFC 8967 MACs, and their state per link.

The routing core, :class:`meshd.babel.core.BabelCore`, and what it is made of:

- :mod:`meshd.babel.core_state`, :mod:`meshd.babel.core_receive`,
  :mod:`meshd.babel.core_timers`, :mod:`meshd.babel.core_queries`: its state, a datagram
  received, time passing, and what it shows;
- :mod:`meshd.babel.config`: ``CoreConfig``, ``InterfaceConfig``, the hooks;
- :mod:`meshd.babel.interfaces`: one interface, its Hellos and IHUs (3.4);
- :mod:`meshd.babel.neighbours`: Hello histories, link cost, RTT;
- :mod:`meshd.babel.sources`: seqnos, the source table and feasibility;
- :mod:`meshd.babel.routes`: the route table, ``choose`` and the events;
- :mod:`meshd.babel.selection`: Updates received, hold times, route selection (3.5, 3.6);
- :mod:`meshd.babel.updates`: full, triggered and urgent updates (3.7);
- :mod:`meshd.babel.requests`: Seqno Requests and starvation recovery (3.8);
- :mod:`meshd.babel.outbox`: what waits per destination, packed into datagrams;
- :mod:`meshd.babel.views`: the snapshots ``meshd routes`` shows.

All of that is pure: bytes and time in, values out, no clock and no sockets. The I/O is in
:mod:`meshd.babel.shell` (the run loop), :mod:`meshd.babel.ports` (UDP sockets) and
:mod:`meshd.babel.kernel_routes`; :mod:`meshd.babel.options` and
:mod:`meshd.babel.gateway` serve the daemon.
"""
