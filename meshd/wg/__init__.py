"""WireGuard: values, the UAPI codec, the reconciler (pure) and the backends (shells).

Pure: :mod:`~meshd.wg.model`, :mod:`~meshd.wg.addresses`, the UAPI codec
(:mod:`~meshd.wg.uapi_syntax`, :mod:`~meshd.wg.uapi_reply`, :mod:`~meshd.wg.uapi_request`),
:mod:`~meshd.wg.reconcile`. Shells: :mod:`~meshd.wg.uapi`, :mod:`~meshd.wg.netlink` and the
``backend_*`` modules. See docs/wireguard.md.
"""
