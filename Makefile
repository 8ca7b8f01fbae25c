# multitenant — the two commands a newcomer needs:
#   make demo   build, install, start a throwaway cluster and run the psql tour
#   make test   every suite CI runs
# Both install what is missing first (scripts/prereqs.sh), so they work on a fresh
# Debian bookworm machine as root.

PG_CONFIG   ?= /usr/lib/postgresql/15/bin/pg_config
DEMO_PORT   ?= 25350
DEMO_DB     ?= multitenant_demo
PSQL        := $(dir $(PG_CONFIG))psql

.PHONY: prereqs build install lint test test-core test-pgrx test-regress test-integration \
        test-restore demo demo-stop bench clean

prereqs:
	@scripts/prereqs.sh

build: prereqs
	cargo build

install: prereqs
	@mkdir -p target
	cargo pgrx install --pg-config $(PG_CONFIG) >target/pgrx-install.log 2>&1 \
	  || { cat target/pgrx-install.log; exit 1; }

test: prereqs lint test-core test-pgrx test-regress test-integration test-upgrade test-restore
	@echo "make test: every suite passed"

lint: prereqs
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings

test-core:
	cargo test -p multitenant-core -p multitenant-client -p multitenant-cli --all-features

# #[pg_test]s run inside a cluster that cargo-pgrx starts as the postgres user.
test-pgrx: prereqs
	cargo pgrx test pg15 --runas postgres --pgdata "$$(scripts/cluster.sh workdir pgrx-test)"

test-regress: install
	scripts/regress.sh

test-integration: install
	scripts/integration.sh

# A database created at 0.1.0 (built from its commit) and updated equals a fresh install.
test-upgrade: install
	scripts/upgrade-test.sh

# pg_dump -Fc of a database with tenants restores, serially and with -j 4, keeping every row.
test-restore: install
	scripts/restore-test.sh

demo: install
	@scripts/cluster.sh start demo $(DEMO_PORT)
	@# The server reads migration folders itself, from a place the postgres user can read.
	@rm -rf "$$(scripts/cluster.sh dir demo)-drizzle" && cp -r examples/drizzle "$$(scripts/cluster.sh dir demo)-drizzle" \
	  && chmod -R a+rX "$$(scripts/cluster.sh dir demo)-drizzle"
	@$(PSQL) -X -q -h 127.0.0.1 -p $(DEMO_PORT) -U postgres -d postgres \
	  -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $(DEMO_DB) WITH (FORCE)" -c "CREATE DATABASE $(DEMO_DB)"
	@$(PSQL) -X -h 127.0.0.1 -p $(DEMO_PORT) -U postgres -d $(DEMO_DB) \
	  -v ON_ERROR_STOP=1 -v drizzle_dir="$$(scripts/cluster.sh dir demo)-drizzle" -f examples/tour.sql
	@echo
	@echo "The demo cluster is running. Connect with:"
	@echo "  $(PSQL) -h 127.0.0.1 -p $(DEMO_PORT) -U postgres -d $(DEMO_DB)"
	@echo "Stop it with: make demo-stop"

demo-stop:
	@scripts/cluster.sh stop demo

# Benchmarks are not part of `make test`; results go to docs/benchmarks.md.
bench: prereqs
	bench/run.sh migrate 100x5 1000x3
	bench/run.sh migrate --noop 10000
	bench/run.sh client 1000 10
	bench/run.sh drift 1000 10000

clean: demo-stop
	cargo clean
