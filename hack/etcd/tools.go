//go:build tools

// Package tools pins etcd's server for servelab's test control plane.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
