"""Key custody: the only code in the project that reads the Stark (L2) private key.

Sources, first match wins:

1. ``PARADEX_L2_PRIVATE_KEY`` -- hex (``0x...``) or decimal;
2. ``PARADEX_L2_PRIVATE_KEY_FILE`` -- a file holding that text; refused if group or others may read
   it (``chmod 600``), if it is not a regular file, or if it is empty;
3. ``PARADEX_L1_PRIVATE_KEY`` / ``PARADEX_L1_PRIVATE_KEY_FILE`` -- an Ethereum key from which the L2
   key is derived as paradex-py does (EIP-712 ``STARK Key`` signature, grinding; paradex-api.md
   §6.2.5); needs the venue's ``l1_chain_id``. Its L1 address is also used for onboarding;
4. simulator mode only (``PARADEX_ENV=sim``): a development key generated once with ``secrets`` and
   kept in ``<SIGNER_KEY_DIR>/dev_key`` (directory 0700, file 0600), reused on every later start.

Variables holding key text are removed from ``os.environ`` once read, so child processes and
``os.environ`` dumps never see them. The key lives in a ``KeyCustody`` whose ``repr``/``str`` are
redacted and which refuses to be pickled or copied. ``harden_process`` turns core dumps off and
marks the process non-dumpable (no ptrace attach or ``/proc/<pid>/mem`` reads by other processes of
the same user). No error message raised here contains key material.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import secrets
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.paradex import signing

log = logging.getLogger("signer.custody")

L2_KEY_ENV = "PARADEX_L2_PRIVATE_KEY"
L2_KEY_FILE_ENV = "PARADEX_L2_PRIVATE_KEY_FILE"
L1_KEY_ENV = "PARADEX_L1_PRIVATE_KEY"
L1_KEY_FILE_ENV = "PARADEX_L1_PRIVATE_KEY_FILE"
DEV_KEY_NAME = "dev_key"
_PR_SET_DUMPABLE = 4


class KeyLoadError(RuntimeError):
    """The key could not be loaded; the message says why and never contains key material."""


class KeyCustody:
    """Holds the private key; hands out signatures and the public key, never the key itself."""

    __slots__ = ("_key", "public_key", "source")

    def __init__(self, private_key: int, source: str) -> None:
        if not 0 < private_key < signing.EC_ORDER:
            raise KeyLoadError(f"the private key from {source} is not in the STARK curve's range")
        self._key = private_key
        self.public_key = signing.public_key(private_key)
        self.source = source

    def sign(self, msg_hash: int) -> tuple[int, int]:
        return signing.sign(msg_hash, self._key)

    def warm_up(self) -> None:
        """Build the signing tables now rather than on the first request."""
        self.sign(1)

    def __repr__(self) -> str:
        return f"KeyCustody(public_key={hex(self.public_key)}, source={self.source!r}, private_key=<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("KeyCustody cannot be pickled")

    def __copy__(self) -> KeyCustody:
        raise TypeError("KeyCustody cannot be copied")

    def __deepcopy__(self, memo: dict[int, object]) -> KeyCustody:
        raise TypeError("KeyCustody cannot be copied")


@dataclass(frozen=True)
class LoadedKey:
    custody: KeyCustody
    l1_address: str | None  # derived from an L1 key when one was the source


def harden_process() -> None:
    """No core dumps; not dumpable (Linux). Best effort: failures are logged, not fatal."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError) as exc:
        log.warning("could not disable core dumps: %s", exc)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
                log.warning("prctl(PR_SET_DUMPABLE, 0) failed: errno %d", ctypes.get_errno())
        except (OSError, AttributeError) as exc:
            log.warning("could not mark the process non-dumpable: %s", exc)


def parse_key_text(text: str, source: str) -> int:
    """``0x``-hex or decimal text -> int. The error names the source, never the text."""
    raw = text.strip()
    try:
        if raw.lower().startswith("0x"):
            value = int(raw[2:], 16)
        elif raw and all(c in "0123456789abcdefABCDEF" for c in raw) and not raw.isdigit():
            value = int(raw, 16)
        else:
            value = int(raw, 10)
    except ValueError:
        raise KeyLoadError(f"{source} does not hold a hex or decimal integer") from None
    return value


