"""Signing keys: a cache entry is loaded only if a key its reader trusts signed it.

Each user has a secret key (32 random bytes, hex) in a file outside every cache
directory: ``$NDUSTRIA_SECRET_KEY_FILE``, else ``<platformdirs user data dir>/ndustria/secret.key``,
created with mode 0600 on first use. A writer signs each entry with HMAC-SHA256 over
the entry's key, the SHA-256 of its pickle bytes and its checksums. A reader
accepts an entry only if the signature checks with its own key or a trusted one:
the config file's ``trusted_keys`` (a key file, a directory of key files, or a list of
them). Trusting a key file means trusting everyone who can read it (HMAC keys are
secret and symmetric): a team shares one key file among its members.

So a cache directory others can write to (a shared cluster filesystem) cannot make a
user unpickle bytes that no trusted key signed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from ndustria.atomic import publish_whole, read_whole
from ndustria.config import read_config_file
from ndustria.errors import ConfigError, NdustriaWarning

__all__ = ["ENV_KEY_FILE", "Keyring", "key_id", "load_keyring", "read_key", "secret_key_path"]

ENV_KEY_FILE = "NDUSTRIA_SECRET_KEY_FILE"


def secret_key_path() -> Path:
    """Where this user's secret key lives (``$NDUSTRIA_SECRET_KEY_FILE`` overrides)."""
    override = os.environ.get(ENV_KEY_FILE)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("ndustria")) / "secret.key"


def key_id(key: bytes) -> str:
    """A short public name of a key (it reveals nothing of the key)."""
    return hashlib.sha256(b"ndustria-key-id:" + key).hexdigest()[:16]


def read_key(path: Path) -> bytes:
    """Read a key file (hex text); raises ConfigError if it is not one (after reading it again for a
    moment, in case another process is still writing it)."""
    def parse(data: bytes) -> bytes:
        key = bytes.fromhex(data.decode("ascii").strip())
        if len(key) < 16:
            raise ValueError(f"holds {len(key)} bytes; a key has at least 16")
        return key

    def fail(exc: ValueError) -> ConfigError:
        why = str(exc) if str(exc).startswith("holds") else f"is not a key ({exc})"
        return ConfigError(f"the ndustria key file {path} {why}. A key file holds one line of hex; your own "
                           "is made on first use (remove a damaged one to get a new key)")

    try:
        return read_whole(path, parse, fail=fail)
    except OSError as exc:
        raise ConfigError(f"cannot read the ndustria key file {path}: {exc}") from exc


def _own_key(path: Path) -> bytes:
    if not path.exists():
        _create_key(path)
    mode = path.stat().st_mode
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(f"the ndustria secret key {path} is readable by others (mode {stat.filemode(mode)}); "
                      f"anyone who can read it can make you load their results. Run: chmod 600 {path}",
                      NdustriaWarning, stacklevel=3)
    return read_key(path)


def _create_key(path: Path) -> None:
    """Write a new key whole, then publish it with link(): a process starting at the same moment sees
    either no key file or a complete one, never an empty one, and the first writer wins (the others
    read its key)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    publish_whole(path, secrets.token_hex(32) + "\n", mode=0o600)


def _trusted_files() -> list[Path]:
    value = read_config_file().get("trusted_keys")
    if value in (None, ""):
        return []
    items = value if isinstance(value, list) else [value]
    files: list[Path] = []
    for item in items:
        path = Path(os.path.expandvars(str(item))).expanduser()
        # In a folder, hidden files are not keys: a key being made there is a hidden temporary file first.
        files += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) \
            if path.is_dir() else [path]
    return files


@dataclass
class Keyring:
    """The key this process signs with, and every key whose signatures it accepts (by id)."""

    key: bytes
    trusted: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.signer = key_id(self.key)
        self.trusted.setdefault(self.signer, self.key)

    def sign(self, message: bytes) -> str:
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def check(self, signer: str, signature: str, message: bytes) -> bool:
        """Whether ``signature`` is a valid signature of ``message`` by trusted key ``signer``."""
        key = self.trusted.get(signer)
        if key is None:
            return False
        return hmac.compare_digest(hmac.new(key, message, hashlib.sha256).hexdigest(), signature)


def load_keyring() -> Keyring:
    """This user's key (created on first use) and the configured trusted keys."""
    own = _own_key(secret_key_path())
    trusted = {}
    for path in _trusted_files():
        key = read_key(path)
        trusted[key_id(key)] = key
    return Keyring(own, trusted)
