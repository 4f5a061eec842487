"""Keys that never leave a PKCS#11 token (an HSM, a smart card, SoftHSM2).

A key is named by an RFC 7512 URI, ``pkcs11:token=release-a;object=root-1``. Parsing is
pure (:func:`parse_uri`); everything else opens the module with python-pkcs11 (the library
securesystemslib's own ``HSMSigner`` uses), imported only when a token is touched.

Signing goes through securesystemslib's ``HSMSigner`` for ECDSA P-256 keys (the signer
class the issue asks us to prefer); it has no Ed25519, no RFC 7512 lookup and no key
generation, so those use python-pkcs11 directly (``CKM_EDDSA``, ``C_GenerateKeyPair``).

The PIN is tried **once** per token and process: a wrong PIN stops the command before a
second login, so oemkit never burns more than one try of the token's lockout counter, and
it refuses to spend a token's last try unless a person typed the PIN at the prompt.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from oemkit.errors import EnvironmentProblem, InputError, UsageError

if TYPE_CHECKING:
    from oemkit.crypto.keys import PrivateKeyInfo, PublicKey

SCHEME = "pkcs11"
#: RFC 7512 path attributes oemkit matches on; any other is refused (a typo such as
#: ``objet=`` must not silently select "the only key on the token").
PATH_ATTRS = ("token", "object", "id", "type", "serial", "manufacturer", "model",
              "library-manufacturer", "library-description", "library-version", "slot-id",
              "slot-description", "slot-manufacturer")
QUERY_ATTRS = ("pin-source", "pin-value", "module-path", "module-name")
#: Environment variables: the PIN for every token, and the module.
PIN_ENV = "OEMKIT_PKCS11_PIN"
MODULE_ENV = "OEMKIT_PKCS11_MODULE"
#: Where Debian and friends install the modules users most often mean (named in hints).
KNOWN_MODULES = ("/usr/lib/softhsm/libsofthsm2.so",
                 "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                 "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
                 "/usr/lib/x86_64-linux-gnu/libykcs11.so",
                 "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so")
#: The application name on the data object that records a token key's oemkit usage.
USAGE_APPLICATION = "oemkit usage"
ED25519_OIDS = ("1.3.101.112",)
P256_OID = "1.2.840.10045.3.1.7"

# --------------------------------------------------------------------------- the URI (pure)


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed RFC 7512 URI: path attributes that select a token and an object, and the
    query attributes oemkit reads (PIN source, module)."""

    text: str
    path: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)

    @property
    def token(self) -> str | None:
        """The token label, if the URI names one."""
        return self.path.get("token")

    @property
    def object(self) -> str | None:
        """The object label (``CKA_LABEL``), if the URI names one."""
        return self.path.get("object")

    @property
    def id(self) -> bytes | None:
        """The object id (``CKA_ID``, percent-decoded bytes), if the URI names one."""
        raw = self._raw.get("id")
        return None if raw is None else unquote_bytes(raw)

    @property
    def _raw(self) -> dict[str, str]:
        body = self.text[len(SCHEME) + 1:].split("?", 1)[0]
        return dict(part.split("=", 1) for part in body.split(";") if "=" in part)

    def where(self) -> str:
        """A short description for messages: ``token 'a', object 'b'``."""
        bits = [f"token {self.token!r}" if self.token else "any token"]
        if self.object:
            bits.append(f"object {self.object!r}")
        if self.id is not None:
            bits.append(f"id {self.id.hex()}")
        return ", ".join(bits)


def is_uri(ref: str) -> bool:
    """Whether ``ref`` is a PKCS#11 URI (and not a file path)."""
    return ref.startswith(SCHEME + ":")


def unquote_bytes(value: str) -> bytes:
    """Percent-decode ``value`` to bytes (``%01%02`` is ``b"\\x01\\x02"``)."""
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(value)


