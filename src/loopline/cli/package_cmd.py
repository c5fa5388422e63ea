"""``loopline package``: a Dockerfile and Kubernetes manifests for a model server."""

from __future__ import annotations

from pathlib import Path

import typer

from loopline.cli._common import console, print_json


def package(
    model_uri: str = typer.Argument(
        ..., help="models:/NAME (follow its deployment), models:/NAME/VERSION or @ALIAS."
    ),
    out_dir: Path = typer.Argument(..., help="Folder to write into."),
    image: str = typer.Option(None, "--image", help="Image name (default loopline-NAME:latest)."),
    replicas: int = typer.Option(2, "--replicas", min=1, help="Initial replicas."),
    min_replicas: int = typer.Option(2, "--min-replicas", min=1, help="HPA minimum."),
    max_replicas: int = typer.Option(10, "--max-replicas", min=1, help="HPA maximum."),
    cpu_target: int = typer.Option(
        70, "--cpu-target", min=1, max=100, help="HPA target CPU utilisation, percent."
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Server workers per pod."),
    namespace: str = typer.Option(None, "--namespace", help="Kubernetes namespace."),
    loopline_spec: str = typer.Option(
        None,
        "--loopline-spec",
        help="What the image installs as Loopline, e.g. loopline==0.1.0 (default: a wheel "
        "of this Loopline, written into the build context).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the written files as JSON."),
) -> None:
    """Write a Dockerfile and a Deployment, Service and HorizontalPodAutoscaler.

    Example: loopline package models:/churn deploy/churn --image registry.example.com/churn:1
    """
    from loopline.serving.package import package as do_package

    files = do_package(
        model_uri,
        out_dir,
        image=image,
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        cpu_target=cpu_target,
        workers=workers,
        namespace=namespace,
        loopline_spec=loopline_spec,
    )
    if json_out:
        print_json([str(f) for f in files])
    else:
        for f in files:
            console.print(f"wrote {f}", highlight=False)
