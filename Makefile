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

.PHONY: run test deps native ui chromium lint fmt bench clean-state helm registry-peer k8s-deps etcd helm-docs salt receivers prometheus otelcol carbon \
	image-tools image-base image image-test

deps: $(VENV)/.installed $(KAFKA_LIBS)/.installed native ui

# The web UI (app/web/ui: Preact, uPlot, TanStack Virtual, built by Vite) into app/web/static, which
# `vigil ui` serves. npm installs exactly what package-lock.json pins; rebuilt when a source changes.
UI_DIR := app/web/ui
UI_SOURCES := $(shell find $(UI_DIR)/src -type f 2>/dev/null) $(UI_DIR)/index.html $(UI_DIR)/vite.config.ts $(UI_DIR)/tsconfig.json
ui: app/web/static/.built

$(UI_DIR)/node_modules/.installed: $(UI_DIR)/package.json $(UI_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "Node.js 20+ with npm is needed to build the web UI: apt-get install nodejs npm"; exit 1; }
	cd $(UI_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

app/web/static/.built: $(UI_DIR)/node_modules/.installed $(UI_SOURCES)
	cd $(UI_DIR) && npm run --silent build
	@touch $@

# Debian's Chromium for the browser tests (Playwright drives it; no browser download).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The pipeline's hot modules compiled with mypyc (app/native); a no-op when up to date, and Vigil
# runs its Python sources when there is no C compiler.
native: $(VENV)/.installed
	@$(VENV)/bin/python -m app.native.build

# requirements-dev.lock includes the runtime set (requirements-runtime.lock, all the image installs)
# and the build set (requirements-build.lock: mypy for mypyc, setuptools, wheel).
LOCKS := requirements-runtime.lock requirements-build.lock requirements-dev.lock
$(VENV)/.installed: $(LOCKS) pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.lock
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(KAFKA_LIBS)/.installed: app/devstack/pom.xml
	@command -v java >/dev/null || { echo "Java 17+ is needed for the local Kafka: apt-get install openjdk-17-jre-headless"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is needed to fetch the Kafka jars: apt-get install maven"; exit 1; }
	rm -rf $(KAFKA_LIBS) && mkdir -p $(KAFKA_LIBS)
	mvn -q -B -f app/devstack/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS)
	@touch $@

# salt-master, salt-minion and salt-api for the salt plugin's tests, in a virtualenv of their own
# (salt pins versions Vigil's set does not use; Vigil speaks HTTP to salt-api and never imports it).
SALT_VENV := .vigil/salt-venv
salt: $(SALT_VENV)/.installed
$(SALT_VENV)/.installed: requirements-salt.lock
	@test -x $(SALT_VENV)/bin/python || $(PY) -m venv $(SALT_VENV)
	$(SALT_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-salt.lock
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

# Order-only on the script: a checkout that only touches it does not rebuild (the version does).
$(KUBE_APISERVER): | tests/integration/k8s/build-kube-apiserver.sh
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

# --- The image (Dockerfile), built without Docker ------------------------------------------------
# buildah (chroot isolation: no daemon, works inside containers) on a Debian bookworm base made from
# Debian's packages by mmdebstrap (no image registry needed); podman (runc) runs it for the tests.
# Layers and images are kept under .vigil/containers: a second `make image` reuses every layer
# whose inputs did not change. `make image-test` builds it and proves it (tests/integration/image).
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE := localhost/vigil:$(IMAGE_VERSION)
IMAGE_BASE := localhost/vigil-base:bookworm
CONTAINERS := --root $(CURDIR)/.vigil/containers/storage --runroot $(CURDIR)/.vigil/containers/run
DEBIAN_MIRROR := http://deb.debian.org/debian
# Builds behind a TLS-intercepting proxy: pip inside the build trusts the CA bundle pip trusts here.
PIP_CERT_HOST := $(or $(PIP_CERT),$(shell $(PY) -m pip config get global.cert 2>/dev/null))
IMAGE_BUILD_ARGS := --build-arg BASE_IMAGE=$(IMAGE_BASE) \
	$(if $(PIP_CERT_HOST),-v $(PIP_CERT_HOST):/run/pip-ca.pem:ro --build-arg PIP_CERT=/run/pip-ca.pem)

image-tools:
	@missing=""; for tool in buildah podman mmdebstrap runc; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	test -z "$$missing" || { echo "installing$$missing (Debian) for the image build"; export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq $$missing >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq $$missing >/dev/null; }; }

image-base: image-tools
	@podman $(CONTAINERS) image exists $(IMAGE_BASE) || { \
		echo "making the Debian bookworm base image with mmdebstrap"; mkdir -p .vigil/containers; \
		mmdebstrap --quiet --variant=minbase --format=tar bookworm .vigil/containers/base.tar \
			"deb $(DEBIAN_MIRROR) bookworm main" "deb $(DEBIAN_MIRROR) bookworm-updates main" \
			"deb $(DEBIAN_MIRROR)-security bookworm-security main" \
		&& podman $(CONTAINERS) import -q .vigil/containers/base.tar $(IMAGE_BASE) >/dev/null \
		&& rm -f .vigil/containers/base.tar; }

image: image-base ui
	buildah $(CONTAINERS) bud --isolation chroot --layers --network host $(IMAGE_BUILD_ARGS) -t $(IMAGE) .

image-test: deps image
	VIGIL_TEST_IMAGE=$(IMAGE) VIGIL_TEST_CONTAINERS="$(CONTAINERS)" $(VENV)/bin/pytest -q tests/integration/image

# A third-party Confluent-API schema registry, to prove Vigil works against one it did not write.
# Best effort: the Go module proxy reachable here answers 403 for this module; the peer-registry
# test skips with that error when the binary is missing.
registry-peer:
	@mkdir -p .vigil
	@test -x $(GOBIN)/schema-registry || GOBIN=$(GOBIN) go install github.com/axonops/axonops-schema-registry/cmd/schema-registry@$(REGISTRY_VERSION) > .vigil/registry-peer-install.log 2>&1 || echo "note: peer schema registry unavailable (see .vigil/registry-peer-install.log)"

# --- Real metric receivers for the sinks' tests (tests/integration/receivers.py) ---------------
# Prometheus (remote-write receiver + scraper) and a minimal OpenTelemetry Collector (tools/otelcol:
# OTLP receiver + file exporter) built with Go into .vigil/bin, carbon-cache (Graphite) in a
# virtualenv of its own (it pins Twisted and friends). Best effort, like registry-peer: a failed
# install is logged to .vigil/<target>-install.log (command first) and the receiver's tests skip
# quoting it. The stamp names the version, so bumping one rebuilds it.
PROMETHEUS_VERSION := v0.316.0
CARBON_VENV := .vigil/carbon-venv
OTELCOL_SOURCES := tools/otelcol/go.mod tools/otelcol/go.sum tools/otelcol/main.go
# In parallel: carbon's install waits on the network while the Go builds use the cores.
receivers:
	@$(MAKE) --no-print-directory -s -j3 prometheus carbon otelcol
prometheus: $(GOBIN)/.prometheus-$(PROMETHEUS_VERSION)
otelcol: $(GOBIN)/vigil-otelcol
carbon: $(CARBON_VENV)/.installed

# remove_all_sd: no service-discovery plugins (cloud SDKs, Kubernetes client): measured from an empty
# build cache, 3.3 CPU-minutes instead of 8.9.
$(GOBIN)/.prometheus-$(PROMETHEUS_VERSION):
	@mkdir -p $(GOBIN)
	@cmd="go install -tags remove_all_sd github.com/prometheus/prometheus/cmd/prometheus@$(PROMETHEUS_VERSION)"; \
	echo "building Prometheus $(PROMETHEUS_VERSION) (once; a few minutes)"; echo "+ $$cmd" > .vigil/prometheus-install.log; \
	GOBIN=$(GOBIN) $$cmd >> .vigil/prometheus-install.log 2>&1 && touch $@ \
		|| echo "note: Prometheus unavailable (see .vigil/prometheus-install.log)"

$(GOBIN)/vigil-otelcol: $(OTELCOL_SOURCES)
	@mkdir -p $(GOBIN)
	@cmd="go build -trimpath -buildvcs=false -o $(GOBIN)/vigil-otelcol ."; \
	echo "building the OpenTelemetry Collector (tools/otelcol; once; a few minutes)"; \
	echo "+ cd tools/otelcol && $$cmd" > .vigil/otelcol-install.log; \
	(cd tools/otelcol && $$cmd) >> .vigil/otelcol-install.log 2>&1 \
		|| echo "note: OpenTelemetry Collector unavailable (see .vigil/otelcol-install.log)"

# carbon's setup.py installs under /opt/graphite unless GRAPHITE_NO_PREFIX is set.
$(CARBON_VENV)/.installed: requirements-carbon.lock
	@mkdir -p .vigil
	@cmd="$(CARBON_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-carbon.lock"; \
	echo "+ GRAPHITE_NO_PREFIX=True $$cmd" > .vigil/carbon-install.log; \
	{ test -x $(CARBON_VENV)/bin/python || $(PY) -m venv $(CARBON_VENV); } >> .vigil/carbon-install.log 2>&1 \
		&& GRAPHITE_NO_PREFIX=True $$cmd >> .vigil/carbon-install.log 2>&1 && touch $@ \
		|| echo "note: carbon unavailable (see .vigil/carbon-install.log)"

run: deps
	$(VIGIL) dev run --rules rules

test: deps helm registry-peer k8s-deps chromium salt receivers
	$(VENV)/bin/ruff check app tests benchmarks
	$(VENV)/bin/mypy
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
