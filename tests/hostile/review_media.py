"""Corpus cases for split/join and the media index (issue 13, High class 5 and the media
part of class 2): the unsigned index must not choose or clobber the output file, every
number in it is an exact integer in range, and it is bounded before it is parsed.

One genuine split of a small signed bundle (``hostile-1.0.0``) in one part, made with
oemkit's own ``split_bundle``; the hostile indexes are that index's payload edited (and
left unsigned, as an attacker with no key must, or signed by a stranger). Every join case
runs in a scratch folder ({work}) with ``--out`` inside it. tests/hostile/test_review_media.py
checks, beyond the code, that the files these cases aim at are untouched.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

from oemkit._canonical import canonical_json
from oemkit.crypto.keys import PrivateKeyInfo
from oemkit.host.media import INDEX_PAYLOAD_TYPE, default_work_dir, split_bundle

PREFIX = "review-media-"
PART = PREFIX + "part.bin"
INDEX = PREFIX + "index-genuine.json"
SPLIT_SIZE = PREFIX + "split-size-400-digits.oemb"
#: The names the parts and the index have on the medium (as split wrote them).
PART_NAME = "hostile-1.0.0.oemb.part001"
INDEX_NAME = "hostile-1.0.0.oemb.index.json"
OUTPUT = "hostile-1.0.0.oemb"  # NAME-VERSION.oemb of the verified manifest
TRUST = "trust-root.json"


def genuine(forge: Any) -> tuple[bytes, bytes, bytes, dict[str, Any]]:
    """(bundle, its one part, its unsigned index, the index payload as a dict)."""
    bundle = forge.bundle()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / OUTPUT
        path.write_bytes(bundle)
        split = split_bundle(path, 1 << 20, Path(tmp) / "media")
        part, index = split.parts[0].read_bytes(), split.index.read_bytes()
    payload = json.loads(base64.b64decode(json.loads(index)["payload"]))
    return bundle, part, index, payload


def envelope(payload: bytes, signatures: list[dict[str, str]] | None = None) -> bytes:
    doc = {"payload": base64.b64encode(payload).decode(), "payloadType": INDEX_PAYLOAD_TYPE,
           "signatures": signatures or []}
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def join(*extra: str, index_name: str = INDEX_NAME, part_name: str = PART_NAME,
         out: str = "{work}/out", trust: str = "{corpus}/" + TRUST) -> list[str]:
    return ["join", "{work}/" + part_name, "--index", "{work}/" + index_name, "--trust", trust,
            "--out", out, *extra, "--json"]


def setup(index_file: str, *, part_name: str = PART_NAME, index_name: str = INDEX_NAME,
          **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"dirs": ["out", *more.pop("dirs", [])],
                           "copies": {part_name: PART, index_name: index_file,
                                      **more.pop("copies", {})}}
    out.update(more)
    return out


def cases(c: Any, forge: Any, keys: dict[str, PrivateKeyInfo]) -> None:
    _, part, index, payload = genuine(forge)
    sha16 = payload["bundle"]["sha256"][:16]
    work_area = default_work_dir(Path("out"), payload["bundle"]["sha256"]).as_posix()
    assert work_area == f"out/.oemkit-join-{sha16}"

    # Controls: the genuine split joins (and the names it was given do not matter).
    c.add(PART, "cli", "control: the genuine one-part split joins into "
          f"{{work}}/out/{OUTPUT} (NAME-VERSION.oemb of the verified manifest)", part, None, 0,
          command=join(), setup=setup(INDEX))
    c.add(INDEX, "cli", "--out naming an existing file (here the host's copy of the trust "
          "root) is refused before a byte is copied; join never replaces a file it did not "
          "create without --force", index, "E_OUTPUT_EXISTS", 3,
          command=join(out="{work}/" + TRUST), setup=setup(INDEX, copies={TRUST: TRUST}))
    c.add(SPLIT_SIZE, "cli", "split --size with 400 digits: E_USAGE, not an overflow (the "
          "size is refused before the file is read)", b"not a bundle: never read\n",
          "E_USAGE", 2, command=["split", "{corpus}/{file}", "--size", "9" * 400, "--out",
                                 "{tmp}/media", "--json"])

    def edited(file: str, tries: str, edit: Any, code: str | None, exit_code: int,
               *extra: str, raw: bytes | None = None, **kw: Any) -> None:
        doc = json.loads(json.dumps(payload))
        if edit is not None:
            edit(doc)
        data = envelope(raw if raw is not None else canonical_json(doc))
        c.add(PREFIX + file, "cli", tries, data, code, exit_code,
              command=kw.pop("command", None) or join(*extra, **kw.pop("join", {})),
              setup=kw.pop("setup", None) or setup(PREFIX + file))

    # Class 5: the unsigned index names the output file and join replaced what was there.
    def rename(doc: dict[str, Any]) -> None:
        doc["bundle"]["file"] = TRUST
        doc["parts"][0]["file"] = TRUST + ".part001"

    edited("index-names-trust-root.json", "an unsigned index naming the pinned trust root "
           "as its bundle file (review: join replaced trust-root.json): the output is named "
           f"{OUTPUT} from the verified manifest, the trust root is untouched", rename, None,
           0, setup=setup(PREFIX + "index-names-trust-root.json", part_name=TRUST + ".part001",
                          copies={TRUST: TRUST}),
           join={"part_name": TRUST + ".part001", "out": "{work}", "trust": "{work}/" + TRUST})

    def rename_to(name: str) -> Any:
        def edit(doc: dict[str, Any]) -> None:
            doc["bundle"]["file"] = name
            doc["parts"][0]["file"] = name + ".part001"
        return edit

    edited("index-file-traversal.json", "bundle.file '../trust-root.json': not a plain "
           "file name", rename_to("../" + TRUST), "E_INDEX_INVALID", 1)

    def part_file(doc: dict[str, Any]) -> None:
        doc["parts"][0]["file"] = "../../etc/passwd"

    edited("index-part-file-free.json", "a part file name that is not the one split "
           "derives (NAME.partNNN)", part_file, "E_INDEX_INVALID", 1)

    def other_name(doc: dict[str, Any]) -> None:
        doc["bundle"]["name"], doc["bundle"]["version"] = "trust-root", "json"

    edited("index-name-not-the-manifests.json", "an unsigned index whose bundle name and "
           "version (the default output name) are not the verified manifest's",
           other_name, "E_INDEX_MISMATCH", 1)

    # Numbers: exact JSON integers in range, never floats, booleans, strings or huge.
    text = canonical_json(payload).decode()
    size = payload["bundle"]["size"]
    numbers = [
        ("size-1e400", f'"size":{size},', '"size":1e400,', "bundle.size 1e400 (a JSON "
         "parser's infinity; the review's crash before any check)"),
        ("size-float", f'"size":{size},', f'"size":{size}.0,', "bundle.size as a float"),
        ("size-true", '"part_size":1048576', '"part_size":true', "part_size true"),
        ("size-string", f'"size":{size},', f'"size":"{size}",', "bundle.size as a string"),
        ("size-5000-digits", f'"size":{size},', '"size":' + "9" * 5000 + ",",
         "bundle.size of 5,000 digits (beyond Python's int parsing limit)"),
        ("size-2-pow-64", f'"size":{size},', f'"size":{1 << 64},', "bundle.size 2^64 "
         "(beyond canonical JSON's 2^53 - 1)"),
        ("offset-negative", '"offset":0', '"offset":-1', "a negative part offset"),
        ("number-float", '"number":1', '"number":1.0', "a part number as 1.0"),
        ("version-true", '"version":1}', '"version":true}', "index version true (== 1 "
         "in Python)"),
    ]
    for name, old, new, tries in numbers:
        assert text.count(old) == 1, (name, old)
        edited(f"index-{name}.json", tries, None, "E_INDEX_INVALID", 1,
               raw=text.replace(old, new).encode())

    edited("index-not-canonical.json", "a payload that is valid JSON but not the canonical "
           "form split writes (spaces)", None, "E_INDEX_INVALID", 1,
           raw=json.dumps(payload, indent=1).encode())

    def extra_field(doc: dict[str, Any]) -> None:
        doc["parts"][0]["path"] = "/etc/passwd"

    edited("index-unknown-field.json", "an unknown field in a part entry", extra_field,
           "E_INDEX_INVALID", 1)

    # Class 2: cost before trust. Bounds scaled down with --max-parts to fit the corpus;
    # tests/hostile/test_review_media.py runs the review's 75,000 parts at the default.
    def many(n: int) -> Any:
        def edit(doc: dict[str, Any]) -> None:
            template = doc["parts"][0]
            file = doc["bundle"]["file"]
            doc["bundle"]["size"] = n
            doc["parts"] = [dict(template, number=i, offset=i - 1, length=1, size=129,
                                 file=f"{file}.part{i:03d}") for i in range(1, n + 1)]
        return edit

    edited("index-over-max-parts.json", "an unsigned index of 101 parts with --max-parts "
           "100: E_LIMIT_PARTS", many(101), "E_LIMIT_PARTS", 1, "--max-parts", "100")
    edited("index-objects-over-max-parts.json", "a payload of 1,000 empty JSON objects "
           "with --max-parts 10: refused by its structure count, before it is parsed",
           None, "E_LIMIT_PARTS", 1, "--max-parts", "10",
           raw=b"[" + b",".join([b"{}"] * 1000) + b"]")
    # (An index over its byte bound, E_TOO_LARGE, needs more than 64 KiB: it is a test in
    # test_review_media.py, with the review's 75,000 parts.)

    # Signatures are checked over the exact payload before it is parsed.
    from hostile.make_corpus import seeded_key
    from oemkit.crypto.dsse import make_envelope

    stranger = seeded_key(1301, "stranger")
    garbage = b'{"parts": [' + b"[" * 200
    signed = make_envelope([stranger], INDEX_PAYLOAD_TYPE, garbage)
    c.add(PREFIX + "index-signed-garbage-stranger.json", "cli", "an index signed by a "
          "stranger over a payload that is not JSON: E_INDEX_SIGNATURE, the payload is never "
          "parsed", envelope(garbage, [{"keyid": stranger.keyid,
                                         "sig": base64.b64encode(signed.signatures[0]).decode()}]),
          "E_INDEX_SIGNATURE", 1, command=join(),
          setup=setup(PREFIX + "index-signed-garbage-stranger.json"))
    trusted = make_envelope([keys["bundle"]], INDEX_PAYLOAD_TYPE, garbage)
    c.add(PREFIX + "index-signed-garbage-trusted.json", "cli", "the same payload signed by "
          "the trusted bundle key: now parsed, and E_INDEX_INVALID",
          envelope(garbage, [{"keyid": keys["bundle"].keyid,
                              "sig": base64.b64encode(trusted.signatures[0]).decode()}]),
          "E_INDEX_INVALID", 1, command=join(),
          setup=setup(PREFIX + "index-signed-garbage-trusted.json"))

    # The work area: join writes only into a folder it made, never through a link.
    edited("work-area-symlink.json", "the work area is a symbolic link to another folder: "
           "E_WORK_AREA, nothing written there", None, "E_WORK_AREA", 3,
           setup=setup(PREFIX + "work-area-symlink.json", dirs=["elsewhere"],
                       symlinks={work_area: "{work}/elsewhere"}))
    edited("work-area-foreign-file.json", "the work area holds a file join did not write "
           "(photos.db): E_WORK_AREA, the file is kept", None, "E_WORK_AREA", 3,
           setup=setup(PREFIX + "work-area-foreign-file.json",
                       files={work_area + "/photos.db": "precious\n"}))
    edited("work-area-data-symlink.json", "the work area's data file is a symbolic link "
           "to a file outside: E_WORK_AREA, the file is untouched", None, "E_WORK_AREA", 3,
           setup=setup(PREFIX + "work-area-data-symlink.json",
                       files={"victim.txt": "precious\n"}, dirs=[work_area],
                       symlinks={work_area + "/data": "{work}/victim.txt"}))
    # (A hostile state.json in the work area needs a data file of the bundle's size beside
    # it, too big for INDEX.json's setup: test_review_media.py has those cases.)
    edited("force-over-trust-root.json", "--force with --out naming the trust root given "
           "as --trust: join never replaces its inputs", None, "E_USAGE", 2, "--force",
           setup=setup(PREFIX + "force-over-trust-root.json", copies={TRUST: TRUST}),
           join={"out": "{work}/" + TRUST, "trust": "{work}/" + TRUST})
