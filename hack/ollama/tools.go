//go:build tools

// Package tools pins the Ollama server (github.com/ollama/ollama) for hack/build-ollama.sh: this wrapper
// module's go.mod/go.sum fix its version and every dependency's; the blank import keeps `go mod tidy`
// from dropping it (a main package is importable only under a build tag no build sets).
package tools

import _ "github.com/ollama/ollama"
