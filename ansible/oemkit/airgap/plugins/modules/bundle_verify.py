#!/usr/bin/python
# Copyright: oemkit contributors
# Apache License 2.0 (see the oemkit repository's LICENSE)
"""oemkit.airgap.bundle_verify: verify a bundle against the pinned trust root."""

DOCUMENTATION = r"""
---
module: bundle_verify
short_description: Verify an oemkit bundle offline against the pinned trust root
version_added: "0.1.0"
description:
  - Runs C(oemkit verify BUNDLE --trust TRUST --json) on the managed host,
    which checks the archive structure, the trust chain, the signatures, the provenance,
    the manifest, the SBOM and every payload file's SHA-256.
  - Fails, with oemkit's error code, message and hint, when the bundle does not verify
    (a tampered payload is C(E_PAYLOAD_DIGEST), an unknown signer C(E_KID_UNKNOWN), and so
    on); the report's rows are in C(oemkit.checks).
  - Read only; never reports a change.
options:
  bundle:
    description: The bundle (C(.oemb)) on the managed host.
    type: path
    required: true
  trust:
    description: The pinned trust root on the managed host (C(trust-root.json)).
    type: path
    required: true
  env:
    description: This host's environment name, for an attached license bound to one.
    type: str
  extra_args:
    description: More C(oemkit verify) options, as given (the reader limits
      C(--max-files), C(--max-member-size), C(--max-payload-bytes) for a giant bundle).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - oemkit.airgap.common
  - oemkit.airgap.common.state
attributes:
  check_mode:
    support: full
    description: Runs as usual (it changes nothing); an attached license is judged against a
      private copy of the state file.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
author:
  - oemkit maintainers
"""

EXAMPLES = r"""
- name: Verify the release on the host before anything else
  oemkit.airgap.bundle_verify:
    bundle: /var/lib/oemkit/bundles/example-0.2.0.oemb
    trust: /etc/oemkit/trust-root.json
  register: verified

- name: Say what was verified
  ansible.builtin.debug:
    msg: "{{ verified.name }} {{ verified.version }} (sha256 {{ verified.manifest_sha256 }})"
"""

RETURN = r"""
name:
  description: The bundle's product name.
  returned: success
  type: str
  sample: example
version:
  description: The bundle's release version.
  returned: success
  type: str
  sample: 0.2.0
manifest_sha256:
  description: SHA-256 of the signed manifest (what identifies the release; a slot is named
    C(NAME-VERSION-) and its first 12 hex digits).
  returned: success
  type: str
  sample: b6e5a6cc98185c98698a9101d2dbeb358721804c68356d69d02ab92300f4f8dd
verdict:
  description: oemkit's verdict (C(verified)).
  returned: success
  type: str
  sample: verified
oemkit:
  description: The document of C(oemkit verify --json) (C(ok), C(verdict), C(checks),
    C(signers), C(trust_root_version), C(license), C(error) ...).
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
  sample: E_PAYLOAD_DIGEST
hint:
  description: oemkit's hint for the error.
  returned: failure
  type: str
  sample: the bundle was altered after signing; obtain a fresh copy from the vendor
exit_code:
  description: oemkit's exit code (1 a verification failure, 3 bad input, 4 environment).
  returned: failure
  type: int
  sample: 1
check:
  description: The verification row that failed.
  returned: failure
  type: str
  sample: payload
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.oemkit.airgap.plugins.module_utils.oemkit import (
    COMMON_ARGS,
    STATE_ARGS,
    CheckState,
    Oemkit,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            COMMON_ARGS, **STATE_ARGS,
            bundle={"type": "path", "required": True},
            trust={"type": "path", "required": True},
            env={"type": "str"},
            extra_args={"type": "list", "elements": "str", "default": []}),
        supports_check_mode=True)
    p = module.params
    oemkit = Oemkit(module)
    with CheckState(module, p["state_file"]) as state:
        doc = oemkit.verify(p["bundle"], p["trust"], state, p["env"], p["extra_args"])
    module.exit_json(changed=False, oemkit=doc, oemkit_calls=oemkit.calls,
                     name=doc.get("name"), version=doc.get("version"),
                     manifest_sha256=doc.get("manifest_sha256"), verdict=doc.get("verdict"))


if __name__ == "__main__":
    main()
