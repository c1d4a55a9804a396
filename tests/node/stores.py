"""A store with something in it, for the store's tests."""

from __future__ import annotations

from meshd.membership import Membership
from meshd.node.store import Store
from tests.factory import T0, Net

NOW = T0 + 100


def populate(store: Store) -> tuple[Net, Membership]:
    """Fill ``store`` with a network's founder, three members (announcing twice each) and a
    revocation of the last one; return the network and the membership that holds the same."""
    net = Net()
    state = net.state()
    store.set_meta("network", net.network.raw)
    founder = net.founder()
    outcomes = [state.ingest(founder.credential, NOW)]
    for i in range(3):
        node = net.join(state, founder, net.invite(), f"m{i}", at=T0 + 10 + i)
        outcomes.append(state.ingest(node.credential, NOW))
        outcomes.append(state.ingest(node.announce(net, NOW), NOW))
        outcomes.append(state.ingest(node.announce(net, NOW + 1), NOW + 1))
    outcomes.append(state.ingest(net.revoke(node.key.public, at=T0 + 50), NOW))
    store.apply(outcomes)
    return net, state
