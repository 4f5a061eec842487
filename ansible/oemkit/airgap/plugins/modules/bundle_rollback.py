#!/usr/bin/python
# Copyright: oemkit contributors
# Apache License 2.0 (see the oemkit repository's LICENSE)
"""oemkit.airgap.bundle_rollback: point current back at the previous slot."""

DOCUMENTATION = r"""
---
module: bundle_rollback
short_description: Roll a host back to its previous oemkit release (oemkit rollback)
version_added: "0.1.0"
description:
  - Runs C(oemkit rollback --prefix PREFIX --json) on the managed host; C(current) points
    at the previous slot (with its config as it was before the upgrade) and C(previous) at
    the old current one, each with one atomic rename. Nothing is verified or
    smoke-tested again; with C(service=systemd) the unit is restarted and the rollback is
    kept only once the release is ready.
  - Idempotent when told where to go. With C(slot) or C(version) it reads
    C(oemkit status --json) first; when the current slot already is that release nothing
    runs (C(changed=false)); when the previous slot is not it, the module fails
    (C(E_NO_PREVIOUS)) without switching. Without either, every run swaps C(current) and
    C(previous) (as C(oemkit rollback) does), so give one in a playbook that may run twice.
  - Fails with oemkit's error code, message and hint (C(E_NO_PREVIOUS), C(E_SLOT_DAMAGED),
    C(E_LOCKED), C(E_SERVICE_NOT_READY), ...).
options:
  prefix:
    description: The install root (oemkit's C(--prefix)).
    type: path
    required: true
  slot:
    description: The slot name (C(NAME-VERSION-DIGEST12)) the host must end on.
    type: str
  version:
    description: The release version the host must end on (when C(slot) is not given).
    type: str
  profile:
    description: The service's profile (default the bundle's first).
    type: str
extends_documentation_fragment:
  - oemkit.airgap.common
  - oemkit.airgap.common.state
  - oemkit.airgap.common.service
attributes:
  check_mode:
    support: full
    description: Reports whether C(current) would move, from C(oemkit status); nothing is
      switched.
  diff_mode:
    support: full
    description: The current and previous slots before and after.
author:
  - oemkit maintainers
seealso:
  - module: oemkit.airgap.bundle_upgrade
"""

EXAMPLES = r"""
- name: Put the host back on the release it ran before the upgrade (safe to repeat)
  oemkit.airgap.bundle_rollback:
    prefix: /opt/example
    slot: "{{ before.current }}"

- name: Back to 0.1.0, on a box without systemd, checking that it serves first
  oemkit.airgap.bundle_rollback:
    prefix: /srv/example
    version: 0.1.0
    service: none
    ready_check: true
"""

RETURN = r"""
current:
  description: The current slot after the run (in check mode, what it would be).
  returned: success
  type: str
  sample: example-0.1.0-cf1302c4eaa6
previous:
  description: The previous slot after the run.
  returned: success
  type: str
  sample: example-0.2.0-b6e5a6cc9818
current_before:
  description: The current slot before the run.
  returned: always
  type: str
  sample: example-0.2.0-b6e5a6cc9818
previous_before:
  description: The previous slot before the run.
  returned: always
  type: str
  sample: example-0.1.0-cf1302c4eaa6
switched:
  description: Whether oemkit switched C(current).
  returned: success
  type: bool
  sample: true
oemkit:
  description: The document of C(oemkit rollback --json) (C(action), C(ok), C(slot),
    C(previous), C(switched), C(checks), C(error) on failure); null when oemkit did not run.
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
  sample: E_NO_PREVIOUS
hint:
  description: oemkit's hint for the error.
  returned: failure
  type: str
  sample: "'oemkit status --prefix DIR' shows the slots"
exit_code:
  description: oemkit's exit code.
  returned: failure
  type: int
  sample: 3
check:
  description: The report row that failed, if any.
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.oemkit.airgap.plugins.module_utils.oemkit import (
    COMMON_ARGS,
    SERVICE_ARGS,
    STATE_ARGS,
    Oemkit,
    diff,
    previous_slot,
    service_args,
)


def _is(slot, params):
    if slot is None:
        return False
    if params["slot"]:
        return slot.get("name") == params["slot"]
    return slot.get("version") == params["version"]


def main():
    module = AnsibleModule(
        argument_spec=dict(COMMON_ARGS, **STATE_ARGS, **SERVICE_ARGS,
                           prefix={"type": "path", "required": True},
                           slot={"type": "str"}, version={"type": "str"},
                           profile={"type": "str"}),
        mutually_exclusive=[("slot", "version")],
        supports_check_mode=True)
    p = module.params
    oemkit = Oemkit(module)
    prefix = p["prefix"]
    status = oemkit.status(prefix)
    before = (status.get("current"), status.get("previous"))
    facts = {"current_before": before[0], "previous_before": before[1]}
    swapped = (before[1], before[0])

    def finish(changed, after, doc=None):
        result = dict(changed=changed, current=after[0], previous=after[1], oemkit=doc,
                      switched=bool(doc and doc.get("switched")), oemkit_calls=oemkit.calls,
                      **facts)
        if module._diff:
            result["diff"] = diff(prefix, before, after)
        module.exit_json(**result)

    wanted = p["slot"] or p["version"]
    if wanted:
        current = [s for s in status.get("slots") or [] if s.get("current")]
        if current and _is(current[0], p):
            finish(False, before)
        if not _is(previous_slot(status), p):
            oemkit.refuse(
                "E_NO_PREVIOUS", "{} cannot roll back to {}: current is {}, previous is {}".format(
                    prefix, wanted, before[0] or "none", before[1] or "none"),
                "'oemkit status --prefix DIR' shows the slots; a rollback only goes back to "
                "the previous slot", 3, **facts)
    if module.check_mode:
        if before[1] is None:
            oemkit.refuse("E_NO_PREVIOUS", f"{prefix} has no previous slot to roll back to",
                          "'oemkit status --prefix DIR' shows the slots", 3, **facts)
        finish(True, swapped)
    args = ["rollback", "--prefix", prefix]
    if p["state_file"]:
        args += ["--state", p["state_file"]]
    if p["profile"]:
        args += ["--profile", p["profile"]]
    doc = oemkit.call(args + service_args(p), **facts)
    switched = bool(doc.get("switched"))
    finish(switched, (doc.get("slot"), doc.get("previous")) if switched else before, doc)


if __name__ == "__main__":
    main()
