# Vigil: `make run` starts the local stack in the foreground; `make test` runs every test.
# Both install what they need (idempotent; stamp files make the second run fast).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VIGIL := $(VENV)/bin/vigil
KAFKA_LIBS := .vigil/kafka/libs
HELM_VERSION := v3.19.0
REGISTRY_VERSION := v1.4.0
GOBIN := $(CURDIR)/.vigil/bin

.PHONY: run test deps native lint fmt bench clean-state helm registry-peer k8s-deps etcd helm-docs image image-test

deps: $(VENV)/.installed $(KAFKA_LIBS)/.installed native

# The pipeline's hot modules compiled with mypyc (app/native); a no-op when up to date, and Vigil
# runs its Python sources when there is no C compiler.
native: $(VENV)/.installed
	@$(VENV)/bin/python -m app.native.build

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(KAFKA_LIBS)/.installed: app/devstack/pom.xml
	@command -v java >/dev/null || { echo "Java 17+ is needed for the local Kafka: apt-get install openjdk-17-jre-headless"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is needed to fetch the Kafka jars: apt-get install maven"; exit 1; }
	rm -rf $(KAFKA_LIBS) && mkdir -p $(KAFKA_LIBS)
	mvn -q -B -f app/devstack/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS)
	@touch $@

# helm CLI for chart tests, built from source with the Go toolchain.
helm: $(GOBIN)/helm
# Release builds stamp the Kubernetes version helm assumes; `go install` must do it too (else v1.20).
HELM_LDFLAGS := -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34 \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=34
$(GOBIN)/helm:
	GOBIN=$(GOBIN) go install -ldflags "$(HELM_LDFLAGS)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

# --- Kubernetes: the chart is proven against a real kube-apiserver (tests/integration/k8s) -------
# kube-apiserver built from the k8s.io/kubernetes module of K8S_VERSION (about 5 minutes, once;
# the file name carries the version, so bumping it rebuilds), the same release's OpenAPI document
# (strict validation of rendered objects), the Prometheus Operator's ServiceMonitor CRD, and etcd.
K8S_VERSION := v1.34.2
PROM_OPERATOR_VERSION := v0.85.0
K8S_DIR := .vigil/k8s
KUBE_APISERVER := $(K8S_DIR)/bin/kube-apiserver-$(K8S_VERSION)
K8S_OPENAPI := $(K8S_DIR)/swagger-$(K8S_VERSION).json
SERVICEMONITOR_CRD := $(K8S_DIR)/servicemonitors-$(PROM_OPERATOR_VERSION).yaml
# The directory `go mod download` unpacked a module into.
go_module_dir = $$(go mod download -json $(1) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p')

k8s-deps: helm etcd $(KUBE_APISERVER) $(K8S_OPENAPI) $(SERVICEMONITOR_CRD)

$(KUBE_APISERVER): tests/integration/k8s/build-kube-apiserver.sh
	@mkdir -p $(K8S_DIR)/bin
	@echo "building kube-apiserver $(K8S_VERSION) from the k8s.io/kubernetes module (once; a few minutes)"
	tests/integration/k8s/build-kube-apiserver.sh $(K8S_VERSION) $@ $(K8S_DIR)/src > $(K8S_DIR)/build.log 2>&1 \
		|| { tail -30 $(K8S_DIR)/build.log; exit 1; }
	rm -rf $(K8S_DIR)/src

$(K8S_OPENAPI):
	@mkdir -p $(K8S_DIR)
	cp "$(call go_module_dir,k8s.io/kubernetes@$(K8S_VERSION))/api/openapi-spec/swagger.json" $@.tmp && chmod u+w $@.tmp && mv $@.tmp $@

$(SERVICEMONITOR_CRD):
	@mkdir -p $(K8S_DIR)
	cp "$(call go_module_dir,github.com/prometheus-operator/prometheus-operator@$(PROM_OPERATOR_VERSION))/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" $@.tmp && chmod u+w $@.tmp && mv $@.tmp $@

# etcd for the kube-apiserver: Debian's etcd-server (the machine runs as root; quiet, only if missing).
etcd:
	@command -v etcd >/dev/null || { echo "installing etcd-server (Debian) for the chart's API-server tests"; \
		export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq etcd-server >/dev/null 2>&1 \
		|| { apt-get update -qq >/dev/null && apt-get install -y -qq etcd-server >/dev/null; }; }

# The values reference in helm/vigil/README.md, from the comments in values.yaml.
helm-docs: $(VENV)/.installed
	$(VENV)/bin/python helm/tools/values_reference.py

# A third-party Confluent-API schema registry, to prove Vigil works against one it did not write.
# Best effort: the Go module proxy reachable here answers 403 for this module; the peer-registry
# test skips with that error when the binary is missing.
registry-peer:
	@mkdir -p .vigil
	@test -x $(GOBIN)/schema-registry || GOBIN=$(GOBIN) go install github.com/axonops/axonops-schema-registry/cmd/schema-registry@$(REGISTRY_VERSION) > .vigil/registry-peer-install.log 2>&1 || echo "note: peer schema registry unavailable (see .vigil/registry-peer-install.log)"

run: deps
	$(VIGIL) dev run --rules rules

test: deps helm registry-peer k8s-deps
	$(VENV)/bin/ruff check app tests benchmarks
	$(VENV)/bin/pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check app tests benchmarks

fmt: $(VENV)/.installed
	$(VENV)/bin/ruff format app tests benchmarks

bench: deps
	$(VENV)/bin/python benchmarks/run.py --json

clean-state:
	$(VIGIL) dev down || true
	rm -rf .vigil/data .vigil/run