def parse_uri(text: str) -> Pkcs11Uri:
    """Parse ``pkcs11:attr=value;…?attr=value&…`` (RFC 7512); values are percent-decoded.

    Raises:
        UsageError: E_KEY_URI for another scheme, an attribute without ``=``, a repeated
            or unknown attribute, or both ``pin-source`` and ``pin-value``.
    """
    def bad(why: str, hint: str = "write it as pkcs11:token=LABEL;object=KEY") -> UsageError:
        return UsageError("E_KEY_URI", f"{text[:120]!r} is not a usable PKCS#11 URI: {why}",
                          hint=hint)

    if not is_uri(text):
        raise bad("it does not start with 'pkcs11:'")
    body, _, query_text = text[len(SCHEME) + 1:].partition("?")
    path: dict[str, str] = {}
    query: dict[str, str] = {}
    for part, sep, target, known in ((body, ";", path, PATH_ATTRS),
                                     (query_text, "&", query, QUERY_ATTRS)):
        for item in filter(None, part.split(sep)):
            name, eq, value = item.partition("=")
            name = name.strip().lower()
            if not eq:
                raise bad(f"{item!r} has no '='")
            if name in target:
                raise bad(f"{name!r} is given twice")
            if name not in known and not name.startswith("x-"):
                raise bad(f"unknown attribute {name!r}",
                          hint=f"oemkit reads {', '.join(known)}")
            target[name] = unquote(value)
    if "pin-source" in query and "pin-value" in query:
        raise bad("it gives both pin-source and pin-value", hint="keep one of them")
    if path.get("type", "private") not in ("private", "public"):
        raise bad(f"type={path['type']!r} names no key half",
                  hint="leave type out, or use type=private")
    return Pkcs11Uri(text, path, query)


def from_hsm_uri(text: str) -> str:
    """securesystemslib's HSMSigner URI, ``hsm:[KEYID][?label=TOKEN]``, as the RFC 7512 URI
    of the same key (``CKA_ID`` the key id's minimal big-endian bytes; HSMSigner's default
    key id is 2, PIV slot 9c).

    Raises:
        UsageError: E_KEY_URI when the key id is not a number.
    """
    from urllib.parse import parse_qsl, quote, urlparse

    parts = urlparse(text)
    try:
        number = int(parts.path) if parts.path else 2
    except ValueError:
        raise UsageError("E_KEY_URI", f"{text[:80]!r}: the key id after 'hsm:' is not a "
                         "number", hint="write hsm:2?label=TOKEN") from None
    raw = number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")
    label = dict(parse_qsl(parts.query)).get("label")
    uri = f"{SCHEME}:id={quote(raw, safe='')}"
    return uri + (f";token={quote(label, safe='')}" if label else "")


def token_uri(label: str, object_label: str | None = None) -> str:
    """The URI oemkit prints for a key: ``pkcs11:token=LABEL;object=NAME``, percent-encoded."""
    from urllib.parse import quote

    uri = f"{SCHEME}:token={quote(label, safe='')}"
    return uri + (f";object={quote(object_label, safe='')}" if object_label else "")


# --------------------------------------------------------------------------- access (I/O)


