"""What worker pods run: `servelab worker <kind>` inside the image's environment.

Each worker takes its inputs from arguments (and a few environment variables), writes its full
artifacts into an output directory, and publishes a compact JSON result through a `ResultSink`
(`servelab.workers.publish`). Kinds: gguf (llamacpp image), perf, eval, depth (evalscope image).
"""
