#!/usr/bin/env python3
"""Encrypt a plaintext YAML document into a SOPS document (age recipients), in the format the
real `sops` tool writes, for example and test fixtures on machines without `sops`.

    python3 tests/tools/sops_encrypt.py -i examples/keys/demo-age.key plain.yaml > secret.enc.yaml
    python3 tests/tools/sops_encrypt.py -r age1... -r age1... plain.yaml -o secret.enc.yaml

Check the result with the independent reference decryptor (it verifies the MAC too):

    python3 shared/test-vectors/sops/tools/sopsref.py examples/keys/demo-age.key secret.enc.yaml

Needs: python3 with PyYAML and `cryptography`, and the `age` CLI (Debian: `apt-get install age`).
Without them system-wide:  python3 -m venv .venv-tools && .venv-tools/bin/pip install cryptography pyyaml
(then run the tool with .venv-tools/bin/python). Self-test: python3 -m unittest discover -s tests/tools

What a SOPS document is (as sops 3.8 writes it, cf. shared/test-vectors/sops/humphd-sops-age):

- A random 32-byte *data key* encrypts every value. It is encrypted once per recipient with
  age (armored) and stored under `sops.age[]` as `{recipient, enc}`.
- Every leaf value becomes `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<t>]`:
  AES-256-GCM with a fresh random 32-byte nonce (sops's nonce size, not GCM's usual 12), the
  16-byte tag split off the end of the ciphertext, and as *additional data* the map keys
  leading to the value joined with `:` plus a trailing `:` (`db:password:`). List items add
  nothing to that path. `t` is `str`, `int`, `float` or `bool`; the encrypted bytes are the
  value's text: ints in decimal, floats in Go's shortest `'f'` form (`3.14`, `1`, no
  exponent), bools as `True`/`False`.
- Empty strings are not encrypted (sops leaves `""` as is).
- Keys ending in the unencrypted suffix (`_unencrypted`) keep their value, and everything
  below it, in clear text.
- The MAC is SHA-512 over the plaintext bytes of every value in document order (encrypted or
  not: this tool never sets `mac_only_encrypted`), as upper-case hex. It is stored encrypted
  like a value (`type:str`) with the data key, whose additional data is the `lastmodified`
  timestamp exactly as written (`2024-03-25T22:08:10Z`).
- `sops.version` names the sops release whose layout this mimics.

Not supported (refused or dropped, never guessed): YAML comments (sops keeps them as encrypted
`type:comment` entries; here they are dropped), null values, non-string keys, multi-document
files, `encrypted_regex` and friends, PGP/KMS key groups.
"""

import argparse
import base64
import datetime
import decimal
import hashlib
import json
import os
import re
import subprocess
import sys

import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SOPS_VERSION = "3.8.1"  # the release whose output layout this reproduces
UNENCRYPTED_SUFFIX = "_unencrypted"
NONCE_SIZE = 32
TAG_SIZE = 16


class PlainLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars, as sops (Go yaml.v3) reads them: only
    true/false are booleans (`yes`, `no`, `on` stay strings), integers are decimal (or 0o/0x),
    no sexagesimal numbers, and timestamps are strings (sops has no timestamp type)."""


def _core_schema(loader_cls):
    resolvers = {}
    for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items():
        kept = [
            (tag, rx)
            for tag, rx in entries
            if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool",
                           "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
        ]
        if kept:
            resolvers[first] = kept
    loader_cls.yaml_implicit_resolvers = resolvers
    core = [
        ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
        ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
        ("tag:yaml.org,2002:float",
         r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
         "-+.0123456789"),
    ]
    for tag, rx, first in core:
        loader_cls.add_implicit_resolver(tag, re.compile(rx), list(first))

    def construct_int(loader, node):
        text = loader.construct_scalar(node)
        if text.startswith(("0o", "0x")):
            return int(text, 0)
        return int(text, 10)

    def construct_bool(loader, node):
        return loader.construct_scalar(node).lower() == "true"

    loader_cls.add_constructor("tag:yaml.org,2002:int", construct_int)
    loader_cls.add_constructor("tag:yaml.org,2002:bool", construct_bool)


_core_schema(PlainLoader)


def go_float(v):
    """Go's strconv.FormatFloat(v, 'f', -1, 64): shortest round-trip digits, fixed notation."""
    if v != v or v in (float("inf"), float("-inf")):
        raise SystemExit("error: NaN and infinity cannot be stored in a SOPS document")
    text = format(decimal.Decimal(repr(v)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def plaintext_of(value, where):
    """(type name, bytes) of a leaf value, as sops encrypts and MACs it."""
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "bool", b"True" if value else b"False"
    if isinstance(value, int):
        return "int", str(value).encode()
    if isinstance(value, float):
        return "float", go_float(value).encode()
    if isinstance(value, str):
        return "str", value.encode()
    if value is None:
        raise SystemExit(f"error: {where or '<root>'} is null; give it a value or remove it")
    raise SystemExit(f"error: {where}: unsupported value type {type(value).__name__}")


class Encryptor:
    def __init__(self, data_key):
        self.aead = AESGCM(data_key)
        self.mac = hashlib.sha512()

    def seal(self, type_name, plain, additional_data):
        nonce = os.urandom(NONCE_SIZE)
        sealed = self.aead.encrypt(nonce, plain, additional_data.encode())
        data, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
        b64 = lambda b: base64.b64encode(b).decode()
        return f"ENC[AES256_GCM,data:{b64(data)},iv:{b64(nonce)},tag:{b64(tag)},type:{type_name}]"

    def walk(self, node, path, clear):
        """Encrypt `node` (reached through the map keys `path`); `clear` below a suffixed key."""
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if not isinstance(key, str):
                    raise SystemExit(f"error: key {key!r} under {':'.join(path) or '<root>'} is not a string")
                out[key] = self.walk(value, path + [key], clear or key.endswith(UNENCRYPTED_SUFFIX))
            return out
        if isinstance(node, list):
            return [self.walk(item, path, clear) for item in node]
        where = ":".join(path)
        type_name, plain = plaintext_of(node, where)
        self.mac.update(plain)  # every value counts, encrypted or not
        if clear or plain == b"" and type_name == "str":
            return node
        return self.seal(type_name, plain, where + ":")


def recipients_of(args):
    out = list(args.recipient or [])
    for identity in args.identity or []:
        r = subprocess.run(["age-keygen", "-y", identity], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"error: cannot read age identity {identity}: {r.stderr.strip()}")
        out.extend(line.strip() for line in r.stdout.splitlines() if line.strip())
    if not out:
        raise SystemExit("error: give at least one recipient (-r age1...) or identity file (-i)")
    for r in out:
        if not r.startswith("age1"):
            raise SystemExit(f"error: `{r}` is not an age X25519 recipient (age1...)")
    return list(dict.fromkeys(out))  # keep order, drop duplicates


def age_wrap(data_key, recipient):
    r = subprocess.run(["age", "--encrypt", "--armor", "-r", recipient], input=data_key, capture_output=True)
    if r.returncode != 0:
        raise SystemExit(f"error: age failed for {recipient}: {r.stderr.decode().strip()}")
    return r.stdout.decode()


# --- YAML output, laid out as sops writes it -------------------------------------------------

PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_./@$][A-Za-z0-9_./@$ +=,:\-\[\]]*$")
YAML_SPECIAL = re.compile(
    r"^(~|null|Null|NULL|true|True|TRUE|false|False|FALSE|yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF|y|Y|n|N"
    r"|[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
    r"|0x[0-9a-fA-F_]+|0o[0-7_]+|[0-9]{4}-[0-9]{2}-[0-9]{2}.*)$"
)


def scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if value.startswith("ENC[AES256_GCM,"):
        return value
    if (
        value
        and PLAIN_SAFE.match(value)
        and not YAML_SPECIAL.match(value)
        and ": " not in value
        and not value.endswith((":", " "))
    ):
        return value
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def key_text(key):
    return key if PLAIN_SAFE.match(key) and not YAML_SPECIAL.match(key) and ":" not in key else json.dumps(key)


def emit(node, indent, lines, first_prefix=None):
    """Write mapping `node` at `indent`; `first_prefix` replaces the first line's indentation
    (for a mapping that is a list item: `    - `)."""
    pad = " " * indent
    for i, (key, value) in enumerate(node.items()):
        lead = first_prefix if (i == 0 and first_prefix is not None) else pad
        head = f"{lead}{key_text(key)}:"
        if isinstance(value, dict) and value:
            lines.append(head)
            emit(value, indent + 2, lines)
        elif isinstance(value, list) and value:
            lines.append(head)
            emit_list(value, indent + 2, lines)
        elif isinstance(value, dict):
            lines.append(head + " {}")
        elif isinstance(value, list):
            lines.append(head + " []")
        elif isinstance(value, str) and "\n" in value and value.startswith("-----BEGIN"):
            lines.append(head + " |")
            lines.extend(" " * (indent + 2) + line for line in value.rstrip("\n").split("\n"))
        else:
            lines.append(f"{head} {scalar(value)}")


def emit_list(items, indent, lines):
    pad = " " * indent
    for item in items:
        if isinstance(item, dict) and item:
            emit(item, indent + 2, lines, first_prefix=pad + "- ")
        elif isinstance(item, list) and item:
            raise SystemExit("error: lists of lists are not supported")
        elif isinstance(item, dict):
            lines.append(pad + "- {}")
        elif isinstance(item, list):
            lines.append(pad + "- []")
        else:
            lines.append(f"{pad}- {scalar(item)}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("plaintext", help="plaintext YAML file (a mapping), or - for stdin")
    p.add_argument("-r", "--recipient", action="append", help="age recipient (age1...); repeatable")
    p.add_argument("-i", "--identity", action="append", help="age identity file whose recipient to use; repeatable")
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p.add_argument("--lastmodified", help="timestamp to record (default: now, UTC), e.g. 2025-01-01T00:00:00Z")
    args = p.parse_args(argv)

    text = sys.stdin.read() if args.plaintext == "-" else open(args.plaintext, encoding="utf-8").read()
    docs = list(yaml.load_all(text, Loader=PlainLoader))
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise SystemExit("error: the plaintext must be one YAML document whose top level is a mapping")
    doc = docs[0]
    if "sops" in doc:
        raise SystemExit("error: the input already has a `sops` key: is it encrypted already?")

    lastmodified = args.lastmodified or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    data_key = os.urandom(32)
    enc = Encryptor(data_key)
    tree = enc.walk(doc, [], False)
    mac = enc.seal("str", enc.mac.hexdigest().upper().encode(), lastmodified)

    metadata = {
        "kms": [],
        "gcp_kms": [],
        "azure_kv": [],
        "hc_vault": [],
        "age": [{"recipient": r, "enc": age_wrap(data_key, r)} for r in recipients_of(args)],
        "lastmodified": lastmodified,
        "mac": mac,
        "pgp": [],
        "unencrypted_suffix": UNENCRYPTED_SUFFIX,
        "version": SOPS_VERSION,
    }
    lines = []
    emit(tree, 0, lines)
    emit({"sops": metadata}, 0, lines)
    out = "\n".join(lines) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(out)
    else:
        sys.stdout.write(out)


if __name__ == "__main__":
    main()