@dataclass
class TokenAccess:
    """How to reach tokens: the module path and where a PIN comes from.

    ``module`` is ``--pkcs11-module`` (else the URI's ``module-path``, else
    ``$OEMKIT_PKCS11_MODULE``); ``pin`` is ``--pin-file``'s content (else the URI's
    ``pin-source``/``pin-value``, else ``$OEMKIT_PKCS11_PIN``, else a prompt on a
    terminal). PINs are remembered per token for the life of this object, so a command
    that signs twice asks (and logs in with a wrong PIN) once.
    """

    module: str | None = None
    pin: str | None = None
    prompt: Callable[[str], str] | None = None
    _pins: dict[str, str] = field(default_factory=dict)
    _failed: set[str] = field(default_factory=set)

    def module_for(self, uri: Pkcs11Uri) -> str:
        """The module path for ``uri``.

        Raises:
            UsageError: E_PKCS11_NO_MODULE when no module is named anywhere.
            EnvironmentProblem: E_PKCS11_MODULE when the named file does not exist.
        """
        path = self.module or uri.query.get("module-path") or os.environ.get(MODULE_ENV)
        if not path:
            found = [m for m in KNOWN_MODULES if os.path.exists(m)]
            raise UsageError(
                "E_PKCS11_NO_MODULE", f"no PKCS#11 module for {uri.where()}",
                hint="pass --pkcs11-module or set OEMKIT_PKCS11_MODULE"
                     + (f" (this host has {', '.join(found)})" if found else ""))
        if not os.path.isfile(path):
            raise EnvironmentProblem(
                "E_PKCS11_MODULE", f"PKCS#11 module {path} does not exist",
                hint="install the token's PKCS#11 library, or correct --pkcs11-module / "
                     "OEMKIT_PKCS11_MODULE")
        return path

    def pin_for(self, uri: Pkcs11Uri, token_label: str, *, final_try: bool) -> str:
        """The PIN for ``token_label`` (once per token), from the sources in order.

        Raises:
            InputError: E_PKCS11_PIN_REQUIRED with no source and no terminal;
                E_NOT_FOUND for a missing ``pin-source`` file.
            EnvironmentProblem: E_PKCS11_PIN_LOCKED when the token has one try left and
                the PIN did not come from a person at the prompt.
        """
        if token_label in self._pins:
            return self._pins[token_label]
        pin = self.pin
        if pin is None and "pin-source" in uri.query:
            pin = read_pin_file(_pin_source_path(uri.query["pin-source"]))
        if pin is None:
            pin = uri.query.get("pin-value")
        if pin is None:
            pin = os.environ.get(PIN_ENV) or None
        typed = False
        if pin is None:
            if self.prompt is None:
                raise InputError(
                    "E_PKCS11_PIN_REQUIRED", f"no PIN for token {token_label!r}",
                    hint="pass --pin-file, set OEMKIT_PKCS11_PIN, or run in a terminal to "
                         "be asked")
            if final_try:
                sys.stderr.write(f"WARNING: token {token_label!r} has ONE PIN try left; a "
                                 "wrong PIN locks it.\n")
            pin = self.prompt(f"PIN for token {token_label!r}: ")
            typed = True
        if final_try and not typed:
            raise EnvironmentProblem(
                "E_PKCS11_PIN_LOCKED", f"token {token_label!r} has one PIN try left; oemkit "
                "will not spend it with a PIN it did not see typed",
                hint="run in a terminal and type the PIN, or reset the try counter with the "
                     "token's SO PIN")
        self._pins[token_label] = pin
        return pin


def _pin_source_path(value: str) -> str:
    return value[len("file:"):] if value.startswith("file:") else value


def read_pin_file(path: str) -> str:
    """The PIN in ``path`` (its first line, without the line ending).

    Raises:
        InputError: E_NOT_FOUND, E_NOT_A_FILE, E_TOO_LARGE for the file.
        EnvironmentProblem: E_PERMISSION.
    """
    from pathlib import Path

    from oemkit._fs import read_input

    data = read_input(Path(path), "PIN file", 4096)
    return data.decode("utf-8", "replace").splitlines()[0] if data.strip() else ""


def _pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError as exc:
        raise EnvironmentProblem(
            "E_PKCS11_UNAVAILABLE", f"PKCS#11 support is not installed ({exc})",
            hint="pip install 'oemkit[hsm]' (python-pkcs11)") from exc
    return pkcs11


_LIBS: dict[str, Any] = {}


def _lib(path: str) -> Any:
    if path not in _LIBS:
        pkcs11 = _pkcs11()
        try:
            _LIBS[path] = pkcs11.lib(path)
        except (RuntimeError, OSError, pkcs11.exceptions.PKCS11Error) as exc:
            raise EnvironmentProblem(
                "E_PKCS11_MODULE",
                f"cannot load PKCS#11 module {path} ({exc or type(exc).__name__})",
                hint="check that it is a PKCS#11 library for this machine (and, for SoftHSM2, "
                     "that SOFTHSM2_CONF names a readable configuration)") from exc
    return _LIBS[path]


