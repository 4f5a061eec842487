# Copyright: oemkit contributors
# Apache License 2.0 (see the oemkit repository's LICENSE)
"""Documentation shared by every oemkit.airgap module (extends_documentation_fragment)."""


class ModuleDocFragment:
    # The options every module takes.
    DOCUMENTATION = r"""
options:
  executable:
    description:
      - The oemkit executable on the managed host, a name looked up on C(PATH) or a path
        (for example C(/opt/oemkit/venv/bin/oemkit)).
      - The module runs C(EXECUTABLE COMMAND ... --json) and reads its one JSON document.
    type: str
    default: oemkit
notes:
  - The module runs the oemkit CLI on the managed host; oemkit itself (and its Python) must
    be installed there. Nothing is fetched from a network.
  - A failure carries oemkit's error as C(msg) (the message), C(code), C(hint), C(exit_code)
    and C(check) (the report row that failed), and oemkit's whole JSON document as
    C(oemkit).
  - Every result lists the oemkit commands run, with exit code and wall time, as
    C(oemkit_calls).
requirements:
  - oemkit on the managed host
"""

    # The license state file option (install, upgrade, rollback, verify, smoke, licenses).
    STATE = r"""
options:
  state_file:
    description:
      - The host's license state file (oemkit's C(--state)); default oemkit's
        (C($OEMKIT_STATE), else the user's state directory; with C(service=systemd)
        C(/var/lib/oemkit/license-state.json)).
      - In check mode oemkit is given a private copy, so the real file is never written.
    type: path
"""

    # The service and readiness-gate options of install, upgrade and rollback.
    SERVICE = r"""
options:
  service:
    description:
      - C(systemd) writes and restarts a hardened unit for the prefix and keeps a switch
        only once the release answers C(/v2/health/ready); C(none) starts nothing.
      - Default oemkit's (systemd where systemd runs, else none).
    type: str
    choices: [none, systemd]
  ready_check:
    description:
      - With C(service=none), serve the new release on a free loopback port first and
        switch only once it is ready (oemkit's C(--ready-check)/C(--no-ready-check)).
      - Default oemkit's (on for install and upgrade where the serving stack is installed,
        off for rollback).
    type: bool
  ready_timeout:
    description: Seconds the release has to answer C(/v2/health/ready) (oemkit's default 60).
    type: float
  service_name:
    description: The systemd unit (default C(oemkit-BUNDLE)).
    type: str
  unit_dir:
    description: Where the unit file goes (default C($OEMKIT_SYSTEMD_DIR), else
      C(/etc/systemd/system)).
    type: path
  extra_args:
    description:
      - More oemkit options, passed as given (for example C([--port, "8001"]) or the reader
        limits C(--max-files)); see C(oemkit COMMAND --help) on the host.
    type: list
    elements: str
    default: []
"""
