# harden: build, test and demo from nothing. Everything the suite needs (the Python
# venvs of the emulators, pinned) is installed here.

PYTHON      ?= python3
PYTHON313   ?= $(shell ls -d $$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)/versions/3.13*/bin/python3.13 2>/dev/null | tail -1 || command -v python3.13)
CARGO       ?= cargo
MOTO_VENV   := .venv-moto
LS_VENV     := .venv-localstack
TOOLS_VENV  := .venv-tools
LS_VERSION  := 2026.3.0

CHROMIUM    ?= /usr/bin/chromium

.PHONY: all build test lint unit demo bench emulators moto localstack browser tools clean

all: build

build:
	$(CARGO) build --locked

## The Python emulators, each in its own venv with pinned versions.
emulators: moto localstack
moto: $(MOTO_VENV)/.installed
localstack: $(LS_VENV)/.installed

$(MOTO_VENV)/.installed: localstack/requirements-moto.txt
	rm -rf $(MOTO_VENV)
	$(PYTHON) -m venv $(MOTO_VENV)
	$(MOTO_VENV)/bin/pip install --quiet --disable-pip-version-check -r localstack/requirements-moto.txt
	touch $@

# LocalStack host mode needs Python 3.13 and the release's own pinned runtime requirements.
$(LS_VENV)/.installed: localstack/requirements-localstack-runtime.txt
	@test -n "$(PYTHON313)" || { echo "LocalStack needs Python 3.13: set PYTHON313=/path/to/python3.13" >&2; exit 1; }
	rm -rf $(LS_VENV)
	$(PYTHON313) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install --quiet --disable-pip-version-check -r localstack/requirements-localstack-runtime.txt
	$(LS_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps localstack-core==$(LS_VERSION)
	touch $@

## Test tools in their own venv, pinned: kubernetes-validate for the manifests in deploy/.
tools: $(TOOLS_VENV)/.installed

$(TOOLS_VENV)/.installed: deploy/requirements-tools.txt
	rm -rf $(TOOLS_VENV)
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet --disable-pip-version-check -r deploy/requirements-tools.txt
	touch $@

## Debian's Chromium, for the headless check of the HTML report (needs root, as CI has).
browser:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@test -x $(CHROMIUM) || { echo "Chromium is needed at $(CHROMIUM) for the HTML report test: apt-get install chromium, or set CHROMIUM=" >&2; exit 1; }

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## The whole suite: lint, unit tests, and integration tests against moto and LocalStack,
## which the tests start and stop themselves on free ports of 127.0.0.1.
## Every harden process the suite starts records the AWS calls it makes into RECORDED;
## least_privilege then checks them against `harden iam-policy` both ways.
RECORDED    := $(CURDIR)/target/recorded-calls

test: emulators tools browser lint
	rm -rf $(RECORDED)
	HARDEN_CHROMIUM=$(CHROMIUM) \
	HARDEN_KUBERNETES_VALIDATE=$(CURDIR)/$(TOOLS_VENV)/bin/kubernetes-validate \
	HARDEN_MOTO_SERVER=$(CURDIR)/$(MOTO_VENV)/bin/moto_server \
	HARDEN_LOCALSTACK_PYTHON=$(CURDIR)/$(LS_VENV)/bin/python \
	HARDEN_RECORD_CALLS=$(RECORDED) \
	$(CARGO) test --locked
	HARDEN_RECORD_CALLS=$(RECORDED) $(CARGO) test --locked --test least_privilege

unit:
	$(CARGO) test --locked --lib

## Seeds a deliberately non-compliant account in moto, then plans, applies and audits it.
demo: moto build
	bash localstack/demo.sh

## Figures for docs/benchmarks.md; the scaling chart lands in target/bench/ (PNG via Chromium).
bench: moto browser
	HARDEN_CHROMIUM=$(CHROMIUM) HARDEN_MOTO_SERVER=$(CURDIR)/$(MOTO_VENV)/bin/moto_server $(CARGO) bench --locked

clean:
	rm -rf $(MOTO_VENV) $(LS_VENV) $(TOOLS_VENV) .harden-emulators .harden-demo
	$(CARGO) clean