def find_token(uri: Pkcs11Uri, access: TokenAccess) -> Any:
    """The one present, initialised token that matches ``uri``'s token attributes.

    Raises:
        EnvironmentProblem: E_PKCS11_TOKEN when none matches (the present tokens are
            listed) or several do; E_PKCS11_MODULE from loading the module.
    """
    module = access.module_for(uri)
    lib = _lib(module)
    match = {"token": "label", "serial": "serial", "manufacturer": "manufacturer_id",
             "model": "model"}
    tokens = []
    labels = []
    for slot in lib.get_slots(token_present=True):
        if "slot-id" in uri.path and str(slot.slot_id) != uri.path["slot-id"]:
            continue
        token = slot.get_token()
        labels.append(token.label)
        if all(_text(getattr(token, attr)) == uri.path[key]
               for key, attr in match.items() if key in uri.path):
            tokens.append(token)
    shown = ", ".join(repr(x) for x in labels if x) or "none"
    if not tokens:
        raise EnvironmentProblem(
            "E_PKCS11_TOKEN", f"no token matches {uri.where()} in {module} (tokens present: "
            f"{shown})", hint="insert the token, or correct token= in the URI (list tokens "
                              "with 'pkcs11-tool --module MODULE -L')")
    if len(tokens) > 1:
        raise EnvironmentProblem(
            "E_PKCS11_TOKEN", f"{len(tokens)} tokens match {uri.where()} in {module}",
            hint="add token= (or serial=) to the URI to name one")
    return tokens[0]


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip()


@contextmanager
def open_session(uri: Pkcs11Uri, access: TokenAccess, *, rw: bool = False) -> Iterator[Any]:
    """A logged-in session on ``uri``'s token, closed (and logged out) on exit.

    Each operation logs in afresh, as securesystemslib's ``HSMSigner`` does (two logged-in
    sessions of one process collide: ``CKR_USER_ALREADY_LOGGED_IN``). The PIN is the one
    that worked the first time; a wrong one is never tried again.

    Raises:
        InputError: E_PKCS11_PIN (wrong PIN, tried once), E_PKCS11_PIN_REQUIRED.
        EnvironmentProblem: E_PKCS11_PIN_LOCKED, E_PKCS11_TOKEN, E_PKCS11_MODULE.
    """
    pkcs11 = _pkcs11()
    token = find_token(uri, access)
    label = _text(token.label)
    wrong = InputError(
        "E_PKCS11_PIN", f"wrong PIN for token {label!r}",
        hint="check --pin-file / OEMKIT_PKCS11_PIN; oemkit tried it once and stopped, so the "
             "token's try counter went down by one only")
    if label in access._failed:
        raise wrong
    flags = token.flags
    if flags & pkcs11.TokenFlag.USER_PIN_LOCKED:
        raise EnvironmentProblem(
            "E_PKCS11_PIN_LOCKED", f"token {label!r}'s user PIN is locked",
            hint="unlock it with the token's SO PIN (e.g. 'softhsm2-util' or the vendor tool)")
    pin = access.pin_for(uri, label, final_try=bool(flags & pkcs11.TokenFlag.USER_PIN_FINAL_TRY))
    try:
        session = token.open(user_pin=pin, rw=rw)
    except (pkcs11.exceptions.PinIncorrect, pkcs11.exceptions.PinLenRange,
            pkcs11.exceptions.PinInvalid) as exc:
        access._pins.pop(label, None)
        access._failed.add(label)
        raise wrong from exc
    except pkcs11.exceptions.PinLocked as exc:
        raise EnvironmentProblem(
            "E_PKCS11_PIN_LOCKED", f"token {label!r}'s user PIN is locked",
            hint="unlock it with the token's SO PIN") from exc
    except pkcs11.exceptions.PKCS11Error as exc:
        raise EnvironmentProblem(
            "E_PKCS11_TOKEN", f"cannot log in to token {label!r} ({type(exc).__name__})",
            hint="check that the token is present and that no other session of this process "
                 "holds a login") from exc
    try:
        yield session
    finally:
        session.close()


def _find_key(session: Any, uri: Pkcs11Uri, object_class: Any, label: str) -> Any:
    pkcs11 = _pkcs11()
    if uri.object is None and uri.id is None:
        raise UsageError("E_KEY_URI", f"{uri.text[:120]!r} names no key on token {label!r}",
                         hint="add object=LABEL (or id=) to the URI")
    attrs: dict[Any, Any] = {pkcs11.Attribute.CLASS: object_class}
    if uri.object is not None:
        attrs[pkcs11.Attribute.LABEL] = uri.object
    if uri.id is not None:
        attrs[pkcs11.Attribute.ID] = uri.id
    found = list(session.get_objects(attrs))
    kind = "private" if object_class == pkcs11.ObjectClass.PRIVATE_KEY else "public"
    if not found:
        there = sorted({_text(o[pkcs11.Attribute.LABEL]) for o in session.get_objects(
            {pkcs11.Attribute.CLASS: object_class})})
        raise InputError(
            "E_PKCS11_OBJECT", f"no {kind} key matches {uri.where()} (keys there: "
            f"{', '.join(there) or 'none'})",
            hint="correct object= in the URI, or create the key with 'oemkit keys generate "
                 "--pkcs11'")
    if len(found) > 1:
        raise InputError("E_PKCS11_OBJECT", f"{len(found)} {kind} keys match {uri.where()}",
                         hint="add id= to the URI to name one")
    return found[0]


