# Copyright: oemkit contributors
# Apache License 2.0 (see the oemkit repository's LICENSE)
"""The oemkit.airgap modules' shared code: run the oemkit CLI on the managed host with
``--json`` and turn its one JSON document into a module result.

Every module calls the CLI (never oemkit's Python API), so the host's own oemkit, with its own
interpreter and venv, decides; the module only reads ``oemkit status --json`` first to decide
what would change (idempotency, check mode, diff), except for a real upgrade, which decides
that itself and for which the two links of the prefix's documented layout (``current``,
``previous`` -> ``slots/NAME``, docs/INSTALL.md) are read directly (one CLI start less per
host of a rollout), and reports oemkit's error as the module's failure: ``msg`` is oemkit's
message, with ``code``, ``hint``, ``exit_code`` and ``check`` (the failed row) beside it,
and the whole document as ``oemkit``.
"""

import json
import os
import shutil
import tempfile
import time

#: Options every module takes (documented in the oemkit.airgap.common doc fragment).
COMMON_ARGS = {
    "executable": {"type": "str", "default": "oemkit"},
}

#: Options of the commands that run or judge a release with a license state file.
STATE_ARGS = {
    "state_file": {"type": "path"},
}

#: The readiness gate and service options of install, upgrade and rollback.
SERVICE_ARGS = {
    "service": {"type": "str", "choices": ["none", "systemd"]},
    "ready_check": {"type": "bool"},
    "ready_timeout": {"type": "float"},
    "service_name": {"type": "str"},
    "unit_dir": {"type": "path"},
    "extra_args": {"type": "list", "elements": "str", "default": []},
}

#: What a JSON document from a failed run lacks when oemkit printed none (it crashed before
#: the CLI took over, or the executable is not oemkit).
NO_DOCUMENT_HINT = ("run the command by hand on the host; check that 'executable' names "
                    "oemkit (the module runs EXECUTABLE ... --json)")


class Oemkit:
    """One module run's access to the oemkit CLI: the resolved executable, every call's
    arguments, exit code and wall time (returned as ``oemkit_calls``)."""

    def __init__(self, module):
        self.module = module
        self.calls = []
        self.argv0 = self._resolve(module.params["executable"])

    def _resolve(self, executable):
        if os.sep in executable:
            if os.path.isfile(executable) and os.access(executable, os.X_OK):
                return executable
            found = None
        else:
            found = self.module.get_bin_path(executable)
        if not found:
            self.module.fail_json(
                msg=f"the oemkit executable {executable!r} was not found on this host",
                code="E_NOT_FOUND", exit_code=None, check=None,
                hint="install oemkit on the host (pip install from the site's wheelhouse) "
                     "or set the module's 'executable' option to its path")
        return found

    def run(self, args):
        """Run ``oemkit ARGS --json``; return (exit code, document or None, stderr)."""
        argv = [self.argv0, *args, "--json"]
        started = time.monotonic()
        rc, out, err = self.module.run_command(
            argv, check_rc=False, environ_update={"NO_COLOR": "1", "COLUMNS": "200"})
        self.calls.append({"args": [str(a) for a in args], "exit_code": rc,
                           "seconds": round(time.monotonic() - started, 3)})
        try:
            doc = json.loads(out) if out.strip() else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            doc = None
        return rc, doc, err

    def call(self, args, **extra):
        """Run a command that must succeed: its document, or the module fails with
        oemkit's error (``extra`` goes into the failure result too)."""
        rc, doc, err = self.run(args)
        if rc != 0 or doc is None or doc.get("ok") is False:
            self.fail(rc, doc, err, **extra)
        return doc

    def fail(self, rc, doc, err="", **extra):
        """Fail the module with oemkit's error: msg = message, plus code, hint, exit_code
        and check (the failed row's name)."""
        error = (doc or {}).get("error") or {}
        if doc is None:
            tail = " ".join((err or "").strip().splitlines()[-3:])
            message = "oemkit exited {} without a JSON document{}".format(
                rc, (": " + tail) if tail else "")
            error = {"code": "E_INTERNAL", "message": message, "hint": NO_DOCUMENT_HINT}
        elif not error:
            failed = [c for c in doc.get("checks") or [] if c.get("status") == "fail"]
            first = failed[0] if failed else {}
            error = {"code": first.get("code"), "hint": first.get("hint"),
                     "check": first.get("name"),
                     "message": first.get("detail") or f"oemkit reported a failure (exit {rc})"}
        self.module.fail_json(
            msg=error.get("message") or f"oemkit failed (exit {rc})",
            code=error.get("code"), hint=error.get("hint"),
            exit_code=error.get("exit_code", rc), check=error.get("check"),
            oemkit=doc, oemkit_calls=self.calls, **extra)

    def refuse(self, code, message, hint, exit_code, **extra):
        """Fail the way oemkit would, without running it (check mode's predictions)."""
        self.module.fail_json(msg=message, code=code, hint=hint, exit_code=exit_code,
                              check=None, oemkit=None, oemkit_calls=self.calls, **extra)

    def status(self, prefix):
        """``oemkit status --prefix PREFIX --json`` (read only; a missing prefix is empty)."""
        return self.call(["status", "--prefix", prefix])

    def verify(self, bundle, trust, state=None, env=None, extra=()):
        args = ["verify", bundle, "--trust", trust]
        if state:
            args += ["--state", state]
        if env:
            args += ["--env", env]
        return self.call(args + list(extra))


