"""Test support: a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)."""
