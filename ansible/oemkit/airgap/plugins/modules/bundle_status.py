#!/usr/bin/python
# Copyright: oemkit contributors
# Apache License 2.0 (see the oemkit repository's LICENSE)
"""oemkit.airgap.bundle_status: the slots under a prefix (oemkit status --json)."""

DOCUMENTATION = r"""
---
module: bundle_status
short_description: Show which oemkit release a host runs (oemkit status)
version_added: "0.1.0"
description:
  - Runs C(oemkit status --prefix PREFIX --json) on the managed host and returns the slots
    under the prefix (C(current), C(previous), incomplete ones), each with its version,
    manifest digest, install time and config version.
  - Sets the fact C(oemkit_status) to oemkit's document.
  - Read only; never reports a change. A prefix that does not exist is empty (no current).
options:
  prefix:
    description: The install root (oemkit's C(--prefix)).
    type: path
    required: true
extends_documentation_fragment:
  - oemkit.airgap.common
attributes:
  check_mode:
    support: full
    description: Runs as usual; it changes nothing.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
author:
  - oemkit maintainers
"""

EXAMPLES = r"""
- name: Which release does each host run?
  oemkit.airgap.bundle_status:
    prefix: /opt/example
  register: st

- name: Show it
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} runs {{ st.current_version }} ({{ st.current }})"

- name: Refuse a half-done prefix
  ansible.builtin.assert:
    that: st.consistent
"""

RETURN = r"""
current:
  description: The current slot's name (C(NAME-VERSION-DIGEST12)), or null.
  returned: always
  type: str
  sample: example-0.1.0-cf1302c4eaa6
current_version:
  description: The current slot's release version, or null.
  returned: always
  type: str
  sample: 0.1.0
previous:
  description: The previous slot's name (what a rollback goes back to), or null.
  returned: always
  type: str
  sample: null
previous_version:
  description: The previous slot's release version, or null.
  returned: always
  type: str
  sample: null
consistent:
  description: False when C(current) names a slot without a valid C(slot.json) (rerun the
    last command).
  returned: always
  type: bool
  sample: true
oemkit:
  description: The document of C(oemkit status --json) (C(ok), C(prefix), C(current),
    C(previous), C(consistent), C(slots)).
  returned: always
  type: dict
  sample:
    ok: true
    prefix: /opt/example
    current: example-0.1.0-cf1302c4eaa6
    previous: null
    consistent: true
    slots:
      - name: example-0.1.0-cf1302c4eaa6
        bundle_name: example
        version: 0.1.0
        manifest_sha256: cf1302c4eaa6f0587831f6cb4cb1935cce7e642a769ea8209ec5b364cf490531
        installed_at: "2026-12-03T18:12:52Z"
        config_version: 1
        current: true
        previous: false
ansible_facts:
  description: The fact C(oemkit_status), the same document.
  returned: always
  type: dict
  contains:
    oemkit_status:
      description: The document of C(oemkit status --json).
      type: dict
oemkit_calls:
  description: The oemkit commands run, each with its arguments, exit code and wall time.
  returned: always
  type: list
  elements: dict
  sample: [{"args": ["status", "--prefix", "/opt/example"], "exit_code": 0, "seconds": 0.41}]
code:
  description: oemkit's error code (for example C(E_PREFIX_LAYOUT)).
  returned: failure
  type: str
  sample: E_PREFIX_LAYOUT
hint:
  description: oemkit's hint for the error.
  returned: failure
  type: str
exit_code:
  description: oemkit's exit code (0 ok, 1 a failed check, 2 usage, 3 bad input,
    4 environment, 70 internal).
  returned: failure
  type: int
  sample: 3
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.oemkit.airgap.plugins.module_utils.oemkit import (
    COMMON_ARGS,
    Oemkit,
    current_slot,
    previous_slot,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(COMMON_ARGS, prefix={"type": "path", "required": True}),
        supports_check_mode=True)
    oemkit = Oemkit(module)
    status = oemkit.status(module.params["prefix"])
    current, previous = current_slot(status), previous_slot(status)
    module.exit_json(
        changed=False, oemkit=status, oemkit_calls=oemkit.calls,
        current=status.get("current"), previous=status.get("previous"),
        current_version=(current or {}).get("version"),
        previous_version=(previous or {}).get("version"),
        consistent=status.get("consistent"),
        ansible_facts={"oemkit_status": status})


if __name__ == "__main__":
    main()