def _public_from_object(obj: Any, where: str) -> PublicKey:
    """A cryptography public key from a token's public key object (EC or EdDSA)."""
    pkcs11 = _pkcs11()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from oemkit.crypto.keys import algorithm_of

    key_type = obj[pkcs11.Attribute.KEY_TYPE]
    if key_type == pkcs11.KeyType.EC:
        from pkcs11.util.ec import encode_ec_public_key

        public: Any = serialization.load_der_public_key(encode_ec_public_key(obj))
    elif key_type == pkcs11.KeyType.EC_EDWARDS:
        point = bytes(obj[pkcs11.Attribute.EC_POINT])
        raw = point[2:] if len(point) == 34 and point[:2] == b"\x04\x20" else point
        if len(raw) != 32:
            raise InputError("E_KEY_ALGORITHM", f"{where} is an EdDSA key that is not Ed25519",
                             hint="oemkit signs with Ed25519 or ECDSA P-256 keys")
        public = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    else:
        raise InputError(
            "E_KEY_ALGORITHM", f"{where} is a {getattr(key_type, 'name', key_type)} key; oemkit "
            "signs with Ed25519 or ECDSA P-256", hint="generate one in the token with "
            "'oemkit keys generate --pkcs11 TOKEN-URI --label NAME --usage U'")
    try:
        algorithm_of(public)
    except InputError as exc:
        raise InputError("E_KEY_ALGORITHM", f"{where}: {exc.message}", hint=exc.hint) from None
    return public  # type: ignore[no-any-return]


def _usage_of(session: Any, label: str) -> str | None:
    pkcs11 = _pkcs11()
    for obj in session.get_objects({pkcs11.Attribute.CLASS: pkcs11.ObjectClass.DATA,
                                    pkcs11.Attribute.LABEL: label}):
        if _text(obj[pkcs11.Attribute.APPLICATION]) == USAGE_APPLICATION:
            return bytes(obj[pkcs11.Attribute.VALUE]).decode("ascii", "replace")
    return None


@dataclass(frozen=True)
class KeyFacts:
    """What a token says about one key: where it is, its public half, recorded usage and
    the attributes that keep the private half inside."""

    uri: str
    token: str
    label: str
    public: PublicKey
    usage: str | None
    extractable: bool | None
    sensitive: bool | None


def key_facts(uri: Pkcs11Uri, access: TokenAccess) -> tuple[KeyFacts, bytes]:
    """Look up ``uri``'s key pair: its :class:`KeyFacts` and its ``CKA_ID``.

    Raises:
        InputError: E_PKCS11_OBJECT, E_KEY_ALGORITHM, E_PKCS11_PIN, E_KEY_URI.
        EnvironmentProblem: E_PKCS11_TOKEN, E_PKCS11_MODULE, E_PKCS11_PIN_LOCKED.
    """
    tlabel = _text(find_token(uri, access).label)
    with open_session(uri, access) as session:
        return _facts(session, uri, tlabel)