def link_names(prefix):
    """The slot names ``current`` and ``previous`` point at, (None where a link is absent,
    dangling or not ``slots/NAME``), read from the prefix's links as ``oemkit status``
    reports them in a consistent prefix."""
    names = []
    for link in ("current", "previous"):
        try:
            target = os.readlink(os.path.join(prefix, link))
        except OSError:
            names.append(None)
            continue
        parts = target.split("/")
        ok = (len(parts) == 2 and parts[0] == "slots" and parts[1] not in ("", ".", "..")
              and os.path.isdir(os.path.join(prefix, "slots", parts[1])))
        names.append(parts[1] if ok else None)
    return tuple(names)


def current_slot(status):
    """The current slot's record in a status document, or None."""
    for slot in status.get("slots") or []:
        if slot.get("current"):
            return slot
    return None


def previous_slot(status):
    """The previous slot's record in a status document, or None."""
    for slot in status.get("slots") or []:
        if slot.get("previous"):
            return slot
    return None


def slot_name(name, version, manifest_sha256):
    """The slot name install gives a release: NAME-VERSION-DIGEST12 (a re-install of a
    release that is still a slot gets a -2 suffix)."""
    return f"{name}-{version}-{manifest_sha256[:12]}"


def releases_text(current, previous):
    """What --diff shows for a prefix: the current and previous slots."""
    return "current: {}\nprevious: {}\n".format(current or "none", previous or "none")


def diff(prefix, before, after):
    """An Ansible diff of the current/previous releases under ``prefix``."""
    return {"before_header": f"{prefix} (before)", "after_header": f"{prefix} (after)",
            "before": releases_text(*before), "after": releases_text(*after)}


class CheckState:
    """In check mode, a private copy of the license state file: oemkit may write the
    state (the newest time seen, remembered CRLs) while it judges a license, and check
    mode must change nothing. Outside check mode the real file is used."""

    def __init__(self, module, path):
        self.module = module
        self.path = path
        self.tmp = None

    def __enter__(self):
        if not self.module.check_mode:
            return self.path
        self.tmp = tempfile.mkdtemp(prefix="oemkit-check-")
        copy = os.path.join(self.tmp, "license-state.json")
        source = self.path or os.environ.get("OEMKIT_STATE")
        if source and os.path.isfile(source):
            shutil.copyfile(source, copy)
        return copy

    def __exit__(self, *exc):
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def service_args(params):
    """The install/upgrade/rollback options for the service and the readiness gate."""
    args = []
    if params.get("service"):
        args += ["--service", params["service"]]
    if params.get("ready_check") is True:
        args.append("--ready-check")
    elif params.get("ready_check") is False:
        args.append("--no-ready-check")
    if params.get("ready_timeout") is not None:
        args += ["--ready-timeout", repr(float(params["ready_timeout"]))]
    if params.get("service_name"):
        args += ["--service-name", params["service_name"]]
    if params.get("unit_dir"):
        args += ["--unit-dir", params["unit_dir"]]
    return args + list(params.get("extra_args") or [])


