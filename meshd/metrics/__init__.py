"""Prometheus metrics (``meshd up --metrics ADDR``; docs/metrics.md).

- :mod:`~meshd.metrics.snapshot`: the few counters the daemon keeps for what no view shows
  (gossip messages, sync sessions and bytes), and a snapshot of the views; no
  prometheus_client;
- :mod:`~meshd.metrics.collector`: every metric's name, type, labels and help (the table of
  docs/metrics.md), and a prometheus_client collector that turns one snapshot of the
  daemon's views (status, peers, routes) and counters into metric families;
- :mod:`~meshd.metrics.http`: the request line of a scrape, decoded (untrusted bytes).

The endpoint itself (a trio task) is :mod:`meshd.daemon.metrics`. Only the daemon imports
prometheus_client, and only when ``--metrics`` is given.
"""