def _facts(session: Any, uri: Pkcs11Uri, tlabel: str) -> tuple[KeyFacts, bytes]:
    pkcs11 = _pkcs11()
    private = _find_key(session, uri, pkcs11.ObjectClass.PRIVATE_KEY, tlabel)
    label = _text(private[pkcs11.Attribute.LABEL])
    where = f"{token_uri(tlabel, label)}"
    pub_uri = Pkcs11Uri(uri.text, {**uri.path, "object": label}, uri.query)
    pub_attrs: dict[Any, Any] = {pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PUBLIC_KEY,
                                 pkcs11.Attribute.LABEL: label}
    key_id_attr = bytes(private[pkcs11.Attribute.ID] or b"")
    if key_id_attr:
        pub_attrs[pkcs11.Attribute.ID] = key_id_attr
    publics = list(session.get_objects(pub_attrs))
    if len(publics) != 1:
        raise InputError("E_PKCS11_OBJECT", f"{where} has {len(publics)} public key objects "
                         f"beside it ({pub_uri.where()})",
                         hint="oemkit needs the key pair's public object on the token")
    public = _public_from_object(publics[0], where)
    facts = KeyFacts(uri=where, token=tlabel, label=label, public=public,
                     usage=_usage_of(session, label),
                     extractable=_flag(private, pkcs11.Attribute.EXTRACTABLE),
                     sensitive=_flag(private, pkcs11.Attribute.SENSITIVE))
    return facts, key_id_attr


def _flag(obj: Any, attr: Any) -> bool | None:
    try:
        return bool(obj[attr])
    except Exception:
        return None


class TokenKey:
    """The private half of a key pair that stays in the token: it signs, nothing else."""

    def __init__(self, facts: KeyFacts, object_id: bytes, uri: Pkcs11Uri,
                 access: TokenAccess, module: str) -> None:
        self.facts = facts
        self._id = object_id
        self._uri = Pkcs11Uri(uri.text, {**uri.path, "token": facts.token,
                                         "object": facts.label}, uri.query)
        self._access = access
        self._module = module

    def sign_raw(self, message: bytes) -> bytes:
        """Sign ``message`` inside the token: Ed25519 (``CKM_EDDSA``, 64 bytes) or ECDSA
        P-256 over SHA-256 (DER, as securesystemslib writes it; the caller normalises S).

        Raises:
            EnvironmentProblem: E_PKCS11_SIGN when the token refuses.
        """
        return bytes.fromhex(self.sslib_signer().sign(message).signature)

    def _token_sign(self, message: bytes) -> bytes:
        pkcs11 = _pkcs11()
        from cryptography.hazmat.primitives.asymmetric import ed25519

        eddsa = isinstance(self.facts.public, ed25519.Ed25519PublicKey)
        with open_session(self._uri, self._access) as session:
            attrs: dict[Any, Any] = {pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY,
                                     pkcs11.Attribute.LABEL: self.facts.label}
            if self._id:
                attrs[pkcs11.Attribute.ID] = self._id
            found = list(session.get_objects(attrs))
            if len(found) != 1:
                raise InputError("E_PKCS11_OBJECT", f"{self.facts.uri} is no longer one key "
                                 f"on the token ({len(found)} match)",
                                 hint="was the key deleted or copied while oemkit ran?")
            try:
                if eddsa:
                    return bytes(found[0].sign(message, mechanism=pkcs11.Mechanism.EDDSA))
                import hashlib

                from cryptography.hazmat.primitives.asymmetric.utils import (
                    encode_dss_signature,
                )

                raw = bytes(found[0].sign(hashlib.sha256(message).digest(),
                                          mechanism=pkcs11.Mechanism.ECDSA))
            except pkcs11.exceptions.PKCS11Error as exc:
                raise EnvironmentProblem(
                    "E_PKCS11_SIGN", f"the token refused to sign with {self.facts.uri} "
                    f"({type(exc).__name__})", hint="check that the key may sign (CKA_SIGN) "
                    "and that the token has CKM_EDDSA / CKM_ECDSA") from exc
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                    int.from_bytes(raw[half:], "big"))

    def sslib_signer(self) -> Any:
        """A securesystemslib ``Signer`` for this key: its own ``HSMSigner`` for a P-256
        key whose ``CKA_ID`` it can address, else :func:`_token_signer` (Ed25519, which
        HSMSigner does not sign with, or an id it cannot express)."""
        from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]

        public = SSlibKey.from_crypto(self.facts.public)
        hsm_id = self.hsm_keyid()
        if hsm_id is None:
            return _token_signer(self, public)
        from securesystemslib.signer import HSMSigner  # type: ignore[attr-defined]

        os.environ["PYKCS11LIB"] = self._module  # where HSMSigner looks for its module
        access, uri = self._access, self._uri

        def pin(_what: str) -> str:  # the PIN that already logged in once (or the error)
            with open_session(uri, access):
                return access._pins[self.facts.token]

        return HSMSigner(hsm_id, public, pin, self.facts.token)

    def hsm_keyid(self) -> int | None:
        """``CKA_ID`` as HSMSigner's integer key id, when it is one (minimal big-endian)
        and the key is P-256: HSMSigner finds keys by that id and tokens by label."""
        from cryptography.hazmat.primitives.asymmetric import ec

        if not isinstance(self.facts.public, ec.EllipticCurvePublicKey) or not self._id:
            return None
        number = int.from_bytes(self._id, "big")
        return number if _pkcs11().util.biginteger(number) == self._id else None


