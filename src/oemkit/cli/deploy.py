"""`oemkit deploy kubernetes` (a Kustomize base) and `oemkit image` (the container image as
an OCI image layout): docs/FLEET.md, the Kubernetes section.

Only typer and ``cli._output`` are imported at module level; ``oemkit.site.kubernetes``
(and PyYAML with it) and ``oemkit.site.image`` are imported inside the command bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from oemkit.cli._options import JsonOut, TrustPinned
from oemkit.cli._output import emit_json, err, guard, int_option, safe
from oemkit.cli.oci import CaFile, PlainHttp

deploy_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True,
    help="Write what a site's orchestrator needs to run a verified bundle.")

Force = Annotated[bool, typer.Option("--force", help="Replace a non-empty --out whole.")]
Port = Annotated[int, typer.Option("--port", parser=int_option("--port", 1, 65535),
                                   help="The serving port.")]


@deploy_app.command("kubernetes")
def kubernetes(
    *,
    bundle: Path = typer.Argument(..., help="The bundle to deploy (verified first)."),
    trust: TrustPinned,
    image: str = typer.Option(..., "--image", help="The image that runs oemkit (one "
                              "'oemkit image' built, pushed to the site's registry)."),
    out: Path = typer.Option(..., "--out", help="Directory for the Kustomize base."),
    sizing: Path | None = typer.Option(None, "--sizing", help="sizing.json of 'oemkit "
                                       "sizing': replicas, resources, workers, HPA target."),
    namespace: str | None = typer.Option(None, "--namespace", help="The kustomization's "
                                         "namespace."),
    name: str | None = typer.Option(None, "--name", help="The objects' name (default: the "
                                    "bundle's, as a DNS label)."),
    registry_ref: str | None = typer.Option(None, "--registry-ref", help="Pull the bundle "
                                            "from the site's registry in an init container, "
                                            "pinned to its digest (else the image carries "
                                            "it)."),
    registry_ca: Path | None = typer.Option(None, "--registry-ca", help="The CA certificate "
                                            "(PEM) of the registry --registry-ref names."),
    license: Path | None = typer.Option(None, "--license", help="A license, put in a "
                                        "Secret and passed to oemkit serve."),
    port: Port = 8000,
    drain: Annotated[int, typer.Option("--drain", parser=int_option("--drain", 0, 3600),
                                       help="Seconds serve drains on SIGTERM (the grace "
                                            "period is this plus 10).")] = 30,
    max_replicas: Annotated[int | None, typer.Option(
        "--max-replicas", parser=int_option("--max-replicas", 1, 10_000),
        help="The HPA's ceiling (default: twice the replicas).")] = None,
    force: Force = False,
    json_out: JsonOut = False,
) -> None:
    """Write a Kustomize base serving BUNDLE: Deployment, Service, PodDisruptionBudget,
    HorizontalPodAutoscaler, NetworkPolicy, the trust root (ConfigMap), the license
    (Secret). Nothing is written unless the bundle verifies against --trust.

    Example: oemkit deploy kubernetes example-0.2.0.oemb --trust trust-root.json
    --image registry.site:5000/oemkit/example:0.2.0 --sizing sizing.json --out k8s/
    """
    with guard(json_out):
        from oemkit.site.kubernetes import KubeOptions, write_base

        result = write_base(bundle, trust, out, KubeOptions(
            image=image, name=name, namespace=namespace, registry_ref=registry_ref,
            registry_ca=registry_ca,
            license=license, sizing=sizing, port=port, drain=drain,
            max_replicas=max_replicas, force=force))
        if json_out:
            emit_json(result.to_dict())
        plan = result.plan
        err.print(f"Wrote {safe(out)}/: {len(result.files)} files for {safe(result.bundle)} "
                  f"{safe(result.version)} (verified)")
        for obj in result.objects:
            err.print(f"  {safe(obj['file'])}: {safe(obj['kind'])} {safe(obj['name'])}")
        err.print(f"  {plan.replicas} replicas (HPA {plan.replicas}-{result.max_replicas} at "
                  f"{plan.cpu_target_percent}% CPU), {plan.cpu} CPU, "
                  f"{plan.memory_request_mi}/{plan.memory_limit_mi} Mi requested/limit, "
                  f"{plan.workers} worker(s); sizing: {safe(plan.source)}")
        if result.registry_ref:
            err.print(f"  init container pulls {safe(result.registry_ref)}")
        for note in result.notes:
            err.print(f"  note: {safe(note)}")
        err.print(f"Render: kubectl kustomize {safe(out)}   Apply: kubectl apply -k {safe(out)}")


def image(
    *,
    bundle: Path = typer.Argument(..., help="The bundle the image serves (verified first)."),
    base: Path = typer.Option(..., "--base", help="The site's Python base image: an OCI "
                              "layout DIR or DIR:TAG (skopeo copy docker://... oci:DIR:TAG), "
                              "or a reference in the site's registry "
                              "(HOST[:PORT]/REPOSITORY:TAG, its layers checked as fetched)."),
    plain_http: PlainHttp = False,
    ca_file: CaFile = None,
    out: Path = typer.Option(..., "--out", help="Directory for the image's OCI layout."),
    trust: TrustPinned,
    tag: str | None = typer.Option(None, "--tag", help="The image's tag in the layout "
                                   "(default: the bundle's version)."),
    wheelhouse: Path | None = typer.Option(None, "--wheelhouse", help="Wheels of oemkit's "
                                           "dependencies for the base's Python (else oemkit "
                                           "alone is installed)."),
    oemkit_wheel: Path | None = typer.Option(None, "--oemkit-wheel", help="oemkit's wheel "
                                             "(default: the wheelhouse's, else built from "
                                             "this checkout)."),
    extra: list[str] = typer.Option(["oci"], "--extra", help="oemkit's extras installed "
                                    "with the wheelhouse (repeat; default oci: the init "
                                    "container's oci pull)."),
    python: str | None = typer.Option(None, "--python", help="The base's interpreter "
                                      "(default: found in its layers, e.g. "
                                      "/usr/local/bin/python3.11)."),
    port: Port = 8000,
    source_date_epoch: Annotated[int | None, typer.Option(
        "--source-date-epoch", parser=int_option("--source-date-epoch", 0),
        help="Timestamps (default: $SOURCE_DATE_EPOCH, else the bundle's build time).")] = None,
    force: Force = False,
    json_out: JsonOut = False,
) -> None:
    """Build the container image that serves BUNDLE as an OCI image layout: the base plus
    layers for oemkit's dependencies, oemkit, and the bundle; deterministic; its SBOM
    attached as a referrer. No container daemon.

    Example: oemkit image example-0.2.0.oemb --base python-base:3.11 --trust
    trust-root.json --wheelhouse wheels/ --out image/ && skopeo copy oci:image:0.2.0
    docker://registry.site:5000/oemkit/example:0.2.0
    """
    with guard(json_out):
        from oemkit.site.image import ImageOptions, build_image
        from oemkit.site.oci import Connection

        result = build_image(bundle, base, out, ImageOptions(
            trust=trust, tag=tag, wheelhouse=wheelhouse, oemkit_wheel=oemkit_wheel,
            python=python, extras=_extras(extra), port=port,
            source_date_epoch=source_date_epoch, force=force,
            connection=Connection(plain_http=plain_http, ca_file=ca_file)))
        if json_out:
            emit_json(result.to_dict())
        err.print(f"Wrote {safe(out)}/: image {safe(result.bundle)} {safe(result.version)} "
                  f"tagged {safe(result.tag)}, manifest {safe(result.manifest_digest)}")
        for layer in result.layers:
            err.print(f"  layer {safe(layer['role'])}: {layer['files']} files, "
                      f"{layer['size']} bytes, {safe(layer['digest'])}")
        err.print(f"  python {safe(result.python)}; SBOM referrer "
                  f"{safe(result.sbom_digest)}")
        err.print(f"Inspect: skopeo inspect oci:{safe(out)}:{safe(result.tag)}")


def _extras(values: list[str]) -> tuple[str, ...]:
    import re

    from oemkit.errors import UsageError

    found = tuple(v for value in values for v in value.split(",") if v and v != "none")
    bad = [v for v in found if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", v)]
    if bad:
        raise UsageError("E_USAGE", f"--extra {bad[0]!r} is not an extra's name",
                         hint="e.g. --extra oci, or --extra none")
    return found
