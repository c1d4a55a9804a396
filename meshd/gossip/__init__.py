"""The signed-gossip layer's transport: libp2p gossipsub plus framed stream protocols.

``framing``, ``sync``, ``enroll`` and ``config`` are pure and importable anywhere. Only the
host's modules (``host``, ``delivery``, ``dialling``, ``strangers``, ``stack``, ``peers``,
``streams``, and the ``libp2p_workarounds`` package) import libp2p; import
``meshd.gossip.host`` explicitly where a running host is needed, so that protocol cores and
tools that do not need one never pay for loading libp2p.
"""
