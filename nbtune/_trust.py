"""Signed study definitions: a study's database holds results and definitions, never commands.

The stored spec says which script, interpreter, environment variables and folders a worker uses,
so whoever can write the study's tables (a shared lab database, a leaked password) could make
every ``nbtune worker`` run a command of their choosing. nbtune therefore signs the spec with a
key that never enters the database (HMAC-SHA256 over the study's name and its spec, as Jupyter
signs notebooks), and every path that executes a stored definition checks the signature first:
a database writer alone cannot forge it.

The key is a file of 32 random bytes, readable by its owner only: ``$NBTUNE_KEY_FILE``, else
``$XDG_CONFIG_HOME/nbtune/signing.key``, else ``~/.config/nbtune/signing.key``. It is made the
first time a study is created. Workers on other machines need the same key: a shared home
folder (the usual case on a cluster) or a copy of the file, or ``NBTUNE_KEY_FILE`` pointing at
one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

import optuna

from nbtune import _attrs
from nbtune._errors import NbtuneError
from nbtune._spec import StudySpec

KEY_ENV = "NBTUNE_KEY_FILE"
_PURPOSE = b"nbtune study spec v1\n"


class UntrustedSpecError(NbtuneError):
    """A study's stored definition is not signed with this machine's key (or was changed)."""


def key_path() -> Path:
    """Where the signing key is kept (see the module docstring)."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "nbtune" / "signing.key"


def load_key(*, create: bool) -> bytes:
    """Read the signing key, making it (owner-only) when ``create`` and it does not exist.

    Raises:
        UntrustedSpecError: When there is no key and ``create`` is false, or it is unreadable.
    """
    path = key_path()
    if not path.exists() and create:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "wb") as file:
                file.write(secrets.token_bytes(32))
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise UntrustedSpecError(
            f"there is no nbtune signing key on this machine ({path}), so the study's definition "
            "cannot be checked. Copy the key file of the machine that created the study there "
            f"(or set {KEY_ENV} to its path)."
        ) from None
    except OSError as exc:
        raise UntrustedSpecError(f"cannot read the nbtune signing key {path}: {exc}") from None
    if len(key) < 16:
        raise UntrustedSpecError(f"the nbtune signing key {path} is too short: delete it.")
    return key


def key_id(key: bytes) -> str:
    """A short public name of a key, to tell keys apart in messages."""
    return hashlib.sha256(key).hexdigest()[:8]


def _mac(key: bytes, study_name: str, raw_spec: str) -> str:
    message = _PURPOSE + study_name.encode() + b"\n" + raw_spec.encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def store_spec(study: optuna.Study, spec: StudySpec) -> None:
    """Store a spec with its signature (making the key if this machine has none yet)."""
    key = load_key(create=True)
    raw = spec.to_json()
    study.set_user_attr(_attrs.STUDY_SPEC, raw)
    signature = {"hmac": _mac(key, study.study_name, raw), "key": key_id(key)}
    study.set_user_attr(_attrs.SPEC_SIGNATURE, signature)


def signature_problem(study_name: str, user_attrs: dict[str, Any]) -> str | None:
    """Why the stored spec cannot be trusted on this machine, or ``None`` when it can.

    Args:
        study_name: The study's name (part of what is signed).
        user_attrs: The study's user attributes.
    """
    raw = user_attrs.get(_attrs.STUDY_SPEC)
    if raw is None:
        return "the study has no nbtune definition"
    signature = user_attrs.get(_attrs.SPEC_SIGNATURE)
    if not isinstance(signature, dict) or not isinstance(signature.get("hmac"), str):
        return "its stored definition is not signed (it was written by an older nbtune, or by hand)"
    try:
        key = load_key(create=False)
    except UntrustedSpecError as exc:
        return str(exc)
    if hmac.compare_digest(signature["hmac"], _mac(key, study_name, raw)):
        return None
    if signature.get("key") != key_id(key):
        return (
            f"its stored definition was signed with another key (key {signature.get('key')}; "
            f"this machine's key {key_path()} is {key_id(key)}): copy the key of the machine "
            f"that created the study here, or set {KEY_ENV}"
        )
    return "its stored definition was changed since it was signed (outside nbtune)"


def trusted_spec(study: optuna.Study) -> StudySpec:
    """The study's spec, after checking its signature.

    Raises:
        UntrustedSpecError: When the signature is missing, made with another key, or does not
            match (the definition was edited in the database).
    """
    problem = signature_problem(study.study_name, study.user_attrs)
    if problem is not None:
        raise UntrustedSpecError(untrusted_message(study.study_name, problem))
    return StudySpec.from_json(study.user_attrs[_attrs.STUDY_SPEC])


def untrusted_message(study_name: str, problem: str) -> str:
    """The refusal to run a study whose definition cannot be trusted, with the ways out."""
    return (
        f"study {study_name!r} will not run here: {problem}. Whoever can write the study's "
        "database could otherwise choose what runs on this machine. If you recognize the "
        "definition, `nbtune trust --storage URL --study NAME` shows it and signs it with this "
        "machine's key; or continue it from your own code or config file with "
        "override_spec=True (--override-spec), which stores your definition."
    )


def describe_for_review(raw_spec: str) -> list[str]:
    """The parts of a stored spec that decide what runs, one line each (for `nbtune trust`)."""
    spec = StudySpec.from_json(raw_spec)
    return [
        f"script       {spec.script} (sha256 {spec.script_sha256[:16]}...)",
        f"interpreter  {spec.interpreter}",
        f"environment  {json.dumps(spec.env or {}, sort_keys=True)}",
        f"runs folder  {spec.runs_dir}",
        f"flags        {', '.join(sorted((spec.space or {}).keys())) or '-'}",
    ]