def read_secret_file(path: str, what: str) -> str:
    """Read a key file, refusing one that others may read."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise KeyLoadError(f"{what} {path}: cannot stat ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyLoadError(f"{what} {path} is not a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyLoadError(
            f"{what} {path} is accessible by group/others (mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}"
        )
    try:
        text = p.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyLoadError(f"{what} {path}: cannot read ({type(exc).__name__})") from None
    if not text.strip():
        raise KeyLoadError(f"{what} {path} is empty")
    return text


def _take_env(env: dict[str, str], name: str) -> str | None:
    value = env.get(name) or None
    env.pop(name, None)
    if env is not os.environ:
        os.environ.pop(name, None)
    return value


def load_key(
    *,
    paradex_env: str,
    key_dir: str,
    l1_chain_id: Callable[[], int] | None = None,
    env: dict[str, str] | None = None,
) -> LoadedKey:
    """Load the key from the first configured source (see the module docstring).

    ``env`` defaults to ``os.environ`` (and key variables are removed from it). ``l1_chain_id``
    is called only when the key is derived from an L1 key.
    """
    e: dict[str, str] = os.environ if env is None else env  # type: ignore[assignment]
    l2_text = _take_env(e, L2_KEY_ENV)
    l2_file = e.get(L2_KEY_FILE_ENV) or None
    l1_text = _take_env(e, L1_KEY_ENV)
    l1_file = e.get(L1_KEY_FILE_ENV) or None

    if l2_text is not None:
        return LoadedKey(KeyCustody(parse_key_text(l2_text, L2_KEY_ENV), L2_KEY_ENV), None)
    if l2_file is not None:
        text = read_secret_file(l2_file, L2_KEY_FILE_ENV)
        return LoadedKey(KeyCustody(parse_key_text(text, L2_KEY_FILE_ENV), f"file {l2_file}"), None)
    if l1_text is not None or l1_file is not None:
        if l1_text is None:
            assert l1_file is not None
            l1_text = read_secret_file(l1_file, L1_KEY_FILE_ENV).strip()
        if l1_chain_id is None:
            raise KeyLoadError("deriving the L2 key from an L1 key needs the venue's l1_chain_id")
        return _derive_from_l1(l1_text.strip(), l1_chain_id())
    if paradex_env == "sim":
        return LoadedKey(KeyCustody(_dev_key(Path(key_dir)), f"dev key {Path(key_dir) / DEV_KEY_NAME}"), None)
    raise KeyLoadError(
        f"no key configured for PARADEX_ENV={paradex_env}: set {L2_KEY_FILE_ENV} (a chmod 600 file), "
        f"{L2_KEY_ENV}, or {L1_KEY_ENV}"
    )


def _derive_from_l1(l1_key: str, chain_id: int) -> LoadedKey:
    from eth_account import Account

    try:
        address = Account.from_key(l1_key).address
        l2 = signing.l2_key_from_eth_key(l1_key, chain_id)
    except (ValueError, TypeError) as exc:
        raise KeyLoadError(f"{L1_KEY_ENV} is not a valid Ethereum private key ({type(exc).__name__})") from None
    return LoadedKey(KeyCustody(l2, f"derived from the L1 key (l1_chain_id {chain_id})"), address)


def _dev_key(key_dir: Path) -> int:
    """Load ``dev_key`` from ``key_dir``, creating it (0600, in a 0700 directory) the first time."""
    key_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        key_dir.chmod(0o700)
    path = key_dir / DEV_KEY_NAME
    if not path.exists():
        key = secrets.randbelow(signing.EC_ORDER - 1) + 1
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another instance created it first; read theirs below
        else:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(hex(key) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            log.warning("generated a development key in %s (simulator mode only; never use it on a real venue)", path)
    return parse_key_text(read_secret_file(str(path), "dev key"), f"dev key {path}")
