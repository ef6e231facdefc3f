module servelab.dev/hack/zeroserver

go 1.26.0
