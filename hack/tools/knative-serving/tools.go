//go:build tools

// Package tools records the commands this module builds (hack/build-knative.sh), so `go mod tidy`
// keeps their dependencies: Knative Serving's core components at the version go.mod pins.
package tools

import (
	_ "knative.dev/serving/cmd/activator"
	_ "knative.dev/serving/cmd/autoscaler"
	_ "knative.dev/serving/cmd/controller"
	_ "knative.dev/serving/cmd/queue"
	_ "knative.dev/serving/cmd/webhook"
)
