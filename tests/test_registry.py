"""registry.json in the VMAF fork's registry schema: what frgb writes validates against the
schema's rules, and writing into a fork install keeps everything that was there.

The schema is written here from the rules the fork's validators apply (shared/FACTS.md "Real
consumers"; model/tiny/registry.schema.json in the fork): top-level `schema_version` (required)
and `models`; rows with only {id, kind, onnx, sha256, opset, notes, smoke, license, license_url,
sigstore_bundle, description, quant_*}; kind fr|nr|filter; opset 7..21; notes <= 512 characters.
"""

from __future__ import annotations

import copy
import errno
import json

import jsonschema
import pytest

from frgb import artifacts
from frgb.registry import registry_problem, registry_row, short_notes, with_row
from tests.helpers import sha256

ROW = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "kind", "onnx", "sha256"],
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9_]+$"},
        "kind": {"enum": ["fr", "nr", "filter"]},
        "onnx": {"type": "string"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "opset": {"type": "integer", "minimum": 7, "maximum": 21},
        "notes": {"type": "string", "maxLength": 512},
        "smoke": {"type": "boolean"},
        "license": {"type": "string"},
        "license_url": {"type": "string"},
        "sigstore_bundle": {"type": "string"},
        "description": {"type": "string"},
    },
    "patternProperties": {"^quant_": {}},
}
SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "models"],
    "properties": {"$schema": {"type": "string"}, "schema_version": {"const": 1},
                   "models": {"type": "array", "items": ROW}},
}

OTHER = {"id": "fr_regressor_v2", "kind": "fr", "onnx": "fr_regressor_v2.onnx", "sha256": "6" * 64, "opset": 17,
         "notes": "Tiny FR regressor v2 (codec-aware).", "smoke": False, "license": "BSD-3-Clause-Plus-Patent",
         "license_url": "https://example.org/LICENSE", "sigstore_bundle": "fr_regressor_v2.onnx.sigstore.json",
         "description": "the fork's own MLP"}
#: A row of the id frgb will write, as a fork maintainer left it (signed, described, quantised).
MINE = {"id": "frgb_fork_v2", "kind": "fr", "onnx": "frgb_fork_v2.onnx", "sha256": "0" * 64, "opset": 17,
        "notes": "an older frgb", "smoke": False, "license": "MIT", "license_url": "https://example.org/kept",
        "sigstore_bundle": "frgb_fork_v2.onnx.sigstore.json", "description": "kept by frgb", "quant_mode": "fp32"}


def fork_registry() -> dict:
    return {"$schema": "./registry.schema.json", "schema_version": 1, "models": [copy.deepcopy(OTHER),
                                                                                copy.deepcopy(MINE)]}


def write_fork_install(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "registry.schema.json").write_text(json.dumps(SCHEMA, indent=2))
    (folder / "registry.json").write_text(json.dumps(fork_registry(), indent=4))
    return folder


def validate(folder) -> dict:
    schema = json.loads((folder / "registry.schema.json").read_text())
    document = json.loads((folder / "registry.json").read_text())
    jsonschema.validate(document, schema)
    return document


def test_fit_fork_v2_into_a_fork_install_validates_and_keeps_what_was_there(cli, small_corpus_path, tmp_path):
    """End to end: `frgb fit --layout fork-v2 --out DIR` into a folder holding a fork-shaped registry
    with fields frgb does not write."""
    folder = write_fork_install(tmp_path / "model" / "tiny")
    result = cli("fit", "--layout", "fork-v2", "--out", folder, "--corpus", small_corpus_path, "--no-cv")
    assert result.exit_code == 0, result.output
    document = validate(folder)
    assert document["$schema"] == "./registry.schema.json" and document["schema_version"] == 1
    rows = {r["id"]: r for r in document["models"]}
    assert list(rows) == ["fr_regressor_v2", "frgb_fork_v2", "frgb_fork_v2_libvmaf"]
    assert rows["fr_regressor_v2"] == OTHER, "another row changed"
    mine = rows["frgb_fork_v2"]
    for key in ("license_url", "description", "quant_mode"):
        assert mine[key] == MINE[key], f"{key} of the replaced row was not kept"
    assert "sigstore_bundle" not in mine, "a bundle that signed the old file was kept"
    assert mine["sha256"] == sha256(folder / "frgb_fork_v2.onnx") and mine["license"] == "BSD-2-Clause-Patent"
    assert rows["frgb_fork_v2_libvmaf"]["license_url"].endswith("Netflix/vmaf/blob/master/LICENSE")
    notice = [line for line in result.output.splitlines() if "sigstore_bundle" in line]
    assert len(notice) == 1 and "cosign sign-blob" in notice[0] and "frgb_fork_v2" in notice[0]


