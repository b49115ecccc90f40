"""BGP passwords of a Calico bundle: decoding a Secret's keys, and resolving a `secretKeyRef`
(a BGPPeer's `password`, the BGPConfiguration's `nodeMeshPassword`) to the password and the place
the Secret writes it, so that a problem with the password names the Secret.

Follows projectcalico/calico `confd/pkg/backends/calico/secret_watcher.go` (`GetSecret`:
calico-node reads `data[key]` of the Secret of that name in its own namespace) and
`confd/pkg/backends/calico/client.go` (`getPassword`: a peer's password is that Secret key).
Kubernetes merges a Secret's `stringData` over its `data`. Whether a password can be a TCP MD5
key at all is `rules.password_problem`'s question, asked of the converted topology.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from meshemu.errors import Problem
from meshemu.model.calico_inventory import Doc, Resources, SecretValue
from meshemu.model.calico_resources import PasswordSource, SecretResource
from meshemu.model.topology import loc_part


def store_secret(
    doc: Doc, loc: str, secret: SecretResource, found: Resources, problems: list[Problem]
) -> None:
    """Decode the Secret's keys into `found.secrets`, each with the place it is written."""
    namespace = secret.metadata.namespace or ""
    values = {key: (value, "data") for key, value in _decoded(loc, secret, problems).items()}
    # Kubernetes merges stringData over data.
    values.update({key: (value, "stringData") for key, value in secret.stringData.items()})
    for key, (value, fname) in values.items():
        where = f"{loc}.{fname}.{loc_part(key)}"
        if value == "":
            problems.append(
                Problem(
                    where,
                    "is an empty password",
                    "a BGP password must not be empty (TCP MD5 needs a key)",
                )
            )
            continue
        found.secrets[(namespace, secret.metadata.name, key)] = SecretValue(
            value, where, doc.place()
        )


def _decoded(loc: str, secret: SecretResource, problems: list[Problem]) -> dict[str, str]:
    """The Secret's `data`, decoded; a key that is not base64 of UTF-8 text is a problem."""
    values: dict[str, str] = {}
    for key, encoded in secret.data.items():
        try:
            # validate=True: without it b64decode drops every character outside the alphabet,
            # so a pasted plain-text password would decode to garbage or to nothing.
            values[key] = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as err:
            problems.append(
                Problem(
                    f"{loc}.data.{loc_part(key)}",
                    f"is not base64 of UTF-8 text ({err})",
                    "Secret data is base64-encoded (`printf %s secret | base64`); "
                    "or write the password as plain text under stringData",
                )
            )
    return values


@dataclass(frozen=True)
class Password:
    """A resolved password and the bundle location a problem with it should name."""

    value: str
    origin: str


def resolve_password(
    source: PasswordSource, found: Resources, where: str, problems: list[Problem]
) -> Password:
    """The password `source` names. When the bundle holds the Secret, its origin is the Secret's
    key with its document and line, and `where` (the field that names the Secret):
    `Secret/bgp.data.peer (document 4, line 12; named by BGPPeer/p.spec.password)`. A Secret
    the bundle does not hold is a problem located at `where`."""
    ref = source.secretKeyRef
    matches = {
        ns: value
        for (ns, name, key), value in found.secrets.items()
        if name == ref.name and key == ref.key
    }
    if len({match.value for match in matches.values()}) > 1:
        problems.append(
            Problem(
                f"{where}.secretKeyRef",
                f"secret {ref.name}/{ref.key} is in several namespaces with different values "
                f"({', '.join(sorted(ns or '(none)' for ns in matches))})",
                "calico-node reads the one in its own namespace: keep only that one",
            )
        )
    if matches:
        secret = next(iter(matches.values()))
        return Password(secret.value, f"{secret.key_at} ({secret.place}; named by {where})")
    # A session whose password is unknown would be emulated with a key the real peer does
    # not have (confd renders it without one and only logs a warning): refuse it instead.
    problems.append(
        Problem(
            f"{where}.secretKeyRef",
            f"secret {ref.name}/{ref.key} is not in the bundle",
            f"add the Secret to the bundle (kubectl get secret -n calico-system {ref.name} "
            "-o yaml), or remove the password",
        )
    )
    return Password("", where)
