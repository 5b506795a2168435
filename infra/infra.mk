# Static checks of infra/ (included from the Makefile; uses $(PYTHON), $(BIN) and $(STAMP) from it).
#
# cfn-lint runs from the project venv (it comes with the `test` extra, and moto's CloudFormation
# needs it anyway). checkov lives in a venv of its own: its pins clash with apache-beam's.

INFRA_VENV ?= .venv-infra
INFRA_BIN := $(INFRA_VENV)/bin
INFRA_STAMP := $(INFRA_VENV)/.installed
INFRA_LOCK := requirements/infra.lock
CFN_TEMPLATES := infra/cloudformation/coexarchive.yaml

.PHONY: infra-lint infra-cfn-lint infra-checkov infra-venv

infra-lint: infra-cfn-lint infra-checkov

$(INFRA_STAMP): infra/infra.mk $(INFRA_LOCK)
	$(PYTHON) -m venv --clear $(INFRA_VENV)
	$(INFRA_BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(INFRA_LOCK)
	touch $@

infra-venv: $(INFRA_STAMP)

infra-cfn-lint: $(STAMP)
	$(BIN)/cfn-lint $(CFN_TEMPLATES)

# Every suppression is a `Metadata: checkov: skip:` entry beside its resource, with its reason.
# --skip-download: no calls home (this runs offline).
infra-checkov: $(INFRA_STAMP)
	$(INFRA_BIN)/checkov --quiet --compact --skip-download --framework cloudformation \
		$(foreach template,$(CFN_TEMPLATES),--file $(template))
