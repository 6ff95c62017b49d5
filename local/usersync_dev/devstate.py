"""Dev-only state kept under the git-ignored `.local/` folder, so every `usersync-dev` command agrees
with the running local stack: a dev RSA key (stands in for the Clerk instance's JWT key), a dev
`whsec_` secret (stands in for the Svix endpoint secret), and where the running stack listens.

Generated once on first use and reused, so tokens and signed webhooks keep working across restarts.
`USERSYNC_DEV_HOME` moves the folder (the tests use a temporary one so they never touch yours).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from usersync_dev.clerk import SigningKey, new_webhook_secret
from usersync_dev.local_aws import REGION
from usersync_dev.template import REPO_ROOT

STATE_DIR_ENV = "USERSYNC_DEV_HOME"
SECRETS_FILE = "dev-secrets.json"
STACK_FILE = "stack.json"

# The session tokens `usersync-dev token` mints and the local authorizer accepts. A `.localhost` name
# can never resolve to a real Clerk instance; the azp is the usual local front-end origin.
DEV_ISSUER = "https://clerk.usersync.localhost"
DEV_AUTHORIZED_PARTY = "http://localhost:3000"
DEV_KID = "ins_usersync_dev"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000


def state_dir() -> Path:
    configured = os.environ.get(STATE_DIR_ENV, "").strip()
    return Path(configured) if configured else REPO_ROOT / ".local"


def _write_private(path: Path, text: str, *, exclusive: bool) -> bool:
    """Write `text` to `path` readable by the owner only, atomically. With `exclusive`, never replace
    an existing file (two first runs racing keep one winner's secrets); returns whether it wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o600)
        if not exclusive:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)  # fails if the file exists: an atomic create-if-absent
        except FileExistsError:
            return False
        return True
    finally:
        Path(temporary).unlink(missing_ok=True)


@dataclass(frozen=True)
class DevSecrets:
    signing_key: SigningKey
    webhook_secret: str

    def public_pem(self) -> str:
        return self.signing_key.public_pem()


def dev_secrets(directory: Path | None = None) -> DevSecrets:
    """The dev key and webhook secret, generated and stored on first use."""
    path = (directory or state_dir()) / SECRETS_FILE
    if not path.exists():
        key = SigningKey.generate(DEV_KID)
        document = {
            "kid": key.kid,
            "privateKeyPem": key.private_pem().decode(),
            "webhookSecret": new_webhook_secret(),
        }
        _write_private(path, json.dumps(document, indent=2) + "\n", exclusive=True)
    stored = json.loads(path.read_text(encoding="utf-8"))
    return DevSecrets(
        signing_key=SigningKey.from_pem(stored["privateKeyPem"].encode(), stored["kid"]),
        webhook_secret=stored["webhookSecret"],
    )


@dataclass(frozen=True)
class StackInfo:
    """Where a running `usersync-dev serve` listens."""

    pid: int
    gateway_url: str
    moto_endpoint: str
    table_name: str
    region: str = REGION
    organizations_table_name: str = ""


def write_stack_info(info: StackInfo, directory: Path | None = None) -> Path:
    path = (directory or state_dir()) / STACK_FILE
    _write_private(path, json.dumps(asdict(info), indent=2) + "\n", exclusive=False)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_stack(directory: Path | None = None) -> StackInfo | None:
    """The stack recorded in the state folder if its process is still alive, else None."""
    path = (directory or state_dir()) / STACK_FILE
    try:
        info = StackInfo(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return info if _alive(info.pid) else None


def clear_stack_info(pid: int, directory: Path | None = None) -> None:
    """Remove the record, if it is still this process's (a newer stack may have replaced it)."""
    path = (directory or state_dir()) / STACK_FILE
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass
