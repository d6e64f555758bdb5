//go:build tools

// Package tools records what this module builds (hack/build-conformance.sh), so `go mod tidy`
// keeps their dependencies: Knative's ingress conformance suite (a test binary, built with
// `go test -c -tags=e2e`) and the six test images its pods run, at the networking version
// that knative.dev/serving v0.50.0 (Knative 1.23) requires.
package tools

import (
	_ "knative.dev/networking/test/conformance/ingress"
	_ "knative.dev/networking/test/test_images/grpc-ping"
	_ "knative.dev/networking/test/test_images/httpproxy"
	_ "knative.dev/networking/test/test_images/retry"
	_ "knative.dev/networking/test/test_images/runtime"
	_ "knative.dev/networking/test/test_images/timeout"
	_ "knative.dev/networking/test/test_images/wsserver"
)
