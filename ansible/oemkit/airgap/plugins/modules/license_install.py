#!/usr/bin/python
# Copyright: oemkit contributors
# Apache License 2.0 (see the oemkit repository's LICENSE)
"""oemkit.airgap.license_install: verify a license, then place it in PREFIX/licenses/."""

DOCUMENTATION = r"""
---
module: license_install
short_description: Verify an oemkit license and install it for every release under a prefix
version_added: "0.1.0"
description:
  - oemkit has no C(license install) command; a host's licenses are files. C(oemkit serve
    PREFIX) reads C(PREFIX/licenses/*.lic) (the site's licenses for every release, a
    directory install, upgrade and rollback accept and never touch) besides the ones in the
    slot. This module verifies the license first with
    C(oemkit license verify SRC --trust TRUST --json) on the managed host, then writes it
    atomically to C(PREFIX/licenses/NAME) (mode 0644, so a service user can read it).
  - The trust root defaults to the current slot's (C(PREFIX/current/trust-root.json), the
    one install verified the release against), so a license the running release cannot
    accept is refused before it is placed.
  - Idempotent; a file with the same bytes already in place is no change. A license that
    does not verify fails with oemkit's error code, message and hint (C(E_EXPIRED),
    C(E_KID_UNKNOWN), C(E_HW_MISMATCH), C(E_REVOKED), ...) and nothing is written.
  - The server reads licenses at start, every C(check_interval_s) and on SIGHUP; notify a
    handler that reloads the unit (C(systemctl reload oemkit-BUNDLE)) to apply it at once.
options:
  src:
    description: The license file (C(.lic)) on the managed host.
    type: path
    required: true
  prefix:
    description: The install root; the license goes to C(PREFIX/licenses/).
    type: path
    required: true
  name:
    description: The file name under C(PREFIX/licenses/) (letters, digits, C(.), C(_),
      C(-), ending in C(.lic)); default the name of C(src).
    type: str
  trust:
    description: The pinned trust root to verify against (default
      C(PREFIX/current/trust-root.json)).
    type: path
  bundle:
    description: A bundle the license must cover (oemkit's C(--bundle)).
    type: path
  crl:
    description: Revocation lists to check against (oemkit's C(--crl), repeated).
    type: list
    elements: path
    default: []
  env:
    description: This host's environment name, for a license bound to one.
    type: str
  require_feature:
    description: Features the license must grant (oemkit's C(--require-feature)).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - oemkit.airgap.common
  - oemkit.airgap.common.state
attributes:
  check_mode:
    support: full
    description: Verifies the license (against a private copy of the state file) and
      reports whether the file would change; nothing is written.
  diff_mode:
    support: full
    description: The installed license's id, re-issue and SHA-256 before and after.
author:
  - oemkit maintainers
"""

EXAMPLES = r"""
- name: Copy the customer's renewed license to the host
  ansible.builtin.copy:
    src: licenses/acme-example.lic
    dest: /var/lib/oemkit/incoming/acme-example.lic
    mode: "0644"

- name: Verify it and install it for every release under /opt/example
  oemkit.airgap.license_install:
    src: /var/lib/oemkit/incoming/acme-example.lic
    prefix: /opt/example
    state_file: /var/lib/oemkit/license-state.json
    require_feature: [serve]
  notify: reload oemkit

# handlers:
#   - name: reload oemkit
#     ansible.builtin.systemd_service:
#       name: oemkit-example
#       state: reloaded
"""

RETURN = r"""
dest:
  description: Where the license is (or would be) installed.
  returned: always
  type: str
  sample: /opt/example/licenses/acme-example.lic
sha256:
  description: SHA-256 of the installed license file.
  returned: success
  type: str
license_id:
  description: The license's id.
  returned: success
  type: str
  sample: acme-example
verdict:
  description: oemkit's verdict (C(valid), or C(grace) with a warning).
  returned: success
  type: str
  sample: valid
expires:
  description: When the license expires (UTC).
  returned: success
  type: str
  sample: "2030-01-01T00:00:00Z"
oemkit:
  description: The document of C(oemkit license verify --json) (C(ok), C(verdict),
    C(license_id), C(customer), C(product), C(expires), C(entitlements), C(warnings),
    C(error) on failure).
  returned: always
  type: dict
oemkit_calls:
  description: The oemkit commands run, each with its arguments, exit code and wall time.
  returned: always
  type: list
  elements: dict
code:
  description: oemkit's error code.
  returned: failure
  type: str
  sample: E_EXPIRED
hint:
  description: oemkit's hint for the error.
  returned: failure
  type: str
exit_code:
  description: oemkit's exit code.
  returned: failure
  type: int
  sample: 1
"""

