"""A deterministic discrete-event simulator of a meshd mesh.

It lives in meshd/ (not benchmarks/) because it is a pure core like the others: no clock,
no socket, no trio (ruff's TID251 rules hold here), so the tests under tests/sim and the
benchmark benchmarks/sim.py both import it, and it runs meshd's own membership and sync cores
(:mod:`meshd.sim.nodes`). Nothing in the daemon imports it.

* :mod:`meshd.sim.params`: links, CPU costs, the gossip settings (the daemon's defaults);
* :mod:`meshd.sim.loop`: the event loop, TCP-like links, the CPUs, the node's state;
* :mod:`meshd.sim.engine`: a meshsub 1.1 router per node, and the connections;
* :mod:`meshd.sim.nodes`: the membership layer, real (``RealNode``) or modelled
  (``ModelNode``, for 1,000 and 10,000 nodes);
* :mod:`meshd.sim.records`: the signed records of a network built from one seed;
* :mod:`meshd.sim.scenarios`: revocation, steady state, partition and heal, churn;
* :mod:`meshd.sim.babel_net`: the real Babel core on every node that runs Babel, over the
  same links as UDP; :mod:`meshd.sim.babel_relays`: Babel off the full mesh (relays and
  members behind symmetric NAT), a relay failing, the loop check at every route change;
  :mod:`meshd.sim.babel_cost_model`: the cost model for the sizes the real core is not
  run at.

docs/performance.md gives the figures, the calibration and what is modelled.
"""
