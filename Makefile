# The project's interface: README, .ci/run and developers all use these targets.
# `make` alone prints this help, built from the `## ` comments.

SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian/Ubuntu packages the native stack and the tests use.
APT_PACKAGES := nginx-light gettext-base openssl wrk curl ca-certificates
# Only the PL/SQL syntax check needs these: node and npm run ../shared/tools/plsql-check.
TEST_APT_PACKAGES := nodejs npm
# The syntax checker of Oracle SQL and PL/SQL lives beside the project, not in it.
PLSQL_CHECK ?= $(abspath ../shared/tools/plsql-check/plsql-check)
PYTEST_ARGS ?=

# The CLIs talk to the native stack with its trainer user (make up writes .local/stack.env)
# unless MLFLOW_TRACKING_URI points elsewhere.
NATIVE_ENV = if [ -z "$${MLFLOW_TRACKING_URI:-}" ] && [ -f .local/stack.env ]; then . ./.local/stack.env; fi;

.PHONY: help
help: ## Show this help
	@echo "Credit-risk model serving: MLflow -> gunicorn -> nginx -> Oracle APEX"
	@echo
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  make %-18s %s\n", $$1, $$2}'
	@echo
	@echo "Quick start: make up, then make test."

$(STAMP): pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 (3.11+) is missing: apt-get install python3 python3-venv"; exit 1; }
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is needed, found $$(python3 --version)"; exit 1; }
	@[ -x $(PY) ] || python3 -m venv $(VENV) || { echo "cannot create $(VENV): apt-get install python3-venv"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(STAMP) ## Create .venv and install the Python packages

.PHONY: system-deps
system-deps: ## Install the Debian/Ubuntu packages (nginx, openssl, wrk) if missing
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  if ! command -v apt-get >/dev/null; then echo "missing:$$missing (no apt-get here: install them with your package manager)"; exit 1; fi; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null \
	    || { echo "could not install:$$missing; install them as root and re-run"; exit 1; }; \
	fi

.PHONY: plsql-check
plsql-check: venv test-system-deps ## Parse every SQL and PL/SQL file of apex/ with ../shared/tools/plsql-check (CI runs it)
	@[ -x "$(PLSQL_CHECK)" ] || { echo "plsql-check: $(PLSQL_CHECK) is not here: it lives beside the project in ../shared/tools (or set PLSQL_CHECK=/path/to/plsql-check)"; exit 1; }
	PLSQL_CHECK="$(PLSQL_CHECK)" $(PY) -m pytest -m plsql -p no:cacheprovider tests/unit/test_apex_sql.py

.PHONY: test-system-deps
test-system-deps: ## Install the Debian packages only the PL/SQL check needs (node and npm)
	@command -v npm >/dev/null || $(MAKE) --no-print-directory system-deps APT_PACKAGES="$(TEST_APT_PACKAGES)"

.PHONY: up
up: system-deps venv ## Start the native stack (MLflow, trainer, model server, gateway); prints the addresses
	@$(PY) -m stack.local up

.PHONY: down
down: ## Stop the native stack
	@[ -x $(PY) ] && $(PY) -m stack.local down || true

.PHONY: status
status: venv ## Show which services of the native stack are healthy
	@$(PY) -m stack.local status

.PHONY: certs
certs: ## Create the development CA and server certificate in .local/tls (TLS_HOSTNAME=... adds a SAN)
	@sh nginx/certs.sh .local/tls

.PHONY: compose-secrets
compose-secrets: venv ## Create the compose stack's passwords as files in .local/secrets/compose (never overwrites)
	@$(PY) -m common.secret_files generate .local/secrets/compose

.PHONY: keys
keys: venv ## Manage API keys: make keys ARGS="create|rotate NAME", "revoke ID", "list"
	@$(PY) nginx/keys.py $(or $(ARGS),list)

.PHONY: check-cert
check-cert: venv ## Check a served certificate chain: make check-cert HOST=ml.example.com [PORT=443 CA=file]
	@$(PY) nginx/check_cert.py $(HOST):$(or $(PORT),443) $(if $(CA),--ca $(CA))

.PHONY: apex
apex: venv ## Render the APEX kit for the promoted model (ARGS="--gateway-url https://ml.example.com")
	@$(NATIVE_ENV) $(PY) -m apex.render $(ARGS)

.PHONY: ui
ui: venv ## Print the MLflow UI address
	@$(PY) -c 'import os; from training.registry import DEFAULT_TRACKING_URI as uri; print("MLflow UI:", os.environ.get("MLFLOW_TRACKING_URI", uri))'

.PHONY: train
train: venv ## Train and register a model (ARGS="--classifier logreg" or "--data f.csv --target y")
	@$(NATIVE_ENV) $(PY) -m training.train $(ARGS)

.PHONY: promote
promote: venv ## Promote the newest version to @champion if better (ARGS="--version N" to roll back)
	@$(NATIVE_ENV) $(PY) -m training.promote $(ARGS)

.PHONY: monitor
monitor: venv ## Drift report: PSI of the decision log vs the training reference, to MLflow (ARGS="--window-hours 168")
	@$(NATIVE_ENV) $(PY) -m training.monitor $(ARGS)

.PHONY: compare
compare: venv ## Shadow report: @champion vs @challenger on the same requests of the decision log (ARGS="--window-hours 168")
	@$(NATIVE_ENV) $(PY) -m training.compare $(ARGS)

.PHONY: lint
lint: venv ## Run ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check training serving tests nginx apex bench common stack tracking oci

.PHONY: format
format: venv ## Format the Python code
	$(VENV)/bin/ruff format training serving tests nginx apex bench common stack tracking oci
	$(VENV)/bin/ruff check --fix .

.PHONY: audit
audit: venv ## Check the installed Python packages for known advisories (pip-audit; reviewed ignores: .ci/pip-audit-ignore.txt)
	@out=$$($(VENV)/bin/pip-audit --progress-spinner off --skip-editable \
	  $$(sed -n 's/^\([A-Za-z0-9][A-Za-z0-9-]*\).*/--ignore-vuln \1/p' .ci/pip-audit-ignore.txt) 2>&1); \
	status=$$?; echo "$$out"; \
	skipped=$$(printf '%s\n' "$$out" | grep -c 'could not be audited' || true); \
	if [ "$$skipped" -gt 0 ]; then \
	  echo "audit: INCOMPLETE: $$skipped package(s) could not be audited (the index gave no advisory data for their versions)"; exit 1; \
	fi; exit $$status

.PHONY: secret-scan
secret-scan: venv ## Scan the tree and the git history for secrets (detect-secrets; reviewed fixtures: .ci/secrets.baseline)
	@$(PY) .ci/secret_scan.py

TOOLS_VENV := .local/venv-tools

.PHONY: deploy-tools
deploy-tools: ## Install the deployment checkers (checkov, kubernetes-validate, OCI CLI) in .local/venv-tools
	@bash tests/deploy/install_tools.sh $(TOOLS_VENV)

PROMETHEUS_DIR := .local/prometheus

.PHONY: prometheus-tools promtool
prometheus-tools: ## Unpack promtool, Prometheus, Pushgateway, blackbox exporter (Debian's packages, not installed) into .local/prometheus
	@bash tests/deploy/install_prometheus.sh $(PROMETHEUS_DIR)
promtool: prometheus-tools

.PHONY: k8s-render
k8s-render: ## Print the rendered Kubernetes manifests (OVERLAY=oke|dev)
	kubectl kustomize k8s/overlays/$(or $(OVERLAY),oke)

.PHONY: oci-render
oci-render: venv ## Print the OCI Container Instance request (secrets as placeholders)
	$(PY) oci/render.py --settings oci/instance.env.example --placeholders

.PHONY: test-deploy
test-deploy: venv deploy-tools prometheus-tools ## Render and check k8s/ and oci/ offline, test the alert rules
	$(PY) -m pytest tests/deploy $(PYTEST_ARGS)

# The MLflow release before the pinned one, with the project's other dependencies: the upgrade
# test (tests/integration/test_mlflow_upgrade.py) builds a registry with it, then migrates it.
# 3.18.0 cannot be installed from PyPI yet (its mlflow-skinny/mlflow-tracing 3.18.0 are not
# published), so the pin is 3.17.2 and the previous release 3.16.1; bump both together.
MLFLOW_PREVIOUS ?= 3.16.1
PREVIOUS_VENV := .local/venv-mlflow-previous

.PHONY: mlflow-previous
mlflow-previous: $(PREVIOUS_VENV)/.installed-$(MLFLOW_PREVIOUS) ## Install the previous MLflow release (the upgrade test's) in .local/venv-mlflow-previous

$(PREVIOUS_VENV)/.installed-$(MLFLOW_PREVIOUS): pyproject.toml
	@rm -rf $(PREVIOUS_VENV) && python3 -m venv $(PREVIOUS_VENV)
	$(PREVIOUS_VENV)/bin/pip install --quiet "mlflow==$(MLFLOW_PREVIOUS)" \
	  $$(python3 images/requirements.py all | grep -v '^mlflow')
	@touch $@

.PHONY: test
test: system-deps venv deploy-tools prometheus-tools mlflow-previous ## Run the whole test suite (unit, integration against real processes)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## Run only the unit tests (no processes)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: bench
bench: system-deps venv ## Benchmark Flask, mlflow models serve, the model server and the gateway (~10 min; bench/README.md)
	$(PY) -m bench.run

.PHONY: bench-paired
bench-paired: system-deps venv ## What one setting costs: balance, reasons, decision log, shadow, paired rounds (~15 min)
	$(PY) -m bench.paired $(ARGS)

.PHONY: bench-steps
bench-steps: venv ## Where one request's time goes, step by step, in one process (ARGS="--rows 1")
	$(PY) -m bench.steps $(ARGS)

.PHONY: images
images: venv ## Build the four images with compose's names (IMAGE_PREFIX=..., IMAGE_TAG=...)
	@PY=$(PY) images/build.sh

.PHONY: test-containers
test-containers: venv ## Images, compose stack, Container Instance pod , k8s dev overlay under kube play (ENGINE=docker|podman)
	@PY=$(PY) ENGINE=$(or $(ENGINE),docker) tests/containers/run.sh

.PHONY: clean
clean: down ## Stop the stack and delete local state (.local/, mlruns/ contents)
	rm -rf .local
	find mlruns -mindepth 1 ! -name README.md -exec rm -rf {} +
