"""The trust layer: keys and signatures, issuer chains to the root, invites, secret key files.

* :mod:`meshd.trust.keys`: Ed25519 and X25519 keys, context-bound signatures, fingerprints.
* :mod:`meshd.trust.chain`: signature and issuer-chain checks against one trust root (pure).
* :mod:`meshd.trust.invites`: invites and their tokens (pure).
* :mod:`meshd.trust.keyfiles`: secret key files, written 0600 and refused when exposed.

The signed records themselves are :mod:`meshd.records`; who stands now is :mod:`meshd.membership`.
Nothing is imported here, so importing one module of the layer costs only that module.
"""
