"""`oemkit profile list|show|detect`: thin commands over oemkit.host.profiles."""

from __future__ import annotations

import typer

from oemkit.cli._options import JsonOut
from oemkit.cli._output import emit_json, err, guard, safe

profile_app = typer.Typer(
    rich_markup_mode=None,
    help="Hardware profiles: list, show, detect this host.",
                          no_args_is_help=True)


@profile_app.command("list")
def profile_list(json_out: JsonOut = False) -> None:
    """List the profiles that ship with oemkit.

    Example: oemkit profile list
    """
    with guard(json_out):
        from oemkit.host.profiles import load_profile, shipped_profiles

        profiles = [load_profile(name) for name in sorted(shipped_profiles())]
        if json_out:
            emit_json({"ok": True, "profiles": [p.to_dict() for p in profiles]})
        for p in profiles:
            err.print(safe(f"{p.name:14} {p.accelerator:9} {p.description}", markup=False),
                      markup=False)


@profile_app.command("show")
def profile_show(
    name: str = typer.Argument(..., help="Profile name or YAML file."),
    json_out: JsonOut = False,
) -> None:
    """Show one profile: host requirements, providers, budgets.

    Example: oemkit profile show gpu-cuda
    """
    with guard(json_out):
        import json

        from oemkit.host.profiles import load_profile

        profile = load_profile(name)
        if json_out:
            emit_json({"ok": True, "profile": profile.to_dict()})
        err.print(json.dumps(profile.to_dict(), indent=2), markup=False)


@profile_app.command("detect")
def profile_detect(json_out: JsonOut = False) -> None:
    """Describe this host (cores, memory, CPU flags, providers, GPUs) and which shipped
    profiles it satisfies.

    Example: oemkit profile detect
    """
    with guard(json_out):
        from oemkit.host.profiles import detect_host, load_profile, shipped_profiles, unmet

        host = detect_host()
        verdicts = {}
        for name in sorted(shipped_profiles()):
            verdicts[name] = unmet(load_profile(name), host)
        if json_out:
            emit_json({"ok": True, "host": host.to_dict(),
                       "profiles": {n: {"satisfied": not r, "unmet": r}
                                    for n, r in verdicts.items()}})
        err.print(safe(f"{host.cpu_model or host.arch}: {host.cores} cores, "
                       f"{host.memory_mb} MB, onnxruntime "
                       f"{host.onnxruntime or 'not installed'}", markup=False), markup=False)
        err.print(safe(f"providers: {', '.join(host.providers) or 'none'}; GPUs: "
                       f"{', '.join(host.gpus) or 'none visible'}", markup=False),
                  markup=False)
        for name, reasons in verdicts.items():
            mark = "[green]satisfied[/]" if not reasons else "[red]not satisfied[/]"
            err.print(f"  {safe(name):14} {mark} " + "; ".join(safe(r) for r in reasons))
