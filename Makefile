# coreos_ec2.cluster: `make demo` tries it out on the local sandbox, `make test` runs the whole suite.
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export COREOS_EC2_SANDBOX_DIR ?= $(CURDIR)/.sandbox
# The nodes' Debian root file system, built once (about 200 MB); `make clean` removes it with .build.
export COREOS_EC2_IMAGE_CACHE ?= $(CURDIR)/.build/nodes
PLAYBOOK := $(BIN)/ansible-playbook
DEMO_VARS := -e cluster_name=demo -e cluster_size=3 -e instance_type=c4.large -e key_name=coreos-sandbox \
	-e cloud_config=./config/cloud-config.example -e '{"ssh_allowed_cidrs": ["127.0.0.1/32"]}'

.PHONY: setup setup-runtime demo test unit sanity lint integration bench sandbox sandbox-stop clean

setup:
	tools/setup.sh dev

setup-runtime:
	tools/setup.sh runtime

demo: setup-runtime
	@echo "==> Starting the sandbox (EC2 emulator, discovery service, node host; the first start builds the node image)"
	$(PLAYBOOK) playbooks/sandbox.yml
	@echo "==> Launching the 3-machine cluster 'demo' (each instance boots a node that runs its user data)"
	$(PLAYBOOK) playbooks/launch.yml $(DEMO_VARS)
	@echo "==> Waiting for etcd, flannel and the data volumes on every machine, then inspecting the cluster"
	$(PLAYBOOK) playbooks/ops.yml -e cluster_name=demo -e ops_action=inspect -e ops_probe_wait=180
	@echo "==> Deploying config/services.example.yml through fleet: hello@.service x3 (one per machine), beacon.service on every machine"
	$(PLAYBOOK) playbooks/deploy.yml -e cluster_name=demo -e @config/services.example.yml -e deploy_ssh_wait=120 -e deploy_fleet_wait=300
	@echo "==> fleetctl list-units on one machine (through the dynamic inventory playbooks/inventory/sandbox.aws_ec2.yml)"
	$(BIN)/ansible -i playbooks/inventory/sandbox.aws_ec2.yml 'cluster_demo[0]' -m ansible.builtin.raw -a \
	  'for i in $$(seq 60); do /opt/bin/fleetctl list-units --no-legend | awk "\$$3 != \"active\" || \$$4 != \"running\"" | grep -q . || break; sleep 2; done; /opt/bin/fleetctl list-units'
	@echo
	@echo "The demo cluster runs in the local sandbox (state in $(COREOS_EC2_SANDBOX_DIR))."
	@echo "Log in:   ssh -i $(COREOS_EC2_SANDBOX_DIR)/coreos-sandbox core@<private IP>   (e.g. etcdctl member list, fleetctl list-units)"
	@echo "Ask:      a machine running hello@N answers on port 808N: ssh ... core@<IP> 'bash -c \"cat </dev/tcp/127.0.0.1/8081\"'"
	@echo "Look:     export COREOS_EC2_SANDBOX_DIR=$(COREOS_EC2_SANDBOX_DIR)    (the sandbox make used; else ~/.cache/coreos_ec2/sandbox)"
	@echo "          .venv/bin/ansible-playbook playbooks/ops.yml -e cluster_name=demo -e ops_action=inspect"
	@echo "Clean up: .venv/bin/ansible-playbook playbooks/ops.yml -e cluster_name=demo -e ops_action=cleanup -e confirm=yes"
	@echo "          make sandbox-stop    (stops the sandbox; its emulator forgets the cluster, its nodes and volumes go)"
	@echo "          rm -rf $(COREOS_EC2_SANDBOX_DIR)    (also removes the sandbox key pair and discovery data)"

sandbox: setup-runtime
	$(PLAYBOOK) playbooks/sandbox.yml

sandbox-stop:
	@if [ -x $(PLAYBOOK) ]; then $(PLAYBOOK) playbooks/sandbox.yml -e sandbox_state=stopped; fi

test: setup
	$(MAKE) unit
	$(MAKE) sanity
	$(MAKE) lint
	$(MAKE) integration

unit:
	$(BIN)/pytest -q -p no:cacheprovider tests/unit

sanity:
	tools/sanity.sh

lint:
	tools/lint.sh

# The test nodes need root; where they cannot run they are skipped with the reason, except under CI, which
# sets COREOS_EC2_NODES_REQUIRED=1 so that they fail instead of silently going missing.
integration:
	$(BIN)/pytest -q -p no:cacheprovider tests/nodes tests/integration

bench: setup
	$(BIN)/python tests/bench/bench.py
	$(BIN)/python tests/bench/bench_deploy.py
	$(BIN)/python tests/bench/bench_boot.py

clean: sandbox-stop
	rm -rf .build .sandbox tests/output .ansible