import hashlib
import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.oemkit.airgap.plugins.module_utils.oemkit import (
    COMMON_ARGS,
    STATE_ARGS,
    CheckState,
    Oemkit,
)

_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,250}\.lic$")


def _describe(doc, digest):
    return "license_id: {}\nseq: {}\nexpires: {}\nsha256: {}\n".format(
        doc.get("license_id"), doc.get("seq"), doc.get("expires"), digest)


def _write(path, data):
    """Write ``data`` to ``path`` atomically: a temporary file beside it, fsync, rename."""
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".lic.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            COMMON_ARGS, **STATE_ARGS,
            src={"type": "path", "required": True}, prefix={"type": "path", "required": True},
            name={"type": "str"}, trust={"type": "path"}, bundle={"type": "path"},
            crl={"type": "list", "elements": "path", "default": []}, env={"type": "str"},
            require_feature={"type": "list", "elements": "str", "default": []}),
        supports_check_mode=True)
    p = module.params
    oemkit = Oemkit(module)
    prefix = p["prefix"]
    name = p["name"] or os.path.basename(p["src"])
    folder = os.path.join(prefix, "licenses")
    dest = os.path.join(folder, name)
    if not _NAME.match(name):
        module.fail_json(msg=f"{name!r} is not a license file name oemkit reads", code="E_USAGE",
                         hint="name it like acme-example.lic (letters, digits, . _ -)",
                         exit_code=None, check=None, dest=dest)
    status = oemkit.status(prefix)  # the prefix is oemkit's (E_PREFIX_LAYOUT otherwise)
    trust = p["trust"]
    if not trust:
        if not status.get("current"):
            oemkit.refuse("E_NOT_INSTALLED", f"nothing is installed under {prefix}, so there is no "
                          "trust root to verify the license against",
                          "give trust, or install a release first", 3, dest=dest)
        trust = os.path.join(prefix, "current", "trust-root.json")
    args = ["license", "verify", p["src"], "--trust", trust]
    if p["bundle"]:
        args += ["--bundle", p["bundle"]]
    for crl in p["crl"]:
        args += ["--crl", crl]
    for feature in p["require_feature"]:
        args += ["--require-feature", feature]
    if p["env"]:
        args += ["--env", p["env"]]
    with CheckState(module, p["state_file"]) as state:
        if state:
            args += ["--state", state]
        doc = oemkit.call(args, dest=dest)
    with open(p["src"], "rb") as handle:
        data = handle.read()
    digest = hashlib.sha256(data).hexdigest()
    if os.path.islink(folder) or (os.path.lexists(folder) and not os.path.isdir(folder)):
        module.fail_json(msg=f"{folder} is not a directory oemkit accepts",
                         code="E_PREFIX_LAYOUT", exit_code=3, check=None, dest=dest,
                         hint="PREFIX/licenses must be a plain directory; move it away")
    old = None
    if os.path.lexists(dest):
        if os.path.islink(dest) or not os.path.isfile(dest):
            module.fail_json(msg=f"{dest} exists and is not a regular file", code="E_WRITE",
                             exit_code=4, check=None, dest=dest,
                             hint="remove it by hand; the module never follows a link there")
        with open(dest, "rb") as handle:
            old = handle.read()
    changed = old != data
    if changed and not module.check_mode:
        if not os.path.isdir(folder):
            os.makedirs(folder, 0o755)
        _write(dest, data)
    result = dict(changed=changed, dest=dest, sha256=digest, oemkit=doc,
                  oemkit_calls=oemkit.calls, license_id=doc.get("license_id"),
                  verdict=doc.get("verdict"), expires=doc.get("expires"))
    if module._diff:
        if old is None:
            before = "(no license)\n"
        elif old == data:
            before = _describe(doc, digest)
        else:  # another license under that name: what is known of it without verifying
            before = f"sha256: {hashlib.sha256(old).hexdigest()}\n"
        result["diff"] = {"before_header": dest, "after_header": dest, "before": before,
                          "after": _describe(doc, digest)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
