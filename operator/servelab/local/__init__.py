"""Local execution of servelab plans (processes on one machine, no cluster, no GPU needed)."""
