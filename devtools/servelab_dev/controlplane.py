"""A real local Kubernetes control plane made of upstream binaries, for development and tests.

`servelab cluster up` starts etcd -> kube-apiserver (TLS, RBAC, service-account token signing) ->
kube-controller-manager -> kube-scheduler -> kwok as local processes on free 127.0.0.1 ports, creates
fake GPU nodes that kwok keeps Ready, installs the repository's CRDs and writes a kubeconfig.
Every component runs in its own process group with its log in the state directory; `down` stops
the groups in reverse order. The binaries come from hack/build-binaries.sh (built when missing).

kwok fakes what a kubelet would report: pods bound to a fake node become Running and Ready, and
Running pods owned by a Job become Succeeded - except pods labelled `servelab.dev/executor=local`:
kwok leaves them Pending on their node; a test-side executor (`servelab_dev.kubelet`) really runs their
command and writes their whole status (Running, Ready, Succeeded or Failed) itself.

Python use (what tests/conftest.py does)::

    cluster = LocalCluster("dev").up()      # reuses the cluster of that state dir if it is running
    cluster.kubeconfig                      # Path of an admin kubeconfig (client cert, system:masters)
    cluster.logs()                          # {"etcd": Path, "kube-apiserver": Path, ...}
    cluster.down()
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from servelab.paths import cache_root, repo_path

T = TypeVar("T")

#: Components in start order; `down` stops them in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
#: Pods with this label are run for real by a test-side executor; kwok does not complete them.
EXECUTOR_LABEL = "servelab.dev/executor"
#: Job pods with `servelab.dev/fake-result=Failed` are failed by kwok (exit code 1) instead of completed.
FAKE_RESULT_LABEL = "servelab.dev/fake-result"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
FIELD_MANAGER = "servelab-controlplane"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
STATE_FILE = "cluster.json"


class ClusterError(RuntimeError):
    """The local cluster could not be started, reached or stopped."""


# --------------------------------------------------------------------------------------------------
# Fake nodes


@dataclass(frozen=True)
class FakeNode:
    """A kwok-managed node; `gpus == 0` makes a CPU-only node."""

    name: str
    cpu: str
    memory: str
    gpus: int = 0
    gpu_product: str = ""
    gpu_memory_mib: int = 0
    pods: int = 110

    def manifest(self) -> dict[str, Any]:
        labels = {
            "type": "kwok",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/os": "linux",
            "kubernetes.io/hostname": self.name,
        }
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods)}
        if self.gpus:
            labels |= {
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": self.gpu_product,
                "nvidia.com/gpu.count": str(self.gpus),
                "nvidia.com/gpu.memory": str(self.gpu_memory_mib),
            }
            resources[GPU_RESOURCE] = str(self.gpus)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {},
            "status": {"capacity": resources, "allocatable": dict(resources)},
        }


DEFAULT_NODES: tuple[FakeNode, ...] = (
    FakeNode(
        "gpu-h100-0",
        cpu="192",
        memory="2Ti",
        gpus=8,
        gpu_product="NVIDIA-H100-80GB-HBM3",
        gpu_memory_mib=81559,
    ),
    FakeNode(
        "gpu-h100-1",
        cpu="48",
        memory="512Gi",
        gpus=2,
        gpu_product="NVIDIA-H100-80GB-HBM3",
        gpu_memory_mib=81559,
    ),
    FakeNode("gpu-l40s-0", cpu="64", memory="512Gi", gpus=4, gpu_product="NVIDIA-L40S", gpu_memory_mib=46068),
    FakeNode("cpu-0", cpu="32", memory="128Gi"),
)


# --------------------------------------------------------------------------------------------------
# kwok configuration: node and pod stages (after kwok v0.8.0's kustomize/stage/{node,pod}/fast sets)

_NOT_DELETED = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
_RUNNING = {"key": ".status.phase", "operator": "In", "values": ["Running"]}
_JOB_OWNED = {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]}
_NOT_LOCAL = {"key": f'.metadata.labels["{EXECUTOR_LABEL}"]', "operator": "DoesNotExist"}

_NODE_CONDITIONS = """\
{{ $now := Now }}
{{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $lastTransitionTime | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
addresses:
{{ with .status.addresses }}
{{ YAML . 1 }}
{{ else }}
{{ with NodeIP }}
- address: {{ . | Quote }}
  type: InternalIP
{{ end }}
{{ with NodeName }}
- address: {{ . | Quote }}
  type: Hostname
{{ end }}
{{ end }}
"""

_NODE_INITIALIZE = (
    _NODE_CONDITIONS
    + """\
allocatable:
{{ with .status.allocatable }}
{{ YAML . 1 }}
{{ else }}
  cpu: 1k
  memory: 1Ti
  pods: 1M
{{ end }}
capacity:
{{ with .status.capacity }}
{{ YAML . 1 }}
{{ else }}
  cpu: 1k
  memory: 1Ti
  pods: 1M
{{ end }}
{{ $kwokVersion := printf "kwok-%s" Version }}
nodeInfo:
  architecture: amd64
  bootID: ""
  containerRuntimeVersion: {{ $kwokVersion }}
  kernelVersion: {{ $kwokVersion }}
  kubeProxyVersion: {{ $kwokVersion }}
  kubeletVersion: {{ $kwokVersion }}
  machineID: ""
  operatingSystem: linux
  osImage: ""
  systemUUID: ""
phase: Running
"""
)

_POD_READY = """\
{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: ContainersReady
{{ range .spec.readinessGates }}
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: {{ .conditionType | Quote }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  started: true
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      finishedAt: {{ $now | Quote }}
      reason: Completed
      startedAt: {{ $now | Quote }}
{{ end }}
{{ $hostIPs := NodeIPsWith .spec.nodeName }}
{{ with $hostIPs }}
hostIP: {{ index . 0 | Quote }}
hostIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
{{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) \
( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
{{ with $podIPs }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
"""


def _pod_finished(phase: str, exit_code: int, reason: str) -> str:
    return f"""\
{{{{ $now := Now }}}}
conditions:
- lastTransitionTime: {{{{ $now | Quote }}}}
  status: "False"
  type: Ready
  reason: PodCompleted
- lastTransitionTime: {{{{ $now | Quote }}}}
  status: "False"
  type: ContainersReady
  reason: PodCompleted
containerStatuses:
{{{{ range .spec.containers }}}}
- image: {{{{ .image | Quote }}}}
  name: {{{{ .name | Quote }}}}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: {exit_code}
      finishedAt: {{{{ $now | Quote }}}}
      reason: {reason}
      startedAt: {{{{ $now | Quote }}}}
{{{{ end }}}}
phase: {phase}
"""


def _stage(
    name: str, kind: str, match: list[dict[str, Any]], nxt: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": kind},
        "selector": {"matchExpressions": match},
    }
    spec |= extra
    spec["next"] = nxt
    return {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Stage", "metadata": {"name": name}, "spec": spec}


def kwok_documents(lease_seconds: int = 40) -> list[dict[str, Any]]:
    """The kwok --config documents: options plus the node and pod stages."""
    ready_true = {
        "key": '.status.conditions.[] | select( .type == "Ready" ) | .status',
        "operator": "In",
        "values": ["True"],
    }
    ready_not_true = ready_true | {"operator": "NotIn"}
    failed = {"key": f'.metadata.labels["{FAKE_RESULT_LABEL}"]', "operator": "In", "values": ["Failed"]}
    not_failed = failed | {"operator": "NotIn"}
    return [
        {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokConfiguration",
            "options": {
                "manageAllNodes": False,
                "manageNodesWithAnnotationSelector": f"{FAKE_NODE_ANNOTATION}=fake",
                "cidr": POD_CIDR,
                "nodeIP": "10.240.0.1",
                "nodeLeaseDurationSeconds": lease_seconds,
                # a config file skips kwok's defaulting of these; zero parallelism is refused
                "nodeLeaseParallelism": 4,
                "nodePlayStageParallelism": 4,
                "podPlayStageParallelism": 4,
                "podsOnNodeSyncParallelism": 1,
            },
        },
        _stage("node-initialize", "Node", [ready_not_true], {"statusTemplate": _NODE_INITIALIZE}),
        _stage(
            "node-heartbeat-with-lease",
            "Node",
            [{"key": ".status.phase", "operator": "In", "values": ["Running"]}, ready_true],
            {"statusTemplate": _NODE_CONDITIONS},
            delay={"durationMilliseconds": 600000, "jitterDurationMilliseconds": 610000},
        ),
        _stage(
            "pod-ready",
            "Pod",
            # pods the test-side executor runs get their status from it, not from kwok
            [
                _NOT_DELETED,
                _NOT_LOCAL,
                {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
                ready_not_true,
            ],
            {"statusTemplate": _POD_READY},
        ),
        _stage(
            "pod-complete",
            "Pod",
            [_NOT_DELETED, _RUNNING, _JOB_OWNED, _NOT_LOCAL, not_failed],
            {"statusTemplate": _pod_finished("Succeeded", 0, "Completed")},
        ),
        _stage(
            "pod-fail",
            "Pod",
            [_NOT_DELETED, _RUNNING, _JOB_OWNED, _NOT_LOCAL, failed],
            {"statusTemplate": _pod_finished("Failed", 1, "Error")},
        ),
        _stage(
            "pod-delete",
            "Pod",
            [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
            {"delete": True},
        ),
    ]


# --------------------------------------------------------------------------------------------------
# Binaries


@dataclass(frozen=True)
class Binaries:
    """Directories of the pinned builds (see hack/build-binaries.sh --print)."""

    kube: Path
    etcd: Path
    kwok: Path
    helm: Path

    def path(self, name: str) -> Path:
        where = {"etcd": self.etcd, "kwok": self.kwok, "helm": self.helm}.get(name, self.kube)
        return where / name

    def missing(self) -> list[str]:
        names = [*COMPONENTS, "kubectl", "helm"]
        return [n for n in names if not os.access(self.path(n), os.X_OK)]

    @property
    def kube_version(self) -> str:
        return self.kube.name.removeprefix("kube-")


def build_script() -> Path:
    return repo_path("hack", "build-binaries.sh")


def binaries(build: bool = True) -> Binaries:
    """The pinned binaries; runs hack/build-binaries.sh first when some are missing and `build` is set."""
    script = build_script()
    if not script.exists():
        raise ClusterError(f"{script} not found: servelab must run from a source checkout")
    env = os.environ | {"SERVELAB_CACHE": str(cache_root())}
    out = subprocess.run([str(script), "--print"], check=True, capture_output=True, text=True, env=env).stdout
    dirs = [Path(line) for line in out.split()]
    if len(dirs) != 4:
        raise ClusterError(f"unexpected output of {script} --print: {out!r}")
    found = Binaries(*dirs)
    if found.missing():
        if not build:
            raise ClusterError(f"missing binaries {found.missing()}: run {script}")
        print(
            f"servelab: building missing binaries {found.missing()} with {script} (cold: many minutes)",
            file=sys.stderr,
        )
        subprocess.run([str(script)], check=True, env=env)
        if found.missing():
            raise ClusterError(f"{script} finished but {found.missing()} are still missing")
    return found


# --------------------------------------------------------------------------------------------------
# PKI


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_pki(directory: Path) -> None:
    """CA, apiserver serving cert, admin client cert (system:masters) and the SA signing key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=365)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("servelab-local-ca")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        cn: str, org: str | None, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
    ) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, org))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)

    service_ip = next(ipaddress.IPv4Network(SERVICE_CIDR).hosts())
    serving_sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        x509.IPAddress(service_ip),
        *(
            x509.DNSName(n)
            for n in (
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            )
        ),
    ]
    files = {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "ca.key": _pem_key(ca_key),
    }
    files["apiserver.crt"], files["apiserver.key"] = leaf(
        "kube-apiserver", None, ExtendedKeyUsageOID.SERVER_AUTH, serving_sans
    )
    files["admin.crt"], files["admin.key"] = leaf(
        "servelab-admin", "system:masters", ExtendedKeyUsageOID.CLIENT_AUTH, []
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files["sa.key"] = _pem_key(sa_key)
    files["sa.pub"] = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for name, data in files.items():
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o600 if name.endswith(".key") else 0o644)


# --------------------------------------------------------------------------------------------------
# A minimal HTTPS client for the apiserver (stdlib only: fast to import, enough for bootstrapping)


class _Api:
    def __init__(self, server: str, pki: Path) -> None:
        self.server = server
        self.ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def ok(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        accept: Iterable[int] = (),
    ) -> Any:
        status, payload = self.call(method, path, body, content_type)
        if status >= 300 and status not in accept:
            raise ClusterError(f"{method} {path}: HTTP {status}: {payload}")
        return payload


# --------------------------------------------------------------------------------------------------
# Processes


def _proc_start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie process; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        return None
    return int(fields[19])


def _parent_death_signal() -> None:
    """In the forked child: ask Linux for SIGKILL when the parent thread dies (prctl PR_SET_PDEATHSIG).

    SIGKILL, not SIGTERM: all components would get it at once, and an apiserver whose etcd is gone hangs
    in its graceful shutdown.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


#: Periodic log lines that say nothing about a failure (kwok renews every node lease every 10 s).
LOG_NOISE = ('"msg":"Syncing lease"',)


def _tail(path: Path, lines: int = 40, skip: Iterable[str] = LOG_NOISE) -> str:
    """The last `lines` lines of a log, leaving out lines containing any of `skip`."""
    skip = tuple(skip)
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if not any(s in line for s in skip)]
    return "\n".join(kept[-lines:])


def _poll(
    what: str,
    fn: Callable[[], T | None],
    timeout: float,
    interval: float = 0.2,
    check: Callable[[], None] | None = None,
) -> T:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        if check:
            check()
        try:
            result = fn()
        except (OSError, ClusterError) as err:
            result, last_error = None, err
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise ClusterError(
                f"timed out after {timeout:.0f} s waiting for {what}"
                + (f" (last error: {last_error})" if last_error else "")
            )
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------
# The cluster


class LocalCluster:
    """One local control plane, identified by its state directory.

    The state directory holds the PKI, the kubeconfig, etcd's data, one log per component and
    `cluster.json` (ports, pids and process start times, used by `down` and `status` from any process).
    """

    def __init__(
        self,
        name: str = "dev",
        state_dir: Path | str | None = None,
        nodes: Sequence[FakeNode] = DEFAULT_NODES,
        crd_dir: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        """`die_with_parent`: the components get SIGKILL when this process dies, even by SIGKILL (for tests;
        the CLI's `up` leaves them running on purpose)."""
        self.name = name
        self.die_with_parent = die_with_parent
        self.state_dir = Path(state_dir) if state_dir else cache_root() / "cluster" / name
        self.nodes = tuple(nodes)
        self.crd_dir = crd_dir if crd_dir is not None else repo_path("crds")
        self.reused = False  # up() found it running and left it as it was
        self.started_in: float | None = None  # seconds `up` took to a usable cluster
        self.phases: dict[str, float] = {}  # seconds from the start of `up` to each milestone
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    # ---- paths and state

    @classmethod
    def attach(cls, kubeconfig: Path | str) -> LocalCluster:
        """The cluster behind a kubeconfig written by `up` (its state directory is the kubeconfig's)."""
        kubeconfig = Path(kubeconfig).resolve()
        if not kubeconfig.is_file():
            raise ClusterError(f"kubeconfig {kubeconfig} not found")
        cluster = cls(kubeconfig.parent.name, kubeconfig.parent)
        cluster._kubeconfig_override = kubeconfig
        cluster.reused = True
        return cluster

    _kubeconfig_override: Path | None = None

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig_override or self.state_dir / "kubeconfig"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def logs(self) -> dict[str, Path]:
        """Log file of each component that has one."""
        return {c: self.log_dir / f"{c}.log" for c in COMPONENTS if (self.log_dir / f"{c}.log").exists()}

    def log_tails(self, lines: int = 40) -> dict[str, str]:
        """The end of each component's log, without periodic noise (for failure reports)."""
        return {c: _tail(p, lines) for c, p in self.logs().items()}

    def state(self) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = json.loads((self.state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return loaded

    def _save_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_dir / STATE_FILE)

    @property
    def server(self) -> str:
        server = self.state().get("server")
        if not server:
            raise ClusterError(f"no cluster state in {self.state_dir}")
        return str(server)

    def _api(self) -> _Api:
        return _Api(self.server, self.pki_dir)

    def processes(self) -> dict[str, int | None]:
        """pid of each recorded component, None where the recorded process is gone."""
        procs = self.state().get("processes", {})
        alive: dict[str, int | None] = {}
        for comp in COMPONENTS:
            rec = procs.get(comp)
            if rec is None:
                continue
            alive[comp] = rec["pid"] if _proc_start_time(rec["pid"]) == rec["start_time"] else None
        return alive

    def is_ready(self) -> bool:
        try:
            status, _ = self._api().call("GET", "/readyz", timeout=3)
        except (OSError, ClusterError, ssl.SSLError):
            return False
        return status == 200

    def is_running(self) -> bool:
        """All components alive and the apiserver ready."""
        procs = self.processes()
        return len(procs) == len(COMPONENTS) and all(procs.values()) and self.is_ready()

    def env(self) -> dict[str, str]:
        bins = binaries(build=False)
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "SERVELAB_TEST_KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{bins.kube}:{bins.helm}:{os.environ.get('PATH', '')}",
        }

    # ---- up

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise up/down of one state dir across processes (several people share a machine)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def up(self, *, build: bool = True, timeout: float = 180.0, reuse: bool = True) -> LocalCluster:
        """Start the cluster (or reuse the one running in this state dir) and wait until it is usable."""
        t0 = time.monotonic()
        with self._locked():
            if reuse and self.is_running():
                self.reused = True
                self.started_in = time.monotonic() - t0
                return self
            self._down()  # leftovers of a crashed cluster in this state dir
            bins = binaries(build=build)
            try:
                self._start(bins, t0, t0 + timeout)
            except BaseException:
                self._down()
                raise
        self.started_in = time.monotonic() - t0
        state = self.state()
        state["startup_seconds"] = round(self.started_in, 2)
        state["startup_phases"] = self.phases
        self._save_state(state)
        return self

    def _start(self, bins: Binaries, t0: float, deadline: float) -> None:
        self.reused = False
        self.phases = {}

        def mark(phase: str) -> None:
            self.phases[phase] = round(time.monotonic() - t0, 2)

        for sub in ("etcd", "logs"):
            shutil.rmtree(self.state_dir / sub, ignore_errors=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "etcd").mkdir(mode=0o700)
        etcd_port, peer_port, api_port = _free_ports(3)
        server = f"https://127.0.0.1:{api_port}"
        state: dict[str, Any] = {
            "name": self.name,
            "server": server,
            "ports": {"etcd": etcd_port, "etcd-peer": peer_port, "kube-apiserver": api_port},
            "binaries": {k: str(v) for k, v in vars(bins).items()},
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "processes": {},
        }
        self._save_state(state)

        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(bins.path("etcd")),
                "--name=servelab",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=servelab={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        write_pki(self.pki_dir)
        pki = self.pki_dir
        self._write_kubeconfig(server)
        kwok_config = self.state_dir / "kwok.yaml"
        kwok_config.write_text(yaml.safe_dump_all(kwok_documents(), sort_keys=False))

        self._spawn(
            "kube-apiserver",
            [
                str(bins.path("kube-apiserver")),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                "--endpoint-reconciler-type=none",  # Endpoints may not hold a loopback address
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
            ],
        )
        api = _Api(server, pki)

        def readyz() -> bool:
            status, _ = api.call("GET", "/readyz", timeout=3)
            return status == 200

        _poll("kube-apiserver /readyz", readyz, deadline - time.monotonic(), check=self._check_alive)
        mark("kube-apiserver ready")

        kubeconfig = str(self.kubeconfig)
        self._spawn(
            "kube-controller-manager",
            [
                str(bins.path("kube-controller-manager")),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                "--use-service-account-credentials=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(bins.path("kube-scheduler")),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
            ],
        )
        self._spawn(
            "kwok",
            [
                str(bins.path("kwok")),
                f"--kubeconfig={kubeconfig}",
                f"--config={kwok_config}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            ],
        )

        for node in self.nodes:
            api.ok("POST", "/api/v1/nodes", node.manifest(), accept=(409,))
        crds = self._apply_crds(api)

        def nodes_ready() -> bool:
            items = api.ok("GET", "/api/v1/nodes?labelSelector=type%3Dkwok")["items"]
            ready = {
                n["metadata"]["name"]
                for n in items
                for c in (n.get("status") or {}).get("conditions") or []
                if c["type"] == "Ready" and c["status"] == "True"
            }
            return {n.name for n in self.nodes} <= ready

        check = self._check_alive
        _poll("fake nodes to be Ready", nodes_ready, deadline - time.monotonic(), check=check)
        mark("nodes Ready")
        self._wait_crds(api, crds, deadline - time.monotonic())
        mark(f"{len(crds)} CRDs Established")

        # the controller-manager works once it has created the default ServiceAccount
        def default_sa() -> bool:
            status, _ = api.call("GET", "/api/v1/namespaces/default/serviceaccounts/default")
            return status == 200

        _poll(
            "kube-controller-manager (default ServiceAccount)",
            default_sa,
            deadline - time.monotonic(),
            check=check,
        )
        mark("controller-manager working")

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.log_dir / f"{name}.log").open("wb")
        self._logs.append(log)
        log.write(("# " + " ".join(argv) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.state_dir,
            start_new_session=True,
            preexec_fn=_parent_death_signal if self.die_with_parent else None,
        )
        self._procs[name] = proc
        start = _proc_start_time(proc.pid)
        state = self.state()
        state["processes"][name] = {"pid": proc.pid, "start_time": start, "argv": argv}
        self._save_state(state)

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                tail = _tail(self.log_dir / f"{name}.log", 30)
                raise ClusterError(f"{name} exited with code {proc.returncode}; last log lines:\n{tail}")

    def _write_kubeconfig(self, server: str) -> None:
        def b64(name: str) -> str:
            return base64.b64encode((self.pki_dir / name).read_bytes()).decode()

        ctx = f"servelab-{self.name}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": ctx, "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")}}
            ],
            "users": [
                {
                    "name": f"{ctx}-admin",
                    "user": {
                        "client-certificate-data": b64("admin.crt"),
                        "client-key-data": b64("admin.key"),
                    },
                }
            ],
            "contexts": [
                {"name": ctx, "context": {"cluster": ctx, "user": f"{ctx}-admin", "namespace": "default"}}
            ],
            "current-context": ctx,
        }
        fd = os.open(self.state_dir / "kubeconfig", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)

    # ---- CRDs

    def crd_files(self) -> list[Path]:
        return sorted(self.crd_dir.glob("*.yaml")) if self.crd_dir.is_dir() else []

    def _apply_crds(self, api: _Api) -> list[str]:
        names = []
        for path in self.crd_files():
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                name = doc["metadata"]["name"]
                query = urllib.parse.urlencode({"fieldManager": FIELD_MANAGER, "force": "true"})
                api.ok(
                    "PATCH",
                    f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}?{query}",
                    doc,
                    content_type="application/apply-patch+yaml",
                )
                names.append(name)
        return names

    def _wait_crds(self, api: _Api, names: list[str], timeout: float) -> None:
        for name in names:

            def established(name: str = name) -> bool:
                crd = api.ok("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conds = (crd.get("status") or {}).get("conditions") or []
                return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

            _poll(f"CRD {name} to be Established", established, timeout)

    def apply_crds(self, timeout: float = 60.0) -> list[str]:
        """(Re)install every crds/*.yaml with server-side apply and wait until each is Established."""
        api = self._api()
        names = self._apply_crds(api)
        self._wait_crds(api, names, timeout)
        return names

    # ---- down

    def down(self, timeout: float = 20.0, purge: bool = False) -> list[str]:
        """Stop every recorded component (reverse order, whole process groups). Idempotent.

        Returns the components that were running. `purge` removes the state directory afterwards.
        """
        if not self.state_dir.is_dir():
            return []
        with self._locked():
            stopped = self._down(timeout)
        if purge:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        return stopped

    def _down(self, timeout: float = 20.0) -> list[str]:
        procs = self.state().get("processes", {})
        stopped: list[str] = []
        # kwok, scheduler and controller-manager together, then the apiserver, then etcd
        for group in (COMPONENTS[2:], COMPONENTS[1:2], COMPONENTS[:1]):
            live = {}
            for comp in group:
                rec = procs.get(comp)
                if rec and _proc_start_time(rec["pid"]) == rec["start_time"]:
                    live[comp] = rec["pid"]
            for pid in live.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
            stopped += live
            self._wait_gone(dict(live), procs, timeout)
        for proc in self._procs.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=1)
        self._procs.clear()
        # a stopped component whose parent was another (exited) process is reaped by init: give it a moment
        # so that no <defunct> entry is left right after `down`
        deadline = time.monotonic() + 3
        for comp in stopped:
            pid = procs[comp]["pid"]
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                if _proc_start_time(pid) not in (None, procs[comp]["start_time"]):
                    break  # the pid now belongs to another process
                time.sleep(0.05)
        for log in self._logs:
            log.close()
        self._logs.clear()
        if procs:
            state = self.state()
            state["processes"] = {}
            state["stopped_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            self._save_state(state)
        return stopped

    def _wait_gone(self, live: dict[str, int], procs: dict[str, Any], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while live and time.monotonic() < deadline:
            for comp in list(live):
                if comp in self._procs:
                    with contextlib.suppress(Exception):
                        self._procs[comp].wait(timeout=0.05)
                if _proc_start_time(live[comp]) != procs[comp]["start_time"]:
                    del live[comp]
            time.sleep(0.05)
        for comp, pid in live.items():  # did not stop in time
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            if comp in self._procs:
                with contextlib.suppress(Exception):
                    self._procs[comp].wait(timeout=5)
            start_time = procs[comp]["start_time"]

            def gone(pid: int = pid, start_time: int = start_time) -> bool:
                return _proc_start_time(pid) != start_time

            _poll(f"{comp} (pid {pid}) to die after SIGKILL", gone, 10)

    # ---- status

    def describe(self) -> str:
        lines = [f"cluster {self.name!r} in {self.state_dir}"]
        state = self.state()
        if not state:
            return lines[0] + ": never started"
        for comp, pid in self.processes().items():
            lines.append(f"  {comp:<24} {'pid ' + str(pid) if pid else 'not running'}")
        ready = self.is_ready()
        lines.append(f"  apiserver {state.get('server')}: {'ready' if ready else 'not reachable'}")
        if ready:
            api = self._api()
            for node in api.ok("GET", "/api/v1/nodes")["items"]:
                conds = {c["type"]: c["status"] for c in (node.get("status") or {}).get("conditions") or []}
                gpus = ((node.get("status") or {}).get("allocatable") or {}).get(GPU_RESOURCE, "0")
                product = (node["metadata"].get("labels") or {}).get("nvidia.com/gpu.product", "-")
                lines.append(
                    f"  node {node['metadata']['name']:<12} Ready={conds.get('Ready', '?'):<6} "
                    f"{GPU_RESOURCE}={gpus:<2} {product}"
                )
            crds = api.ok("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]
            lines.append(f"  CRDs: {', '.join(c['metadata']['name'] for c in crds) or 'none'}")
        if state.get("startup_seconds") is not None:
            lines.append(f"  last start took {state['startup_seconds']} s")
        lines.append(f"  logs: {self.log_dir}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# CLI: servelab cluster {up,down,status,env}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status", "env"])
    parser.add_argument("--name", default=None, help="cluster name (default: dev, or the state dir's name)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="state directory (default: $SERVELAB_CACHE/cluster/<name>)",
    )
    parser.add_argument(
        "--no-build", action="store_true", help="up: fail instead of building missing binaries"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="up: seconds to wait for readiness")
    parser.add_argument("--restart", action="store_true", help="up: stop a running cluster and start afresh")
    parser.add_argument("--purge", action="store_true", help="down: also remove the state directory")


def run(args: argparse.Namespace) -> int:
    name = args.name or (args.state_dir.name if args.state_dir else "dev")
    cluster = LocalCluster(name, args.state_dir)
    if args.action == "up":
        try:
            cluster.up(build=not args.no_build, timeout=args.timeout, reuse=not args.restart)
        except (ClusterError, subprocess.CalledProcessError) as err:
            print(f"servelab cluster up failed: {err}\nlogs: {cluster.log_dir}", file=sys.stderr)
            return 1
        how = "already running" if cluster.reused else f"started in {cluster.started_in:.1f} s"
        if cluster.phases:
            how += " (" + ", ".join(f"{phase} at {sec:.1f} s" for phase, sec in cluster.phases.items()) + ")"
        print(f"cluster {cluster.name!r} {how}; logs in {cluster.log_dir}")
        sys.stdout.flush()  # before kubectl writes to the same stdout
        kubectl = binaries(build=False).path("kubectl")
        env = os.environ | {"KUBECONFIG": str(cluster.kubeconfig)}
        subprocess.run([str(kubectl), "get", "nodes", "-L", "nvidia.com/gpu.product"], env=env, check=False)
        which = f"--state-dir {shlex.quote(str(args.state_dir))}" if args.state_dir else f"--name {name}"
        print(
            f"\nUse it:\n  export KUBECONFIG={shlex.quote(str(cluster.kubeconfig))}; kubectl get nodes\n"
            f'  eval "$(servelab cluster env {which})"   # KUBECONFIG, SERVELAB_TEST_KUBECONFIG, PATH with'
            f" the built kubectl ({kubectl.parent}) and helm\nStop it: servelab cluster down {which}"
        )
        return 0
    if args.action == "down":
        stopped = cluster.down(purge=args.purge)
        print(
            f"cluster {cluster.name!r}: "
            + (f"stopped {', '.join(stopped)}" if stopped else "nothing running")
        )
        return 0
    if args.action == "status":
        print(cluster.describe())
        return 0 if cluster.is_running() else 1
    # env
    if not cluster.kubeconfig.exists():
        print(f"cluster {cluster.name!r} was never started ({cluster.state_dir})", file=sys.stderr)
        return 1
    env = cluster.env()
    print(f"export KUBECONFIG={shlex.quote(env['KUBECONFIG'])}")
    print(f"export SERVELAB_TEST_KUBECONFIG={shlex.quote(env['SERVELAB_TEST_KUBECONFIG'])}")
    bins = binaries(build=False)
    print(f'export PATH={shlex.quote(f"{bins.kube}:{bins.helm}")}:"$PATH"')
    return 0
