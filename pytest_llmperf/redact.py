"""Secrets out of everything the plugin writes: JSON, HTML, Markdown, history, benchmark JSON.

A results document carries the command line, spec strings (``?api_key=`` is a valid spec
option), backend options, environment details and server error messages. All of it passes
through :func:`redact` before any file is written. Three nets, because one is never enough:

- values of keys whose *name* says secret (``api_key``, ``authorization``,
  ``aws_secret_access_key``, ``password``, ``token`` ...), whatever their value;
- every string is scrubbed of the *values* of secret-looking environment variables
  (``OPENAI_API_KEY``, ``AWS_SECRET_ACCESS_KEY``, ``*_TOKEN`` ...), of every variable a spec
  names as holding a key (``?api_key_env=MYCORP_LLM_KEY``: :func:`register_spec_variables`),
  and of the AWS keys in the shared credentials and config files;
- shapes that are secrets wherever they appear: ``Authorization: Bearer ...``, ``sk-...`` keys,
  AWS access key ids, ``user:password@`` in URLs, ``api_key=...`` in query strings.
"""

from __future__ import annotations

import configparser
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MASK",
    "redact",
    "redact_text",
    "register_spec_variables",
    "register_variable",
    "secret_values",
]

MASK = "***"

_SECRET_NAME = re.compile(
    r"(api[_-]?key|apikey|authorization|auth[_-]?token|access[_-]?token|secret|password|passwd|"
    # "(?<!_per)": sec_per_token is a metric, not a secret.
    r"session[_-]?token|credential|private[_-]?key|^token$|(?<!_per)_token$)",
    re.IGNORECASE,
)
#: Variables whose names do not say "secret" but whose values are credentials all the same.
_SECRET_VARIABLES = frozenset({"AWS_ACCESS_KEY_ID"})
# Long enough not to mask everyday words that happen to be an environment variable's value.
_MIN_SECRET_LEN = 6
_PATTERNS = (
    # Authorization: Bearer xxx / Basic xxx (headers echoed in error messages)
    (
        re.compile(r"(?i)\b(authorization\b[\"']?\s*[:=]\s*[\"']?)(bearer|basic)?\s*[^\s\"',}]+"),
        rf"\1\2 {MASK}",
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"), f"Bearer {MASK}"),
    # OpenAI-style and similar provider keys
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), MASK),
    # AWS access key ids
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),
    # credentials in a URL: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.IGNORECASE), rf"\1{MASK}@"),
    # key=value pairs in query strings, spec options, command lines
    (
        re.compile(
            r"(?i)\b((?:api[_-]?key|apikey|access[_-]?token|token|secret|password|"
            r"aws_secret_access_key|aws_session_token)=)[^&\s\"']+"
        ),
        rf"\1{MASK}",
    ),
)


# Variables that specs named as holding credentials. Process-wide, because an error's text is
# redacted where pytest prints it (LLMPerfError.__str__), far from the backend that knows which
# variable holds its key. It holds names only, never values (those are read from the
# environment at each redaction, so a key set or rotated later is masked too), and it grows
# only by what the session's specs name.
_NAMED_VARIABLES: set[str] = set()
_NAMED_LOCK = threading.Lock()


def register_variable(name: str) -> None:
    """Mask the value of environment variable ``name`` from now on, whatever it is called."""
    with _NAMED_LOCK:
        _NAMED_VARIABLES.add(name)


def register_spec_variables(options: Mapping[str, object]) -> None:
    """Register every variable a backend's options name: each ``*_env`` option (``api_key_env``)
    names the environment variable holding a secret. Backends call this when constructed."""
    for key, value in options.items():
        if key.endswith("_env") and isinstance(value, str) and value:
            register_variable(value)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values worth masking wherever they appear: secret-named environment variables, those
    that specs named (:func:`register_variable`) and the AWS credentials in the shared
    credentials and config files (read without any network call)."""
    env = os.environ if environ is None else environ
    with _NAMED_LOCK:
        named = frozenset(_NAMED_VARIABLES)
    values = {
        v
        for k, v in env.items()
        if (_is_secret_name(k) or k.upper() in _SECRET_VARIABLES or k in named)
        and len(v) >= _MIN_SECRET_LEN
    }
    values |= _aws_profile_secrets(env)
    # Longest first, so a value containing another is masked whole.
    return sorted(values, key=len, reverse=True)


def _aws_profile_secrets(env: Mapping[str, str]) -> set[str]:
    # The files only, every profile in them (``?profile=`` picks any): botocore's full chain
    # would ask the instance metadata service over the network. Keys may sit in either file.
    paths = (
        env.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser("~/.aws/credentials"),
        env.get("AWS_CONFIG_FILE") or os.path.expanduser("~/.aws/config"),
    )
    found: set[str] = set()
    for path in paths:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error, UnicodeDecodeError):
            continue
        for section in parser.sections():
            for key, value in parser.items(section):
                secret = _SECRET_NAME.search(key) or key == "aws_access_key_id"
                if secret and len(value) >= _MIN_SECRET_LEN:
                    found.add(value)
    return found


def redact(document: Any, secrets: Iterable[str] | None = None) -> Any:
    """A copy of ``document`` (JSON-like: dicts, lists, strings, numbers) with secrets masked."""
    values = list(secret_values() if secrets is None else secrets)
    return _walk(document, values)


def redact_text(text: str) -> str:
    """``text`` with secrets masked (for error messages shown on the terminal)."""
    return _scrub(text, secret_values())


def _walk(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return _scrub(value, secrets)
    if isinstance(value, Mapping):
        # Keys too: baselines are keyed by test id, and a test id can hold a spec's URL.
        return {
            (_scrub(key, secrets) if isinstance(key, str) else key): MASK
            if _is_secret_name(key) and value[key] not in (None, "")
            else _walk(value[key], secrets)
            for key in value
        }
    if isinstance(value, (list, tuple)):
        return [_walk(item, secrets) for item in value]
    return value


def _is_secret_name(key: object) -> bool:
    # "api_key_env" names the variable that holds a key, which is worth keeping.
    return isinstance(key, str) and bool(_SECRET_NAME.search(key)) and not key.endswith("_env")


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
