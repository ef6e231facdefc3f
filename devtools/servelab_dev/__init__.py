"""servelab-dev: servelab's test bench and trial conveniences (distribution `servelab-dev`, `devtools/`).

None of this ships in the operator's package or image, and `servelab` never imports it:

- `servelab_dev.controlplane`: a real local Kubernetes control plane (etcd, kube-apiserver,
  controller-manager, scheduler, kwok fake GPU nodes, PKI): `servelab cluster ...`.
- `servelab_dev.kubelet`: a kubelet stand-in that runs the operator's pods as local processes:
  `servelab pods ...`.
- `servelab_dev.tinymodel`: the tiny random-weight model the tests and the demo use.
- `servelab_dev.demo`: `servelab demo`, the main job on that tiny model.
- `servelab_dev.argcheck` (`.vllm`, `.sglang`): check rendered server command lines with the engines'
  own parsers, inside their worker environments.
- `servelab_dev.devenv`: the environment for running this package's modules inside a worker
  environment (`python -m servelab_dev.tinymodel`, `python -m servelab_dev.argcheck.vllm`).

The `servelab` CLI finds the commands through the `servelab.commands` entry points of this
distribution (devtools/pyproject.toml).
"""
