"""The evidence pack as one self-contained HTML page (``oemkit evidence --html``): no
script, no font, no image, no link to anything outside the page; readable on screen and
printed (tables break between rows, not inside them). Pure: a pack document in, a string
out; every value escaped."""

from __future__ import annotations

from html import escape
from typing import Any

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#111;margin:2em;}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .5em;
border-bottom:2px solid #1f4e79;color:#1f4e79}
table{border-collapse:collapse;width:100%;margin:.4em 0}
th,td{border:1px solid #9aa7b4;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#dde7f0}tr{page-break-inside:avoid}
td.mono,span.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;
word-break:break-all}
.pass{background:#d7f0d7}.fail{background:#f7d4d4}.warn{background:#fbeec2}
.info{background:#eef2f6}.meta{color:#444}
@media print{body{margin:0}h2{page-break-after:avoid}}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _table(head: list[str], rows: list[list[Any]], *, mono: tuple[int, ...] = (),
           classes: list[str] | None = None) -> str:
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = f' class="{_e(classes[i])}"' if classes else ""
        out.append(f"<tr{cls}>")
        for j, cell in enumerate(row):
            out.append(f'<td class="mono">{_e(cell)}</td>' if j in mono else f"<td>{_e(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def to_html(doc: dict[str, Any], results: list[dict[str, Any]] | None = None) -> str:
    """The page for pack document ``doc``; ``results`` (``evidence verify``'s claims with
    ``holds``) adds a column saying whether each claim still holds."""
    bundle, root = doc["bundle"], doc["trust_root"]
    parts = ["<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>Evidence: {_e(bundle['name'])} {_e(bundle['version'])}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Evidence pack: {_e(bundle['name'])} {_e(bundle['version'])}</h1>",
             f"<p class=\"meta\">Made {_e(doc['created'])} by {_e(doc['tool'])}; signed by key "
             f"<span class=\"mono\">{_e(doc['signer']['keyid'])}</span>. Bundle file "
             f"{_e(bundle['file'])}, manifest sha256 <span class=\"mono\">"
             f"{_e(bundle['manifest_sha256'])}</span>; trust root v{_e(root['version'])} "
             f"(sha256 <span class=\"mono\">{_e(root['sha256'])}</span>). Re-check offline: "
             f"<span class=\"mono\">oemkit evidence verify PACK.oeme --trust ROOT</span>.</p>",
             "<h2>Claims and their evidence</h2>"]
    holds = {r["id"]: r for r in results or []}
    head = ["claim", "what is claimed", "test or check", "artifact", "digest (sha256)",
            "config"] + (["still holds"] if results is not None else [])
    rows, classes = [], []
    for c in doc["claims"]:
        row = [c["id"], c["claim"], c["evidence"], c["artifact"], c["digest"], c["config"]]
        if results is not None:
            r = holds.get(c["id"], {})
            row.append(("yes: " if r.get("holds") else "NO: ") + str(r.get("detail", "")))
            classes.append("pass" if r.get("holds") else "fail")
        rows.append(row)
    parts.append(_table(head, rows, mono=(4,), classes=classes or None))
    ver = doc["verification"]
    parts.append("<h2>Verification (oemkit verify)</h2>")
    parts.append(f"<p>Signers: <span class=\"mono\">{_e(', '.join(ver['signers']))}</span></p>")
    parts.append(_table(["check", "status", "detail"],
                        [[c["name"], c["status"], c["detail"]] for c in ver["checks"]],
                        classes=[c["status"] for c in ver["checks"]]))
    sbom = doc["sbom"]
    parts.append(f"<h2>Software bill of materials</h2><p>{sbom['components']} components "
                 f"({sbom['files']} payload files); licenses: "
                 + _e(", ".join(f"{k} ({v})" for k, v in sbom["licenses"].items())) + "</p>")
    parts.append(_table(["type", "name", "version", "licenses", "purl", "sha256"],
                        [[r["type"], r["name"], r["version"], ", ".join(r["licenses"]),
                          r["purl"], r["sha256"]] for r in sbom["libraries"]], mono=(4, 5)))
    if doc["smoke"]:
        s = doc["smoke"]
        host = ", ".join(f"{k} {v}" for k, v in sorted((s.get("host") or {}).items()) if v)
        parts.append(f"<h2>Smoke test</h2><p>{_e(s['result'])} on profile {_e(s['profile'])}"
                     f" ({_e(s['passed'])} passed, {_e(s['warned'])} warned, {_e(s['failed'])}"
                     f" failed), finished {_e(s.get('finished'))}; attested by key "
                     f"<span class=\"mono\">{_e(s['attested_by'])}</span>. Host: {_e(host)}."
                     "</p>")
    if doc["migration"]:
        m = doc["migration"]
        a = m.get("attested") if isinstance(m.get("attested"), dict) else None
        parts.append(f"<h2>Config migrations</h2><p>{_e(m['suite'])}: {_e(m['tests'])} tests, "
                     f"{_e(m['failures'])} failures, {_e(m['errors'])} errors."
                     + (f" {_e(a['result'])} to config version {_e(a['config_version'])}, "
                        f"finished {_e(a.get('finished'))}; attested by key <span class=\"mono"
                        f"\">{_e(a['attested_by'])}</span>." if a else "") + "</p>")
    if doc["licenses"]:
        parts.append("<h2>Licenses</h2>")
        parts.append(_table(["license", "customer", "product", "status", "expires", "features",
                             "signer"],
                            [[lic["license_id"], lic["customer"], lic["product"], lic["status"],
                              lic["expires"], ", ".join(lic["features"]), lic["signer"]]
                             for lic in doc["licenses"]], mono=(6,)))
    if doc["sizing"]:
        rec = doc["sizing"]["recommendation"]
        parts.append(f"<h2>Sizing</h2><p>{_e(doc['sizing']['claim'])}.</p>")
        parts.append(_table(["figure", "value"], [[k, v] for k, v in sorted(rec.items())
                                                  if not isinstance(v, (dict, list))]))
    parts.append("<h2>Artifacts in the pack</h2>")
    parts.append(_table(["artifact", "media type", "bytes", "sha256"],
                        [[a["name"], a["media_type"], a["size"], a["sha256"]]
                         for a in doc["artifacts"]], mono=(3,)))
    parts.append("</body></html>\n")
    return "".join(parts)
