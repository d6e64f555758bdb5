//go:build tools

// Package tools records the commands this module builds, so `go mod tidy` keeps their dependencies.
// The control plane (kube-apiserver, kube-controller-manager, kubectl) serves every test tier;
// kube-scheduler, kubelet and kube-proxy make the nodes of `make cluster`.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
