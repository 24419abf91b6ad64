"""The supervisor's console: ``/console`` on the sidecar's port (see docs/console.md).

:mod:`~cxguard.runtime.console.state` is what a tenant's page shows (sans I/O),
:mod:`~cxguard.runtime.console.hub` feeds it from the running services and pushes updates,
:mod:`~cxguard.runtime.console.web` serves the page, its snapshot and the live websocket.
"""
