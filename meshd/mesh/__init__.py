"""The mesh state: which WireGuard peers this node should have, from the membership (pure).

Data flows one way: membership -> :mod:`meshd.mesh.desired` -> the reconciler
(:func:`meshd.wg.reconcile.plan`) -> a backend. The I/O shell that owns the backend and runs
the reconcile loop is :mod:`meshd.daemon.wireguard`. :mod:`meshd.mesh.underlay` turns this
machine's interface addresses into announced endpoints and concrete listen addresses.
See docs/mesh.md.
"""
