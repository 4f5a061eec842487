#!/usr/bin/python
# Copyright: oemkit contributors
# Apache License 2.0 (see the oemkit repository's LICENSE)
"""oemkit.airgap.smoke: the cold-start smoke test of a bundle on the managed host."""

DOCUMENTATION = r"""
---
module: smoke
short_description: Smoke-test an oemkit bundle on the host against a hardware profile
version_added: "0.1.0"
description:
  - Runs C(oemkit smoke BUNDLE --profile PROFILE --trust TRUST --json) on the managed
    host. The bundle is verified, its model started cold in a fresh process (providers, golden
    outputs, cold start, first inference, p95 latency and peak RSS against the profile's
    budgets, the entrypoint), then served once by C(oemkit serve) (ready, golden outputs
    over HTTP, C(/metrics), SIGTERM).
  - Give C(bundle), or C(prefix) to test the release the host runs (the bundle file its
    current slot was installed from, as C(oemkit status) records it).
  - A test, not a change; C(changed) is always false. Fails with oemkit's error code,
    message and hint (C(E_BUDGET), C(E_GOLDEN_MISMATCH), C(E_PROFILE_UNMET), ...).
options:
  bundle:
    description: The bundle (C(.oemb)) on the managed host.
    type: path
  prefix:
    description: Instead of C(bundle), the install root whose current release is tested.
    type: path
  trust:
    description: The pinned trust root on the managed host.
    type: path
    required: true
  profile:
    description: The profile, a name (C(cpu-small), or one the bundle carries) or a YAML
      file on the host.
    type: str
    default: cpu-small
  license:
    description: A license to check first (default one attached to the bundle).
    type: path
  env:
    description: This host's environment name (licenses bound to one).
    type: str
  model_only:
    description: Skip the served phase (C(oemkit serve) over HTTP).
    type: bool
    default: false
  junit:
    description: Also write the checks as JUnit XML to this file on the host.
    type: path
extends_documentation_fragment:
  - oemkit.airgap.common
  - oemkit.airgap.common.state
attributes:
  check_mode:
    support: full
    description: Runs the test as usual (it installs nothing); the license is judged against
      a private copy of the state file and no JUnit file is written.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
author:
  - oemkit maintainers
"""

EXAMPLES = r"""
- name: Does the new release meet this box's budgets? (before rolling it out)
  oemkit.airgap.smoke:
    bundle: /var/lib/oemkit/bundles/example-0.2.0.oemb
    trust: /etc/oemkit/trust-root.json
    profile: /etc/oemkit/profiles/edge-small.yaml
    junit: /var/log/oemkit/smoke.xml
  register: smoke

- name: Test what the host runs now
  oemkit.airgap.smoke:
    prefix: /opt/example
    trust: /etc/oemkit/trust-root.json
"""

RETURN = r"""
result:
  description: oemkit's result (C(PASSED)).
  returned: success
  type: str
  sample: PASSED
timings_ms:
  description: The measured phases in milliseconds (process start, imports, cold start,
    first inference, serve start and ready, shutdown, ...).
  returned: success
  type: dict
  sample: {"cold_start": 255.0, "first_inference": 1.03, "serve_ready": 790.2}
bundle:
  description: The bundle that was tested.
  returned: always
  type: str
oemkit:
  description: The document of C(oemkit smoke --json) (C(ok), C(result), C(checks),
    C(profile), C(host), C(providers), C(timings_ms), C(steady_state_ms), C(peak_rss_mb),
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
  sample: E_BUDGET
hint:
  description: oemkit's hint for the error.
  returned: failure
  type: str
  sample: this host is slower than profile cpu-small promises
exit_code:
  description: oemkit's exit code (1 a failed check, 4 this host cannot run it).
  returned: failure
  type: int
  sample: 1
check:
  description: The smoke check that failed.
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.oemkit.airgap.plugins.module_utils.oemkit import (
    COMMON_ARGS,
    STATE_ARGS,
    CheckState,
    Oemkit,
    current_slot,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            COMMON_ARGS, **STATE_ARGS,
            bundle={"type": "path"}, prefix={"type": "path"},
            trust={"type": "path", "required": True},
            profile={"type": "str", "default": "cpu-small"},
            license={"type": "path"}, env={"type": "str"},
            model_only={"type": "bool", "default": False}, junit={"type": "path"}),
        required_one_of=[("bundle", "prefix")], mutually_exclusive=[("bundle", "prefix")],
        supports_check_mode=True)
    p = module.params
    oemkit = Oemkit(module)
    bundle = p["bundle"]
    if not bundle:
        status = oemkit.status(p["prefix"])
        current = current_slot(status)
        if current is None or not current.get("bundle_file"):
            oemkit.refuse("E_NOT_INSTALLED", "nothing is installed under {}".format(p["prefix"]),
                          "install a release first, or give the bundle to test", 3)
        bundle = current["bundle_file"]
    args = ["smoke", bundle, "--profile", p["profile"], "--trust", p["trust"]]
    for option, flag in (("license", "--license"), ("env", "--env")):
        if p[option]:
            args += [flag, p[option]]
    if p["model_only"]:
        args.append("--model-only")
    if p["junit"] and not module.check_mode:
        args += ["--junit", p["junit"]]
    with CheckState(module, p["state_file"]) as state:
        if state:
            args += ["--state", state]
        doc = oemkit.call(args, bundle=bundle)
    module.exit_json(changed=False, oemkit=doc, oemkit_calls=oemkit.calls, bundle=bundle,
                     result=doc.get("result"), timings_ms=doc.get("timings_ms"))


if __name__ == "__main__":
    main()
