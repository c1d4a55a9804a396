"""Babel (RFC 8966) for meshd: the wire codec and, later, the routing core.

Modules:

- :mod:`meshd.babel.tlv`: the packet, TLVs and sub-TLVs as frozen dataclasses;
- :mod:`meshd.babel.prefix`: address encodings (AE 0-4) and prefix compression;
- :mod:`meshd.babel.subtlv`: the sub-TLV codec;
- :mod:`meshd.babel.codec`: ``decode_packet_untrusted`` / ``encode_packet``;
- :mod:`meshd.babel.expand`: the RFC 8966 parser state: TLVs to routes and back;
- :mod:`meshd.babel.mac`: RFC 8967 MACs.

All of it is pure: bytes in, values out, no clock and no sockets.
"""
