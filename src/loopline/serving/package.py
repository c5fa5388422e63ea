"""Packaging: a Dockerfile and Kubernetes manifests that run ``loopline serve`` for a model.

``package("models:/churn@champion", "deploy/churn")`` writes::

    deploy/churn/Dockerfile              the model's python (slim) + this loopline (the wheel
                                         below) + the model's libraries, pinned to the
                                         versions in its manifest (of every deployed version
                                         for models:/NAME); non-root
    deploy/churn/wheels/loopline-*.whl   a wheel of the running Loopline, which the image
                                         installs (LOOPLINE_SPEC overrides it)
    deploy/churn/k8s/deployment.yaml     N replicas of `loopline serve --model URI`, readiness
                                         on /health, startup and liveness on /livez, Prometheus
                                         annotations
    deploy/churn/k8s/service.yaml        a ClusterIP Service on port 80
    deploy/churn/k8s/hpa.yaml            an autoscaling/v2 HorizontalPodAutoscaler on CPU
    deploy/churn/README.md               how to build, create the store Secret and apply

The replicas read the model from the shared store: ``LOOPLINE_URI`` (PostgreSQL) and
``LOOPLINE_ARTIFACTS`` (S3) come from a Secret (``<app>-store``) that is not generated,
because it holds credentials. With ``models:/NAME`` (no version) the replicas follow the
deployment of NAME - canary steps and rollbacks included; with a version or alias they
serve that one.

Example:
    >>> # files = package("models:/churn@champion", "deploy/churn", image="reg/churn:1")
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from loopline.errors import InvalidInput
from loopline.serving.package_wheel import build_wheel

PORT = 8080
#: 200 once the models serve (readiness, the image's HEALTHCHECK) / whenever the process
#: answers HTTP (liveness, startup).
READINESS_PATH = "/health"
LIVENESS_PATH = "/livez"
#: Where the build context's wheels/ folder is copied in the image (removed after install).
WHEELS_IN_IMAGE = "/tmp/wheels"
#: The Pythons Loopline runs on (pyproject's requires-python), as base image tags.
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")
DEFAULT_PYTHON = "3.11"
#: Distribution names of flavor libraries, as pip knows them.
_EXTRA_LIBS = ("uvloop", "httptools")


@dataclass(frozen=True)
class PackageSpec:
    """What to generate: image, scaling and resources."""

    model_uri: str
    app: str
    image: str
    replicas: int = 2
    min_replicas: int = 2
    max_replicas: int = 10
    cpu_target: int = 70
    workers: int = 1
    cpu_request: str = "500m"
    cpu_limit: str = "1"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"
    namespace: str | None = None
    #: What the image installs as Loopline: None for the wheel of the running Loopline
    #: that ``package`` puts into the build context (``wheels/``); a pip requirement such
    #: as ``loopline==0.1.0`` installs that instead (also ``--build-arg LOOPLINE_SPEC=``).
    loopline_spec: str | None = None


def app_name(model_name: str) -> str:
    """A DNS-1123 name for the Kubernetes objects of a model.

    Example:
        >>> app_name("Churn Model_v2")
        'loopline-churn-model-v2'
    """
    slug = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")
    return f"loopline-{slug}"[:63].rstrip("-")


def _model_parts(model_uri: str) -> tuple[str, bool]:
    """(name, pinned) of ``models:/NAME``, ``models:/NAME/VERSION`` or ``models:/NAME@A``."""
    if not model_uri.startswith("models:/"):
        raise InvalidInput(
            f"{model_uri!r} is not a model URI",
            field="model_uri",
            hint="use models:/NAME, models:/NAME/VERSION or models:/NAME@ALIAS",
        )
    rest = model_uri.removeprefix("models:/").strip("/")
    if not rest:
        raise InvalidInput(f"{model_uri!r} names no model", field="model_uri")
    if "@" in rest or "/" in rest:
        from loopline.training.registry_reads import parse_uri

        return parse_uri(model_uri)[0], True
    return rest, False


def _served_uris(model_uri: str, name: str, pinned: bool) -> list[str]:
    """The versions the image must be able to load, the one whose pins win first: the
    pinned one, else every version the deployment of ``name`` serves (stable first, then
    candidate, standby, fallback), else the latest. The latest alone gave an image without
    the library of the version actually deployed (an XGBoost stable beside a newer
    scikit-learn version), which failed only once a replica loaded it."""
    if pinned:
        return [model_uri]
    from loopline.errors import NotFound
    from loopline.serving.deploy import get_deployment

    try:
        deployment = get_deployment(name)
    except NotFound:
        return [f"models:/{name}/latest"]
    return [f"models:/{name}/{v}" for v in deployment.versions()]


def _libraries(model_uri: str, name: str, pinned: bool) -> tuple[dict[str, str], str]:
    """The library versions of the models the image serves, pinned in the image, and the
    Python (``major.minor``) of the first one, which the image runs."""
    from loopline.training import registry_reads

    libs: dict[str, str] = {}
    python = DEFAULT_PYTHON
    for i, uri in enumerate(_served_uris(model_uri, name, pinned)):
        recorded = dict(registry_reads.load(uri).manifest.library_versions)
        found = re.match(r"(3\.\d+)\.", recorded.pop("python", ""))
        if i == 0 and found and found[1] in SUPPORTED_PYTHONS:
            python = found[1]
        for lib, version in recorded.items():
            if version and version != "not installed":
                libs.setdefault(lib, version)
    return libs, python


def dockerfile(
    spec: PackageSpec,
    libraries: dict[str, str],
    python: str = DEFAULT_PYTHON,
    wheel: str | None = None,
) -> str:
    """The Dockerfile text: ``python`` (``major.minor``, the model's), Loopline - the
    ``wheel`` (a file name in the context's ``wheels/``) unless ``spec.loopline_spec``
    names another - and the libraries.

    Example:
        >>> text = dockerfile(PackageSpec("models:/m", "loopline-m", "m:1"), {}, "3.12",
        ...                   "loopline-0.1.0-py3-none-any.whl")
        >>> "FROM python:3.12-slim" in text and "/tmp/wheels/loopline-0.1.0" in text
        True
    """
    loopline_spec = spec.loopline_spec or f"{WHEELS_IN_IMAGE}/{wheel}"
    pins = " ".join(f'"{k}=={v}"' for k, v in sorted(libraries.items()))
    serve = [
        "loopline",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--model",
        spec.model_uri,
        "--workers",
        str(spec.workers),
    ]
    entry = ", ".join(json.dumps(a) for a in serve)  # exec form: JSON strings
    return f"""# Generated by `loopline package {spec.model_uri}`: the model server for one model.
FROM python:{python}-slim
# The Loopline that wrote this file, as a wheel in wheels/; --build-arg
# LOOPLINE_SPEC=loopline==X.Y.Z installs a published one instead.
ARG LOOPLINE_SPEC="{loopline_spec}"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LOOPLINE_HOME=/tmp/loopline
COPY wheels/ {WHEELS_IN_IMAGE}/
RUN pip install --no-cache-dir "$LOOPLINE_SPEC" {pins} {" ".join(_EXTRA_LIBS)} \\
 && rm -rf {WHEELS_IN_IMAGE} \\
 && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin loopline
USER 10001
EXPOSE {PORT}
HEALTHCHECK --interval=10s --timeout=3s \\
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}{READINESS_PATH}')"
ENTRYPOINT [{entry}]
"""


def _labels(spec: PackageSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": spec.app,
        "app.kubernetes.io/part-of": "loopline",
        "app.kubernetes.io/component": "model-server",
    }


def _meta(spec: PackageSpec) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": spec.app, "labels": _labels(spec)}
    if spec.namespace:
        meta["namespace"] = spec.namespace
    return meta


def manifests(spec: PackageSpec) -> dict[str, dict[str, Any]]:
    """The Deployment, Service and HorizontalPodAutoscaler, by file name.

    Example:
        >>> sorted(manifests(PackageSpec("models:/m", "loopline-m", "m:1")))
        ['deployment.yaml', 'hpa.yaml', 'service.yaml']
    """

    def probe(path: str, **more: Any) -> dict[str, Any]:
        # A new dict each: one shared dict was dumped as a YAML anchor and alias (&id001,
        # *id001), which some manifest tools do not take.
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            **more,
        }

    container = {
        "name": "model-server",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "envFrom": [{"secretRef": {"name": f"{spec.app}-store"}}],
        # Liveness asks /livez, which answers whenever the process serves HTTP: on /health,
        # 503 while a deployment has no loadable version, it restarted the pod again and
        # again, where the server itself retries the load every 30 s. Readiness stays on
        # /health: no traffic until the models serve. The server answers nothing while it
        # loads the models at start, so the startup probe gives a large model 5 minutes
        # (liveness alone restarted a pod still loading after 60 s); it asks /livez too,
        # or a version that never loads would have the pod restarted every 5 minutes.
        "startupProbe": probe(LIVENESS_PATH, periodSeconds=5, failureThreshold=60),
        "readinessProbe": probe(READINESS_PATH),
        "livenessProbe": probe(LIVENESS_PATH, failureThreshold=3),
        "resources": {
            "requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
            "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(spec),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": spec.app}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": _labels(spec),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 30},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": spec.app},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(spec),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.app},
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": spec.cpu_target},
                    },
                }
            ],
        },
    }
    return {"deployment.yaml": deployment, "service.yaml": service, "hpa.yaml": hpa}


def _readme(spec: PackageSpec) -> str:
    ns = f" -n {spec.namespace}" if spec.namespace else ""
    return f"""# {spec.app}: the Loopline model server for `{spec.model_uri}`

    docker build -t {spec.image} .
    docker push {spec.image}
    kubectl{ns} create secret generic {spec.app}-store \\
        --from-literal=LOOPLINE_URI=postgresql://USER:PASSWORD@HOST:5432/loopline \\
        --from-literal=LOOPLINE_ARTIFACTS=s3://BUCKET/loopline \\
        --from-literal=LOOPLINE_S3_ACCESS_KEY_ID=... \\
        --from-literal=LOOPLINE_S3_SECRET_ACCESS_KEY=...
    kubectl{ns} apply -f k8s/

Then roll versions out with `loopline deploy NAME VERSION --strategy canary`: the
replicas poll the store and follow the deployment (when the URI names no version).
"""


#: A Kubernetes namespace is a DNS-1123 label.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _check_spec(spec: PackageSpec) -> None:
    """Refuse a spec Kubernetes would refuse (or that contradicts itself)."""
    if not 1 <= spec.min_replicas <= spec.max_replicas:
        raise InvalidInput(
            f"min_replicas {spec.min_replicas} must be between 1 and "
            f"max_replicas {spec.max_replicas}",
            field="min_replicas",
        )
    if not 1 <= spec.replicas <= spec.max_replicas:
        raise InvalidInput(
            f"replicas {spec.replicas} must be between 1 and max_replicas {spec.max_replicas}",
            field="replicas",
            hint="lower --replicas or raise --max-replicas",
        )
    if spec.namespace is not None and not _DNS_LABEL.fullmatch(spec.namespace):
        raise InvalidInput(
            f"namespace {spec.namespace!r} is not a Kubernetes namespace name",
            field="namespace",
            hint="use at most 63 lowercase letters, digits and '-', starting and ending "
            "with a letter or digit, e.g. ml-serving",
        )


def package(
    model_uri: str, out_dir: str | Path, *, image: str | None = None, **options: Any
) -> list[Path]:
    """Write the Dockerfile, the Kubernetes manifests and a README into ``out_dir``.

    ``options``: any field of :class:`PackageSpec` (``replicas``, ``max_replicas``,
    ``cpu_target``, ``namespace``, ...). Returns the written paths.

    Example:
        >>> # package("models:/churn", "deploy/churn", image="registry/churn:1", replicas=3)
    """
    name, pinned = _model_parts(model_uri)
    app = app_name(name)
    spec = PackageSpec(model_uri=model_uri, app=app, image=image or f"{app}:latest", **options)
    _check_spec(spec)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInput(
            f"out_dir {out} is a file, not a folder",
            field="out_dir",
            hint="name a new or existing folder to write the Dockerfile and manifests into",
        )
    libraries, python = _libraries(model_uri, name, pinned)
    try:
        (out / "k8s").mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError) as exc:  # a file where a parent folder goes
        raise InvalidInput(
            f"cannot make the folder {out / 'k8s'}: {exc.strerror}",
            field="out_dir",
            hint="name a folder whose parents are folders, not files",
        ) from exc
    written = [out / "Dockerfile", out / "README.md"]
    wheels = out / "wheels"
    wheel = None
    if spec.loopline_spec is None:
        built = build_wheel(wheels)
        wheel = built.name
        written.append(built)
    else:  # an empty folder: the Dockerfile's COPY needs one
        wheels.mkdir(exist_ok=True)
    written[0].write_text(dockerfile(spec, libraries, python, wheel), encoding="utf-8")
    written[1].write_text(_readme(spec), encoding="utf-8")
    for file, doc in manifests(spec).items():
        path = out / "k8s" / file
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        written.append(path)
    return written
