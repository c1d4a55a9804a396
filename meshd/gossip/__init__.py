"""The signed-gossip layer's transport: libp2p gossipsub plus framed stream protocols.

``meshd.gossip.framing`` is pure and importable anywhere. ``meshd.gossip.host`` is the only
module that imports libp2p; import it explicitly where a running host is needed, so that
protocol cores and tools that only need framing do not pay for loading libp2p.
"""
