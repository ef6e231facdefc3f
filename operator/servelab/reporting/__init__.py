"""`servelab report`: compare runs side by side, from the cluster or from `servelab run`'s directories.

One path for both sources: `sources` loads resources (kind, name, spec, status), `compare` groups the
comparable ones and computes deltas against a baseline, and the renderers write a terminal table,
Markdown, a self-contained HTML page (plots inline as SVG) or llm-d Benchmark Report v0.2 JSON.
Nothing here is imported by the operator but `workload` (light: it labels the operator's metrics)."""