def test_license_override_reaches_every_row_and_sidecar(cli, small_corpus_path, tmp_path):
    result = cli("fit", "--out", tmp_path, "--corpus", small_corpus_path, "--no-cv", "--target", "libvmaf",
                 "--license", "CC0-1.0")
    assert result.exit_code == 0, result.output
    assert [r["license"] for r in json.loads((tmp_path / "registry.json").read_text())["models"]] == ["CC0-1.0"]
    assert json.loads((tmp_path / "frgb_libvmaf.json").read_text())["license"] == "CC0-1.0"


@pytest.mark.parametrize("text, message", [
    ("{not json", "malformed JSON"),
    ('{"schema_version": 1}', "not a registry file"),
    ('{"schema_version": 1, "models": [1]}', "is not an object"),
    ('{"schema_version": 2, "models": []}', "schema_version 2"),
    ('{"schema_version": 1, "models": [{"id": "x", "sha256": NaN}]}', "NaN is not a JSON number"),
])
def test_an_unreadable_registry_is_an_error_that_changes_nothing(cli, small_corpus_path, tmp_path, text, message):
    (tmp_path / "registry.json").write_text(text)
    result = cli("fit", "--out", tmp_path, "--corpus", small_corpus_path, "--no-cv", "--target", "onnxml")
    assert result.exit_code == 2 and message in result.output and len(result.output.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.json"]
    assert (tmp_path / "registry.json").read_text() == text


def test_a_failed_registry_write_leaves_the_fork_install_as_it_was(cli, small_corpus_path, tmp_path, monkeypatch):
    folder = write_fork_install(tmp_path / "tiny")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real = artifacts._stage

    def full_disk(path, data):
        if path.name == artifacts.REGISTRY:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(artifacts, "_stage", full_disk)
    result = cli("fit", "--layout", "fork-v2", "--out", folder, "--corpus", small_corpus_path, "--no-cv")
    assert result.exit_code == 2 and "disk full" in result.output
    assert {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")} == before


def test_ids_outside_the_registry_pattern_are_refused_before_fitting(cli, small_corpus_path, tmp_path):
    result = cli("fit", "--out", tmp_path / "o", "--corpus", small_corpus_path, "--id", "My-Model")
    assert result.exit_code == 2 and "id pattern" in result.output and not (tmp_path / "o").exists()


def test_rows_keep_their_places_and_a_bundle_of_unchanged_bytes_stays():
    document = fork_registry()
    same = with_row(document, {**registry_row({**MINE, "training": {}}), "sha256": MINE["sha256"]})
    assert same["models"][1]["sigstore_bundle"] == MINE["sigstore_bundle"], "the signed bytes did not change"
    new = with_row(document, registry_row({"id": "a_first", "kind": "fr", "onnx": "a.onnx", "sha256": "1" * 64}))
    assert [r["id"] for r in new["models"]] == ["a_first", "fr_regressor_v2", "frgb_fork_v2"]
    assert document == fork_registry(), "with_row changed its argument"


def test_notes_are_cut_to_the_schema_limit():
    assert short_notes("x" * 10) == "x" * 10
    cut = short_notes("word " * 200)
    assert len(cut) <= 512 and cut.endswith("…")


def test_old_frgb_registries_are_read_and_gain_a_schema_version():
    document = {"models": [{"id": "frgb", "kind": "fr"}]}
    assert registry_problem(document) is None
    assert with_row(document, {"id": "frgb_x"})["schema_version"] == 1
    assert "schema_version" in registry_problem({"schema_version": True, "models": []})


def test_the_shipped_registry_validates_against_the_fork_schema(tmp_path):
    from tests.helpers import REPO

    (tmp_path / "registry.schema.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "registry.json").write_bytes((REPO / "model" / "registry.json").read_bytes())
    document = validate(tmp_path)
    assert all(row.get("license") for row in document["models"])
