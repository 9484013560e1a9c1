"""The content of `registry.json`, in the VMAF fork's registry schema (model/tiny/registry.schema.json).

The schema, as the fork's validators apply it: a top-level object with `schema_version` (1) and
`models`; each row `{id, kind, onnx, sha256, opset, notes, smoke, license, license_url,
sigstore_bundle, description, quant_*}` and no other key; `kind` fr, nr or filter; `opset` 7..21;
`notes` at most 512 characters; `id` matching ID_PATTERN (assumed here: the fork's ids are lower
case, digits and underscores). The fork's tests also want `license` and `sigstore_bundle` on
every row.

frgb owns only some fields of its rows (FRGB_FIELDS). Writing a row into an existing registry
keeps every top-level key and every other row as they were, and in the row it replaces every
field frgb does not own (license_url, description, quant_*, ...), except a `sigstore_bundle`
that signed the previous file: it no longer matches, so it is dropped and `signature_notices`
says so. An existing registry that cannot be read is an error (nothing is written).
Files are written by frgb.artifacts (atomically, under its lock); this module only says what
they contain.
"""

from __future__ import annotations

import re

from frgb.errors import FrgbError

SCHEMA_VERSION = 1
NOTES_MAX = 512
ID_PATTERN = re.compile(r"^[a-z0-9_]+$")
#: The fields of a row that frgb writes; a replaced row keeps all others.
FRGB_FIELDS = ("id", "kind", "onnx", "sha256", "opset", "notes", "smoke", "license")
#: Fields frgb writes only into a row that is new (an existing row's value is kept).
NEW_ROW_FIELDS = ("license_url",)


def registry_problem(document) -> str | None:
    """Why `document` (parsed JSON) cannot be used as a registry, or None: an object with a list
    `models` of objects, each with a unique non-empty string `id`, and `schema_version` 1 if given
    (frgb's registries before the fork's schema had none)."""
    if not isinstance(document, dict) or not isinstance(document.get("models"), list):
        return 'expected {"models": [...]}'
    version = document.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        return f"schema_version {version!r}; frgb reads and writes version {SCHEMA_VERSION}"
    ids = set()
    for i, row in enumerate(document["models"]):
        if not isinstance(row, dict):
            return f"models[{i}] is not an object"
        if not isinstance(row.get("id"), str) or not row["id"]:
            return f'models[{i}] has no "id" (a non-empty string)'
        if row["id"] in ids:
            return f'id {row["id"]!r} is listed twice'
        ids.add(row["id"])
    return None


def check_id(model_id: str) -> str:
    """`model_id` if the fork's registry accepts it as a row id, else a FrgbError."""
    if not ID_PATTERN.match(model_id):
        raise FrgbError(f"model id {model_id!r} does not match the registry's id pattern {ID_PATTERN.pattern} "
                        "(lower-case letters, digits, underscores)")
    return model_id


#: An SPDX license expression: ids (LicenseRef-... too) joined by single spaces (AND, OR, WITH, parentheses).
LICENSE_PATTERN = re.compile(r"^[A-Za-z0-9.+:()-]+( [A-Za-z0-9.+:()-]+)*$")


def check_license(license: str) -> str:
    """`license` if it reads as an SPDX license expression, else a FrgbError (an empty one was ignored)."""
    if not LICENSE_PATTERN.match(license):
        raise FrgbError(f"--license {license!r} is not an SPDX license id or expression (e.g. MIT, "
                        "BSD-2-Clause-Patent, 'Apache-2.0 OR MIT')")
    return license


def short_notes(notes: str) -> str:
    """`notes` cut to the schema's NOTES_MAX characters (at a word, with an ellipsis) if longer."""
    if len(notes) <= NOTES_MAX:
        return notes
    return notes[:NOTES_MAX - 1].rsplit(" ", 1)[0] + "…"


def registry_row(sidecar: dict) -> dict:
    """The registry row frgb writes for a model with this sidecar (frgb's fields, and those a new
    row gets)."""
    row = {k: sidecar[k] for k in ("id", "kind", "onnx", "opset", "sha256") if k in sidecar}
    row["notes"] = short_notes(str(sidecar.get("notes", "")))
    row["smoke"] = bool(sidecar.get("training", {}).get("smoke", False))
    for key in ("license", *NEW_ROW_FIELDS):
        if sidecar.get(key):
            row[key] = sidecar[key]
    return row


def _merged(old: dict | None, row: dict) -> dict:
    """`row` over the `old` row of its id: frgb's fields from `row`, the rest kept from `old`, but a
    sigstore_bundle only if the file it signed is unchanged."""
    if old is None:
        return row
    kept = {k: v for k, v in old.items() if k not in FRGB_FIELDS}
    if "sigstore_bundle" in kept and old.get("sha256") != row.get("sha256"):
        del kept["sigstore_bundle"]
    return {**{k: v for k, v in row.items() if not (k in NEW_ROW_FIELDS and k in kept)}, **kept}


def with_row(document: dict, row: dict) -> dict:
    """`document` with `row` replacing the row of its id in place, or added before the first row
    with a larger id (so a sorted registry stays sorted); every other top-level key and row as it
    was, and `schema_version` added if it was missing."""
    rows = list(document["models"])
    at = next((i for i, r in enumerate(rows) if r.get("id") == row["id"]), None)
    if at is None:
        at = next((i for i, r in enumerate(rows) if str(r.get("id", "")) > row["id"]), len(rows))
        rows.insert(at, row)
    else:
        rows[at] = _merged(rows[at], row)
    return {**document, "schema_version": document.get("schema_version", SCHEMA_VERSION), "models": rows}


def signature_notices(document: dict, ids_and_digests: dict[str, str]) -> list[str]:
    """One line for each row among `ids_and_digests` (id -> SHA-256 of the new file) whose
    sigstore_bundle will be dropped because it signed a different file, saying how to re-sign."""
    notices = []
    for row in document["models"]:
        new = ids_and_digests.get(row.get("id"))
        if new is not None and row.get("sigstore_bundle") and row.get("sha256") != new:
            onnx = row.get("onnx", f"{row['id']}.onnx")
            notices.append(f"registry.json: dropped the sigstore_bundle of {row['id']} (it signed the previous "
                           f"{onnx}); re-sign with `cosign sign-blob --bundle {onnx}.sigstore.json {onnx}` and set "
                           f"sigstore_bundle to {onnx}.sigstore.json")
    return notices
