"""Keys of the ssh transport: the guest's host key (one per build, kept beside it in the
cache, generated with dropbearkey) and the harness's client key (a fresh one per boot,
held in memory only)."""

from __future__ import annotations

import base64
import io
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import BuildError, UsageError

if TYPE_CHECKING:  # paramiko is imported where a key is used: only ssh boots pay for it
    import paramiko

KEY_TYPE = "ssh-ed25519"
HOST_KEY_NAME = "dropbear_ed25519_host_key"


@dataclass(frozen=True)
class HostKey:
    """The guest sshd's key pair: ``private`` is a dropbear key file, ``public`` its
    OpenSSH form (``ssh-ed25519 AAAA...``)."""

    private: Path
    public: str

    def pkey(self) -> paramiko.PKey:
        import paramiko

        return paramiko.Ed25519Key(data=base64.b64decode(self.public.split()[1]))


@dataclass(frozen=True)
class ClientKey:
    """The harness's key for one boot; ``public_blob`` goes on the guest's command line."""

    pkey: paramiko.Ed25519Key
    private_openssh: str

    @property
    def public_blob(self) -> str:
        return self.pkey.get_base64()

    @property
    def public_line(self) -> str:
        return f"{KEY_TYPE} {self.public_blob}"


def new_client_key() -> ClientKey:
    """A fresh ed25519 key pair (never written to disk by the harness)."""
    import paramiko
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    text = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()).decode()
    return ClientKey(paramiko.Ed25519Key.from_private_key(io.StringIO(text)), text)


def host_key(directory: Path, dropbearkey: str = "dropbearkey") -> HostKey:
    """The host key kept in ``directory`` (mode 700), generated on first use.

    Concurrent first uses agree: each generates a candidate and links it into place; the
    first link wins and the others use it."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = directory / HOST_KEY_NAME
    if not path.is_file():
        if shutil.which(dropbearkey) is None:
            raise UsageError(f"{dropbearkey} not found: install dropbear-bin")
        candidate = directory / f"{HOST_KEY_NAME}.tmp{os.getpid()}-{secrets.token_hex(4)}"
        candidate.unlink(missing_ok=True)
        result = subprocess.run([dropbearkey, "-t", "ed25519", "-f", str(candidate)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            candidate.unlink(missing_ok=True)
            raise BuildError(f"dropbearkey could not generate a host key in {directory}",
                             result.stderr)
        candidate.chmod(0o600)
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass
        candidate.unlink()
    return HostKey(path, public_key(path, dropbearkey))


def public_key(private: Path, dropbearkey: str = "dropbearkey") -> str:
    """``ssh-ed25519 AAAA...`` of a dropbear private key file."""
    result = subprocess.run([dropbearkey, "-y", "-f", str(private)], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        if line.startswith(KEY_TYPE + " "):
            return " ".join(line.split()[:2])
    raise BuildError(f"dropbearkey -y could not read the host key {private}",
                     result.stderr or result.stdout)
