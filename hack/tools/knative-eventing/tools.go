//go:build tools

// Package tools records the commands this module builds (hack/build-eventing.sh), so `go mod tidy`
// keeps their dependencies: every image that Knative Eventing's config/core,
// config/channels/in-memory-channel and config/brokers/mt-channel-broker name with ko://, at the
// version go.mod pins (knative.dev/eventing v0.49.2 = knative-v1.22.2).
package tools

import (
	// config/core: the Deployments controller, webhook, pingsource-mt-adapter, job-sink and
	// request-reply, and the two images the controller starts pods from (its env
	// APISERVER_RA_IMAGE for ApiServerSources, AUTH_PROXY_IMAGE for OIDC).
	_ "knative.dev/eventing/cmd/apiserver_receive_adapter"
	_ "knative.dev/eventing/cmd/auth_proxy"
	_ "knative.dev/eventing/cmd/controller"
	_ "knative.dev/eventing/cmd/jobsink"
	_ "knative.dev/eventing/cmd/mtping"
	_ "knative.dev/eventing/cmd/requestreply"
	_ "knative.dev/eventing/cmd/webhook"

	// config/channels/in-memory-channel: imc-controller and imc-dispatcher.
	_ "knative.dev/eventing/cmd/in_memory/channel_controller"
	_ "knative.dev/eventing/cmd/in_memory/channel_dispatcher"

	// config/brokers/mt-channel-broker: mt-broker-controller, mt-broker-ingress, mt-broker-filter.
	_ "knative.dev/eventing/cmd/broker/filter"
	_ "knative.dev/eventing/cmd/broker/ingress"
	_ "knative.dev/eventing/cmd/mtchannel_broker"
)
