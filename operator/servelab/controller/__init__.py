"""The operator: kopf handlers over pure render/reconcile functions (see docs/operator.md)."""
