"""A stand-in for the kubelet on the local cluster, for pods that must really run (tests and
`servelab pods`).

KWOK fakes pod status but runs nothing. Pods servelab creates with the label
`servelab.dev/executor=local` (set through the operator's SERVELAB_EXTRA_POD_LABELS in tests) are run
here instead, once the real scheduler has bound them to a node: each container's exact command and
environment (literal values, Secret keys, the downward API's pod IP) run as a local process in a
private mount namespace that has the pod's own service-account token directory and /etc/hosts (with
the namespace's Services), as a container runtime would give it. The process' life is reported back
as pod status (Running, Ready from the readiness probe, Succeeded/Failed with the exit code), so the
Job controller, the Deployment controller and the operator see what they would see in a real cluster.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from servelab.local.processes import Toolchain, expand
from servelab.plan import WorkerStep

LABEL = "servelab.dev/executor"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Running:
    pod: str
    ip: str
    proc: subprocess.Popen[bytes]
    log: Path
    probe: str | None
    ready: bool = False
    done: bool = False


@dataclass
class PodExecutor:
    api: client.ApiClient
    namespace: str
    api_host: str
    api_port: str
    ca_file: Path
    workdir: Path
    toolchain: Toolchain = field(default_factory=Toolchain)
    running: dict[str, Running] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)  # every pod ever started, in order
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _next_ip: int = 10
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.api)

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self) -> PodExecutor:
        self._thread = threading.Thread(target=self._loop, name=f"podexec-{self.namespace}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(30)
        for run in self.running.values():
            self._kill(run)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # keep going; the test sees the errors list and the logs
                self.errors.append(repr(exc))
            self._stop.wait(0.5)

    # ---- one pass ---------------------------------------------------------------------------------
    def tick(self) -> None:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{LABEL}=local").items
        seen = set()
        for pod in pods:
            name = pod.metadata.name
            seen.add(name)
            run = self.running.get(name)
            if pod.metadata.deletion_timestamp:
                if run:
                    self._kill(run)
                    self.running.pop(name, None)
                self._force_delete(name)
                continue
            if run is None:
                if pod.spec.node_name and pod.status.phase == "Pending" and name not in self.started:
                    self._start(pod)
                continue
            self._update(pod, run)
        for name in list(self.running):
            if name not in seen:
                self._kill(self.running.pop(name))
        self._refresh_hosts()

    def _start(self, pod: Any) -> None:
        c = pod.spec.containers[0]
        ip = f"127.1.{self._next_ip // 250}.{self._next_ip % 250 + 2}"
        self._next_ip += 1
        env = self._env(pod, c, ip)
        command = [expand(a, env) for a in list(c.command or []) + list(c.args or [])]
        argv, base_env = self._local(command)
        full_env = {**base_env, **env}
        root = self.workdir / pod.metadata.name
        root.mkdir(parents=True, exist_ok=True)
        self._pod_files(pod, root)
        mounts = [(root / "serviceaccount", SA_DIR), (root / "hosts", "/etc/hosts")]
        for vm in c.volume_mounts or []:
            if vm.mount_path == SA_DIR:  # the projected service-account volume: served by the dir made above
                continue
            target = root / "volumes" / vm.name
            target.mkdir(parents=True, exist_ok=True)
            mounts.append((target, vm.mount_path))
        script = "set -e\n" + "".join(
            f"mkdir -p {shlex.quote(dst)} && mount --bind {shlex.quote(str(src))} {shlex.quote(dst)}\n"
            if src.is_dir() else f"mount --bind {shlex.quote(str(src))} {shlex.quote(dst)}\n"
            for src, dst in mounts
        ) + 'exec "$@"\n'  # fmt: skip
        log = root / "container.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "pod", *argv],
                                    env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        probe = None
        if c.readiness_probe and c.readiness_probe.http_get:
            port = c.readiness_probe.http_get.port
            if isinstance(port, str):
                port = next(p.container_port for p in c.ports if p.name == port)
            probe = f"http://{ip}:{port}{c.readiness_probe.http_get.path}"
        run = Running(pod.metadata.name, ip, proc, log, probe)
        self.running[pod.metadata.name] = run
        self.started.append(pod.metadata.name)
        self._status(
            pod.metadata.name,
            ip,
            "Running",
            ready=probe is None,
            container={"running": {"startedAt": _now()}},
        )

    def _update(self, pod: Any, run: Running) -> None:
        if run.done:
            return
        rc = run.proc.poll()
        if rc is not None:
            run.done = True
            phase = "Succeeded" if rc == 0 else "Failed"
            term = {"terminated": {"exitCode": rc, "reason": "Completed" if rc == 0 else "Error",
                                   "startedAt": _now(), "finishedAt": _now()}}  # fmt: skip
            self._status(run.pod, run.ip, phase, ready=False, container=term)
            return
        if run.probe and not run.ready:
            try:
                with urllib.request.urlopen(run.probe, timeout=2) as resp:
                    ok = resp.status == 200
            except Exception:
                ok = False
            if ok:
                run.ready = True
                self._status(
                    run.pod, run.ip, "Running", ready=True, container={"running": {"startedAt": _now()}}
                )

    # ---- helpers ----------------------------------------------------------------------------------
    def _local(self, command: list[str]) -> tuple[list[str], dict[str, str]]:
        """Map the container's program to this machine's build of it (same arguments)."""
        if command[:2] == ["servelab", "worker"]:
            step = WorkerStep(id="pod", title="pod", argv=command, result="points", timeout_seconds=0)
            return self.toolchain.worker_argv(step)
        from servelab.engines import for_command

        engine = for_command(command)  # the adapter whose server command this is
        if engine is None:
            raise RuntimeError(f"no local build of {command[0]}")
        return self.toolchain.server_argv(engine.name, command)

    def _env(self, pod: Any, c: Any, ip: str) -> dict[str, str]:
        env = {"KUBERNETES_SERVICE_HOST": self.api_host, "KUBERNETES_SERVICE_PORT": self.api_port,
               "HOSTNAME": pod.metadata.name}  # fmt: skip
        for e in c.env or []:
            if e.value_from is None:
                env[e.name] = expand(e.value or "", env)
            elif e.value_from.secret_key_ref:
                ref = e.value_from.secret_key_ref
                secret = self.core.read_namespaced_secret(ref.name, self.namespace)
                env[e.name] = base64.b64decode(secret.data[ref.key]).decode()
            elif e.value_from.field_ref and e.value_from.field_ref.field_path == "status.podIP":
                env[e.name] = ip
        return env

    def _pod_files(self, pod: Any, root: Path) -> None:
        sa = root / "serviceaccount"
        sa.mkdir(exist_ok=True)
        (sa / "namespace").write_text(self.namespace)
        (sa / "ca.crt").write_bytes(self.ca_file.read_bytes())
        if pod.spec.service_account_name and pod.spec.automount_service_account_token is not False:
            req = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
            )
            tok = self.core.create_namespaced_service_account_token(
                pod.spec.service_account_name, self.namespace, req
            )
            (sa / "token").write_text(tok.status.token)
        (root / "hosts").write_text(self._hosts(pod.metadata.name))

    def _hosts(self, pod_name: str) -> str:
        """/etc/hosts of a pod: itself, and every Service of the namespace with a running backend (what
        cluster DNS would answer)."""
        lines = ["127.0.0.1 localhost", f"{self._ip_of_pod(pod_name) or '127.0.0.1'} {pod_name}"]
        for svc in self.core.list_namespaced_service(self.namespace).items:
            sel = svc.spec.selector or {}
            ip = self._endpoint(sel)
            if ip:
                n = svc.metadata.name
                lines.append(
                    f"{ip} {n} {n}.{self.namespace} {n}.{self.namespace}.svc {n}.{self.namespace}.svc.cluster.local"
                )
        return "\n".join(lines) + "\n"

    def _refresh_hosts(self) -> None:
        """Services whose backends started after a pod did become resolvable in it, as with cluster DNS (a
        client may start before its server: the first load step waits for the server while it loads). The
        file is rewritten in place: the pod's /etc/hosts is a bind mount of it."""
        for name, run in self.running.items():
            if run.done:
                continue
            hosts = self.workdir / name / "hosts"
            text = self._hosts(name)
            if hosts.exists() and hosts.read_text() != text:
                with hosts.open("w") as fh:  # same inode
                    fh.write(text)

    def _ip_of_pod(self, name: str) -> str | None:
        run = self.running.get(name)
        return run.ip if run else None

    def _endpoint(self, selector: dict[str, str]) -> str | None:
        if not selector:
            return None
        sel = ",".join(f"{k}={v}" for k, v in selector.items())
        for p in self.core.list_namespaced_pod(self.namespace, label_selector=sel).items:
            run = self.running.get(p.metadata.name)
            if run and not run.done:
                return run.ip
        return None

    def _status(self, name: str, ip: str, phase: str, ready: bool, container: dict[str, Any]) -> None:
        t = _now()

        def cond(typ: str, ok: bool) -> dict[str, str]:
            return {"type": typ, "status": "True" if ok else "False", "lastTransitionTime": t}

        pod = self.core.read_namespaced_pod(name, self.namespace)
        body = {"status": {
            "phase": phase, "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1", "startTime": t,
            "conditions": [cond("PodScheduled", True), cond("Initialized", True), cond("ContainersReady", ready),
                           cond("Ready", ready)],
            "containerStatuses": [{"name": pod.spec.containers[0].name, "ready": ready, "restartCount": 0,
                                   "image": "local", "imageID": "local", "state": container}],
        }}  # fmt: skip
        self.core.patch_namespaced_pod_status(name, self.namespace, body)

    def _kill(self, run: Running) -> None:
        if run.proc.poll() is None:
            import signal

            try:
                os.killpg(run.proc.pid, signal.SIGTERM)
                run.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.proc.pid, signal.SIGKILL)

    def _force_delete(self, name: str) -> None:
        try:
            self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
        except client.ApiException as err:
            if err.status != 404:
                raise


