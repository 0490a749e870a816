"""The Forge remote endpoint: ``forge-runner serve``.

    settings.py   the ``[serve]`` section of the config
    fit.py        Forge Invocation Token verification against a cached JWKS
    tokens.py     the freshest system token of each installation (memory only)
    loopback.py   those tokens handed to jobs on this host, over 127.0.0.1 only
    nightly.py    a job template run once per installation
    triggers.py   one run per installation and interval; no overlapping runs
    server.py     the aiohttp application and ``serve_remote``

Nothing is imported here, so a module that needs only ``settings`` (``forge-runner run``
checking a ``[serve]`` table) loads nothing of the server; each is imported by its own name.
"""
