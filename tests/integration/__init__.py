"""Tests against a real control plane (etcd, kube-apiserver, kube-controller-manager)."""
