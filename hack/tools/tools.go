//go:build tools

// Package tools pins kwok and helm for servelab's test control plane.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
