# aifn developer entry points. `make setup` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST_ARGS ?=

.PHONY: monitoring-deps eventing eventing-check conformance-build conformance e2e-local setup tools test unit models demo dev-apiserver cluster cluster-down cluster-deps operator-image knative knative-check crds bench e2e images clean

setup: $(VENV)/.installed ## create .venv and install the project editable with its dev extras

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip >/dev/null
	$(PIP) install -e '.[dev]'
	touch $@

tools: ## build kube-apiserver, etcd, kube-controller-manager, helm, ksvc-check into ~/.cache/aifn and link them in bin/
	bash hack/build-tools.sh

test: setup tools knative eventing conformance-build cluster-deps monitoring-deps ## the whole suite (unit, Triton, control plane, cluster, e2e on the local cluster; root)
	$(PY) -m pytest $(PYTEST_ARGS)

unit: setup ## unit tests only
	$(PY) -m pytest -m "not integration and not triton and not e2e and not slow" $(PYTEST_ARGS)

models: setup ## retrain/export the shipped models (digits and co2 artifacts, minilm weights)
	$(PY) model_repo/build.py

demo: setup ## serve examples/digits.yaml locally with a real Triton and send it real digits
	$(PY) hack/demo.py

bench: setup tools ## the benchmarks: figures and ratios measured side by side (not tests); the cluster's when `make cluster` runs
	$(PY) benchmarks/models.py
	$(PY) benchmarks/local_bench.py
	$(PY) benchmarks/handler_bench.py
	$(PY) benchmarks/operator_bench.py
	$(PY) benchmarks/operator_triggers_bench.py
	$(PY) benchmarks/cluster_bench.py --if-cluster

dev-apiserver: setup tools ## a real control plane in the foreground; kubeconfig in .aifn/dev/kubeconfig
	$(PY) hack/dev_apiserver.py

cluster-deps: ## install what the cluster's nodes run (containerd, runc, CNI plugins, ...) from Debian if missing
	bash hack/cluster-deps.sh

monitoring-deps: ## install Debian's prometheus package (prometheus, promtool) if missing: the alert rules' and dashboard's tests
	bash hack/monitoring-deps.sh

cluster: setup tools knative eventing cluster-deps ## a real cluster (2 nodes, one a GPU worker) with Knative Serving, its networking layer, Knative Eventing (broker, in-memory channel) and the operator, in the foreground; kubeconfig and gateway address in .aifn/cluster/
	$(PY) hack/cluster.py up

cluster-down: ## remove the cluster (or what a killed run left): processes, containers, mounts, interfaces, iptables rules
	$(PY) hack/cluster.py down

operator-image: setup cluster-deps ## the operator image without Docker or a registry (buildah, as root); prints its OCI archive path
	$(PY) hack/build_images.py

knative: ## build Knative Serving 1.23's five binaries into ~/.cache/aifn/bin, linked in bin/knative/ (make cluster installs them)
	bash hack/build-knative.sh

eventing: ## build Knative Eventing 1.22 (core, in-memory channel, MT channel broker) into ~/.cache/aifn/bin, linked in bin/knative-eventing/ (make cluster installs it)
	bash hack/build-eventing.sh

eventing-check: setup tools eventing ## Eventing's images and resolved manifests against a throwaway control plane; a CloudEvent through broker and channel, all from the images
	$(PY) hack/check-eventing.py --live --flow

knative-check: setup tools knative ## Knative's images and resolved manifests against a throwaway control plane, its webhook live
	$(PY) hack/check-knative.py --live

conformance-build: ## build Knative's ingress conformance suite and its six test programs into bin/conformance/
	bash hack/build-conformance.sh

conformance: setup tools conformance-build ## Knative's ingress conformance suite against the running `make cluster`
	$(PY) hack/conformance.py $(if $(RUN),--run '$(RUN)') $(if $(SKIP),--skip $(SKIP))

crds: setup ## regenerate crds/ from the spec schema (and the chart's copy)
	$(VENV)/bin/aifn crd > crds/aifunctions.aifn.dev.yaml
	if [ -f hack/sync-chart-crds.py ]; then $(PY) hack/sync-chart-crds.py; fi

e2e-local: setup tools knative cluster-deps ## the e2e suite on the local cluster (reuses `make cluster` when it runs)
	$(PY) -m pytest tests/e2e --e2e-provider=local $(PYTEST_ARGS)

e2e: setup tools ## kind + Knative + the chart; needs Docker
	$(PY) -m pytest tests/e2e --e2e $(PYTEST_ARGS)

IMAGE ?= aifunction-operator:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
images: ## build the operator image from the Dockerfile (needs Docker)
	docker build -t $(IMAGE) .

clean:
	rm -rf $(VENV) bin .aifn .pytest_cache