def _token_signer(key: TokenKey, public: Any) -> Any:
    from securesystemslib.signer import Signature, Signer  # type: ignore[attr-defined]

    class _TokenSigner(Signer):
        """A securesystemslib signer over python-pkcs11 for what HSMSigner lacks (Ed25519,
        an ECDSA key with an id it cannot address)."""

        @classmethod
        def from_priv_key_uri(cls, priv_key_uri: str, public_key: Any,
                              secrets_handler: Any = None) -> Any:
            raise ValueError("oemkit opens token keys itself (oemkit.crypto.pkcs11)")

        @property
        def public_key(self) -> Any:
            return public

        def sign(self, payload: bytes) -> Any:
            return Signature(public.keyid, key._token_sign(payload).hex())

    return _TokenSigner()


def load_token_key(text: str, access: TokenAccess) -> PrivateKeyInfo:
    """The signing key ``text`` (a ``pkcs11:`` URI) names, for oemkit's signers.

    Raises:
        UsageError: E_KEY_URI, E_PKCS11_NO_MODULE.
        InputError: E_PKCS11_OBJECT, E_PKCS11_PIN, E_PKCS11_PIN_REQUIRED, E_KEY_ALGORITHM.
        EnvironmentProblem: E_PKCS11_TOKEN, E_PKCS11_MODULE, E_PKCS11_PIN_LOCKED,
            E_PKCS11_UNAVAILABLE.
    """
    from oemkit.crypto.keys import PrivateKeyInfo, algorithm_of, key_id

    uri = parse_uri(text)
    if uri.path.get("type") == "public":
        raise UsageError("E_KEY_URI", f"{text[:120]!r} names a public key; signing needs the "
                         "private one", hint="drop type=public from the URI")
    module = access.module_for(uri)
    facts, object_id = key_facts(uri, access)
    token_key = TokenKey(facts, object_id, uri, access, module)
    return PrivateKeyInfo(token_key, facts.public, algorithm_of(facts.public),
                          key_id(facts.public), facts.uri, usage=facts.usage)


def export_public(text: str, access: TokenAccess) -> KeyFacts:
    """The public half (and facts) of the key ``text`` names, read from the token.

    Raises:
        The errors of :func:`key_facts`.
    """
    return key_facts(parse_uri(text), access)[0]


@dataclass(frozen=True)
class TokenEntry:
    """One private key a token holds, as ``keys list`` shows it: its facts when oemkit
    can sign with it, else why not (``problem``: another algorithm, no public object)."""

    label: str
    object_id: bytes
    facts: KeyFacts | None
    problem: str | None


def list_keys(text: str, access: TokenAccess) -> tuple[str, list[TokenEntry]]:
    """The token ``text`` names (its label) and every private key on it, by label.

    Raises:
        InputError: E_PKCS11_PIN, E_PKCS11_PIN_REQUIRED, E_KEY_URI.
        EnvironmentProblem: E_PKCS11_TOKEN, E_PKCS11_MODULE, E_PKCS11_PIN_LOCKED.
    """
    pkcs11 = _pkcs11()
    uri = parse_uri(text)
    tlabel = _text(find_token(uri, access).label)
    entries = []
    with open_session(uri, access) as session:
        found = [(_text(obj[pkcs11.Attribute.LABEL]), bytes(obj[pkcs11.Attribute.ID] or b""))
                 for obj in session.get_objects(  # one search at a time in a session
                     {pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY})]
        for label, oid in found:
            one = parse_uri(token_uri(tlabel, label) + (f";id={_quote_id(oid)}" if oid else "")
                            + _query_tail(uri))
            try:
                facts, _ = _facts(session, one, tlabel)
            except (InputError, UsageError) as exc:
                entries.append(TokenEntry(label, oid, None, exc.message))
                continue
            entries.append(TokenEntry(label, oid, facts, None))
    return tlabel, sorted(entries, key=lambda e: (e.label, e.object_id))


