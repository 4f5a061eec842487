#!/usr/bin/python
# Copyright: oemkit contributors
# Apache License 2.0 (see the oemkit repository's LICENSE)
"""oemkit.airgap.bundle_upgrade: move a host to a newer release (oemkit upgrade)."""

DOCUMENTATION = r"""
---
module: bundle_upgrade
short_description: Upgrade a host to another oemkit release, switching only when it passes
version_added: "0.1.0"
description:
  - Runs C(oemkit upgrade BUNDLE --prefix PREFIX --trust TRUST --json) on the managed
    host. The new release is verified and unpacked into a slot beside the running one, the live
    config migrated, the license checked, the slot smoke-tested and served once
    (C(/v2/health/ready)); C(current) moves to it only when all of that passes. A failed
    smoke test or readiness check leaves C(current) on the release the host ran, the new
    slot removed (with C(service=systemd) a release that never becomes ready after the
    switch is switched back and the previous one restarted).
  - Idempotent. It reads the prefix's C(current) and C(previous) links first (the before of
    C(--diff)); a bundle whose verified manifest is the current slot's is no change;
    C(oemkit upgrade) verifies it, reports "already the current slot; nothing to do" and
    switches nothing, and C(changed) is false. In check mode the module reads
    C(oemkit status --json), verifies the bundle itself and compares its manifest with the
    current slot's.
  - Fails with oemkit's error code, message and hint (C(E_DOWNGRADE), C(E_BUDGET),
    C(E_SERVICE_NOT_READY), C(E_PAYLOAD_DIGEST), ...).
options:
  bundle:
    description: The bundle (C(.oemb)) on the managed host.
    type: path
    required: true
  prefix:
    description: The install root (slots live here; oemkit's C(--prefix)).
    type: path
    required: true
  trust:
    description: The pinned trust root on the managed host.
    type: path
    required: true
  license:
    description: A license to check (default the ones attached to the bundle).
    type: path
  profile:
    description: The smoke test's profile, a name or a YAML file on the host (default the
      bundle's first profile, else C(cpu-small)).
    type: str
  skip_smoke:
    description: Do not smoke-test the new slot (unsafe; it also turns the readiness check
      off unless C(ready_check=true)).
    type: bool
    default: false
  system_site_packages:
    description: Let the slot's venv import the packages of the Python running oemkit.
    type: bool
    default: false
  allow_downgrade:
    description: Accept an older release (the config is walked down by the current slot's
      bundle).
    type: bool
    default: false
extends_documentation_fragment:
  - oemkit.airgap.common
  - oemkit.airgap.common.state
  - oemkit.airgap.common.service
attributes:
  check_mode:
    support: full
    description: Verifies the bundle and reports whether C(current) would move; nothing is
      written (the version check, migration, smoke test and readiness gate run only for
      real).
  diff_mode:
    support: full
    description: The current and previous slots before and after.
author:
  - oemkit maintainers
seealso:
  - module: oemkit.airgap.bundle_rollback
"""

EXAMPLES = r"""
- name: Upgrade to 0.2.0; the host stays on its release unless smoke and readiness pass
  oemkit.airgap.bundle_upgrade:
    bundle: /var/lib/oemkit/bundles/example-0.2.0.oemb
    prefix: /opt/example
    trust: /etc/oemkit/trust-root.json
    service: systemd
    ready_timeout: 120
  register: upgraded

- name: What would change (no host is touched)
  oemkit.airgap.bundle_upgrade:
    bundle: /var/lib/oemkit/bundles/example-0.2.0.oemb
    prefix: /opt/example
    trust: /etc/oemkit/trust-root.json
  check_mode: true
  diff: true
"""

RETURN = r"""
current:
  description: The current slot after the run (in check mode, what it would be).
  returned: success
  type: str
  sample: example-0.2.0-b6e5a6cc9818
previous:
  description: The previous slot after the run (in check mode, what it would be).
  returned: success
  type: str
  sample: example-0.1.0-cf1302c4eaa6
current_before:
  description: The current slot before the run (from C(oemkit status --json)), or null.
  returned: always
  type: str
  sample: example-0.1.0-cf1302c4eaa6
previous_before:
  description: The previous slot before the run, or null.
  returned: always
  type: str
  sample: null
switched:
  description: Whether oemkit switched C(current) (false for a release already current,
    and in check mode).
  returned: success
  type: bool
  sample: true
slot:
  description: The slot oemkit prepared (null when oemkit did not run).
  returned: success
  type: str
  sample: example-0.2.0-b6e5a6cc9818
msg:
  description: In check mode, what was checked (the bundle only) and what was not.
  returned: check mode, when something would change
  type: str
oemkit:
  description: The document of C(oemkit ACTION --json) (C(action), C(ok), C(slot),
    C(previous), C(switched), C(exit_code), C(checks) with each row's C(name), C(status),
    C(detail), C(code), C(hint); C(error) on failure); null when oemkit was not run
    (check mode, or an install of the release already current).
  returned: always
  type: dict
verify:
  description: The document of C(oemkit verify --json) when the module verified the bundle
    itself to compare it with the current slot (check mode; install, also when a release is
    installed already); else null.
  returned: success
  type: dict
oemkit_calls:
  description: The oemkit commands run, each with its arguments, exit code and wall time.
  returned: always
  type: list
  elements: dict
  sample: [{"args": ["status", "--prefix", "/opt/example"], "exit_code": 0, "seconds": 0.41}]
code:
  description: oemkit's error code (of the first failed row, or of the refusal).
  returned: failure
  type: str
  sample: E_BUDGET
hint:
  description: oemkit's hint for the error.
  returned: failure
  type: str
  sample: this host is slower than profile cpu-small promises
exit_code:
  description: oemkit's exit code (1 a failed check, 3 bad input, 4 environment).
  returned: failure
  type: int
  sample: 1
check:
  description: The report row that failed (C(verify), C(version), C(license), C(config),
    C(smoke), C(ready), ...).
  returned: failure
  type: str
  sample: smoke
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.oemkit.airgap.plugins.module_utils.oemkit import (
    COMMON_ARGS,
    RELEASE_ARGS,
    SERVICE_ARGS,
    STATE_ARGS,
    apply_release,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(COMMON_ARGS, **STATE_ARGS, **SERVICE_ARGS, **RELEASE_ARGS,
                           allow_downgrade={"type": "bool", "default": False}),
        supports_check_mode=True)
    apply_release(module, "upgrade")


if __name__ == "__main__":
    main()
