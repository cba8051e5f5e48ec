"""Malformed architecture inputs, shared by the arch tests and the CLI tests."""

import json

from stnas.space.catalog import load_arch, load_space


def _valid_json():
    s = load_space("digits")
    return s, load_arch("digits:012012/.1.0.....").to_json()


MALFORMED = {
    "empty": lambda tmp: "",
    "missing file": lambda tmp: str(tmp / "nope.json"),
    "malformed JSON": lambda tmp: _write(tmp, "{not json"),
    "wrong format": lambda tmp: _write(tmp, json.dumps(dict(_valid_json()[1], format="other"))),
    "wrong version": lambda tmp: _write(tmp, json.dumps(dict(_valid_json()[1], version=99))),
    "unknown space": lambda tmp: "nosuchspace:0000/..",
    "wrong space fingerprint": lambda tmp: _write(tmp, json.dumps(dict(_valid_json()[1], space_fingerprint="0" * 12))),
    "stem too short": lambda tmp: "digits:01201/.1.0.....",
    "branches too long": lambda tmp: "digits:012012/.1.0......",
    "unknown op in JSON": lambda tmp: _write(tmp, json.dumps(dict(_valid_json()[1], stem=["mb_k9_e9"] * 6))),
    "bad op character": lambda tmp: "digits:01201Z/.1.0.....",
    "op index out of range": lambda tmp: "digits:01201z/.1.0.....",
    "op on an absent branch": lambda tmp: _write(tmp, json.dumps(dict(
        _valid_json()[1], branches=[{"from": 0, "to": 5, "op": "conv1x1"}]))),
    "op that does not fit the edge": lambda tmp: "digits:312012/.........",  # skip on a stride-2 edge
    "no separator": lambda tmp: "digits:012012",
    "JSON not an object": lambda tmp: _write(tmp, "[1, 2]"),
    "duplicate branch": lambda tmp: _write(tmp, json.dumps(dict(_valid_json()[1], branches=[
        {"from": 0, "to": 2, "op": "conv1x1"}, {"from": 0, "to": 2, "op": "conv1x1"}]))),
}


def _write(tmp, text):
    p = tmp / "arch.json"
    p.write_text(text)
    return str(p)