def _quote_id(value: bytes) -> str:
    return "".join(f"%{b:02x}" for b in value)


def generate_key(text: str, label: str, usage: str, algorithm: str,
                 access: TokenAccess) -> KeyFacts:
    """Create a key pair inside ``text``'s token: private half sensitive, not extractable,
    sign-only; public half on the token; the usage in a data object beside it.

    Raises:
        InputError: E_KEY_EXISTS when an object labelled ``label`` exists already;
            the errors of :func:`open_session`.
        EnvironmentProblem: E_PKCS11_GENERATE when the token refuses.
    """
    pkcs11 = _pkcs11()
    uri = parse_uri(text)
    if uri.object is not None and uri.object != label:
        raise UsageError("E_USAGE", f"the token URI names object {uri.object!r} and --label "
                         f"{label!r}", hint="name the new key once, with --label")
    tlabel = _text(find_token(uri, access).label)
    A = pkcs11.Attribute
    with open_session(uri, access, rw=True) as session:
        _generate(session, A, tlabel, label, usage, algorithm)
    return export_public(token_uri(tlabel, label) + _query_tail(uri), access)


def _generate(session: Any, A: Any, tlabel: str, label: str, usage: str,
              algorithm: str) -> None:
    pkcs11 = _pkcs11()
    from pkcs11.util import biginteger
    from pkcs11.util.ec import encode_named_curve_parameters

    try:
        if list(session.get_objects({A.LABEL: label})):
            raise InputError("E_KEY_EXISTS", f"token {tlabel!r} already has an object "
                             f"labelled {label!r}",
                             hint="choose another --label; keys are never overwritten")
        ids = [int.from_bytes(bytes(o[A.ID] or b"\0"), "big") for o in session.get_objects(
            {A.CLASS: pkcs11.ObjectClass.PRIVATE_KEY})]
        key_id_bytes = biginteger(max(ids, default=0) + 1)
        if algorithm == "ed25519":
            key_type = pkcs11.KeyType.EC_EDWARDS
            mechanism = pkcs11.Mechanism.EC_EDWARDS_KEY_PAIR_GEN
            params = encode_named_curve_parameters(ED25519_OIDS[0])
        else:
            key_type, mechanism = pkcs11.KeyType.EC, pkcs11.Mechanism.EC_KEY_PAIR_GEN
            params = encode_named_curve_parameters(P256_OID)
        common = {A.LABEL: label, A.ID: key_id_bytes, A.TOKEN: True}
        session.generate_keypair(
            key_type, mechanism=mechanism,
            public_template={**common, A.EC_PARAMS: params, A.VERIFY: True, A.PRIVATE: False},
            private_template={**common, A.SIGN: True, A.SENSITIVE: True, A.EXTRACTABLE: False,
                              A.PRIVATE: True, A.DECRYPT: False, A.DERIVE: False})
        session.create_object({A.CLASS: pkcs11.ObjectClass.DATA, A.TOKEN: True,
                               A.PRIVATE: False, A.LABEL: label,
                               A.APPLICATION: USAGE_APPLICATION,
                               A.VALUE: usage.encode("ascii")})
    except pkcs11.exceptions.PKCS11Error as exc:
        raise EnvironmentProblem(
            "E_PKCS11_GENERATE", f"token {tlabel!r} refused to generate a {algorithm} key "
            f"({type(exc).__name__})", hint="check that the token supports the mechanism "
            "(Ed25519 needs CKM_EC_EDWARDS_KEY_PAIR_GEN; try --algorithm ecdsa-p256)") from exc


def _query_tail(uri: Pkcs11Uri) -> str:
    from urllib.parse import quote

    kept = {k: v for k, v in uri.query.items() if k == "module-path"}
    return ("?" + "&".join(f"{k}={quote(v, safe='/')}" for k, v in kept.items())) if kept else ""