#: install's and upgrade's own options (besides COMMON, STATE and SERVICE).
RELEASE_ARGS = {
    "bundle": {"type": "path", "required": True},
    "prefix": {"type": "path", "required": True},
    "trust": {"type": "path", "required": True},
    "license": {"type": "path"},
    "profile": {"type": "str"},
    "skip_smoke": {"type": "bool", "default": False},
    "system_site_packages": {"type": "bool", "default": False},
}


def release_args(action, params, state):
    """The command line of ``oemkit install`` / ``oemkit upgrade`` for these options."""
    args = [action, params["bundle"], "--prefix", params["prefix"], "--trust", params["trust"]]
    for option, flag in (("license", "--license"), ("profile", "--profile"),
                         ("config", "--config")):
        if params.get(option):
            args += [flag, params[option]]
    for option, flag in (("skip_smoke", "--skip-smoke"), ("allow_downgrade", "--allow-downgrade"),
                         ("system_site_packages", "--system-site-packages")):
        if params.get(option):
            args.append(flag)
    if state:
        args += ["--state", state]
    return args + service_args(params)


def apply_release(module, action):
    """bundle_install / bundle_upgrade: read the prefix's status first; a bundle whose
    verified manifest is the current slot's is no change; otherwise (outside check mode)
    run ``oemkit install|upgrade`` and report whether it switched (``changed``)."""
    p = module.params
    oemkit = Oemkit(module)
    prefix = p["prefix"]
    if module.check_mode or action == "install":
        status = oemkit.status(prefix)
        current = current_slot(status)
        before = (status.get("current"), status.get("previous"))
    else:  # oemkit upgrade decides "already current" itself: only the before is needed
        current = None
        before = link_names(prefix)
    facts = {"current_before": before[0], "previous_before": before[1]}

    def finish(changed, after, doc=None, verified=None, msg=None):
        result = dict(changed=changed, current=after[0], previous=after[1], oemkit=doc,
                      verify=verified, switched=bool(doc and doc.get("switched")),
                      slot=(doc or {}).get("slot"), oemkit_calls=oemkit.calls, **facts)
        if module._diff:
            result["diff"] = diff(prefix, before, after)
        if msg:
            result["msg"] = msg
        module.exit_json(**result)

    with CheckState(module, p["state_file"]) as state:
        verified = None
        # The bundle's manifest decides "already current". An upgrade finds that out itself
        # (after its own verification: "already the current slot; nothing to do", nothing
        # switched), so only check mode and an install over an installed prefix (which
        # oemkit would refuse) verify here first.
        if module.check_mode or (current is not None and action == "install"):
            verified = oemkit.verify(p["bundle"], p["trust"], state, None,
                                     [a for a in p.get("extra_args") or []
                                      if a.startswith("--max-")])
            if current is not None and verified.get("manifest_sha256") == current.get(
                    "manifest_sha256"):
                finish(False, before, verified=verified)
        if module.check_mode:
            target = slot_name(verified.get("name"), verified.get("version"),
                               verified.get("manifest_sha256") or "")
            if action == "install" and current is not None:
                oemkit.refuse("E_ALREADY_INSTALLED", "{} already has {} installed".format(
                    prefix, current.get("name")),
                    "use oemkit.airgap.bundle_upgrade (oemkit upgrade) to move to another "
                    "release", 3, **facts)
            if action == "upgrade" and current is None:
                oemkit.refuse("E_NOT_INSTALLED", f"nothing is installed under {prefix}",
                              "use oemkit.airgap.bundle_install (oemkit install) first", 3,
                              **facts)
            after = (target, before[0] if action == "upgrade" else before[1])
            finish(True, after, verified=verified, msg=(
                f"check mode verified the bundle only; the {action} itself (version and license "
                "checks, config, smoke test, readiness gate) runs only for real"))
        doc = oemkit.call(release_args(action, p, state), **facts)
    switched = bool(doc.get("switched"))
    after = (doc.get("slot"), doc.get("previous")) if switched else before
    finish(switched, after, doc=doc, verified=verified)
