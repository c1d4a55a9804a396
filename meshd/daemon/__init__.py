"""``meshd up``: the running daemon, a nursery of small services around one owner of membership.

:mod:`meshd.daemon.service` starts them; :mod:`meshd.daemon.state` owns membership and hands out
snapshots and events (:mod:`meshd.daemon.feed`); each service is a module here with its policy
in a pure ``*_policy`` module. docs/daemon.md describes them. Nothing is imported here:
:mod:`meshd.daemon.launch` programs WireGuard before libp2p is imported.
"""