def executor_for(api: client.ApiClient, namespace: str, kubeconfig_ca: Path, tmp: Path) -> PodExecutor:
    host = api.configuration.host  # https://127.0.0.1:PORT
    hostport = host.split("://", 1)[1]
    h, p = hostport.rsplit(":", 1)
    return PodExecutor(api, namespace, h, p, kubeconfig_ca, tmp)


def wait_for(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def add_arguments(parser: Any) -> None:
    parser.add_argument("-n", "--namespace", required=True, help="namespace whose labelled pods to run")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="default: $KUBECONFIG")
    parser.add_argument("--workdir", type=Path, default=None, help="pod logs and files (default: a temp dir)")


def run(args: Any) -> int:
    """`servelab pods`: run the operator's pods (labelled servelab.dev/executor=local) on this machine."""
    from kubernetes import config

    from servelab_dev.controlplane import LocalCluster

    if not args.kubeconfig:
        print("no kubeconfig: pass --kubeconfig or set KUBECONFIG", file=sys.stderr)
        return 2
    api = config.new_client_from_config(config_file=args.kubeconfig)
    ca = LocalCluster.attach(Path(args.kubeconfig)).pki_dir / "ca.crt"
    work = args.workdir or Path(tempfile.mkdtemp(prefix="servelab-pods-"))
    ex = executor_for(api, args.namespace, ca, work).start()
    print(
        f"running pods labelled {LABEL}=local in {args.namespace}; logs in {work}; Ctrl-C stops", flush=True
    )
    seen = 0
    try:
        while True:
            time.sleep(1)
            for name in ex.started[seen:]:
                print(f"started {name}", flush=True)
            seen = len(ex.started)
            while ex.errors:
                print(f"error: {ex.errors.pop(0)}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        ex.stop()
    return 0


__all__ = ["PodExecutor", "executor_for", "wait_for"]
