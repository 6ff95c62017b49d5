"""Lambda SnapStart: what must differ between environments restored from the same snapshot.

With SnapStart (template parameter `SnapStart`), Lambda runs the init phase once per published
version, snapshots the memory, and resumes every new execution environment from that snapshot: any
state drawn at init is shared by all of them. Lambda's Python runtime offers `snapshot_restore_py`
to run code after each restore; outside Lambda (tests, local stack, bench) that module does not
exist and nothing is registered.

Renewed after restore:
- `random`'s generator: seeded at import, it would hand every restored environment the same
  sequence (jitter, sampling). `secrets`, `uuid.uuid4` and `os.urandom` read the kernel's entropy
  on every call and need nothing.
Nothing else needs it: init makes no AWS call (clients are created, no connection is opened, the
webhook secret is fetched on the first request), so no socket, credential or secret crosses the
snapshot.
"""

from __future__ import annotations

import random
from collections.abc import Callable

AfterRestoreHook = Callable[[], None]


def renew_after_restore() -> None:
    """Reseed `random` from the kernel's entropy pool (`random.seed()` with no argument)."""
    random.seed()


def register(registrar: Callable[[AfterRestoreHook], object] | None = None) -> bool:
    """Register `renew_after_restore` with the runtime; False where SnapStart's module is absent."""
    if registrar is None:
        try:
            import snapshot_restore_py  # type: ignore[import-not-found]  # Lambda's Python runtime only
        except ImportError:
            return False
        registrar = snapshot_restore_py.register_after_restore
    assert registrar is not None
    registrar(renew_after_restore)
    return True


REGISTERED = register()
