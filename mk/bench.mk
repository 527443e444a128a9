##@ Benchmarks (local processes only: a throwaway PostgreSQL, one orchestrator, simulate agents on 127.0.0.1)

# Extra flags for bench/runtime_bench.py, e.g. BENCH_ARGS="--quick" (CI smoke) or "--agents 8 --tasks 20000".
BENCH_ARGS ?=
BENCH_RESULTS ?= $(REPO_ROOT)/bench-results

.PHONY: bench bench-runtime bench-compare bench-peer-deps
bench: bench-runtime ## Run every benchmark

bench-runtime: ## Runtime throughput, latency, 1,000-agent and heartbeat bench -> bench-results/runtime.json (BENCH_ARGS=--quick)
	$(PYTHON) $(REPO_ROOT)/bench/runtime_bench.py --out $(BENCH_RESULTS)/runtime.json $(BENCH_ARGS)

# The peer queue: Debian's redis-server (root installs it when missing) and Celery from agent_image's `peer` extra,
# which the runtime image never installs.
bench-peer-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		[ "$$(id -u)" -eq 0 ] || { echo "redis-server missing: sudo apt-get install -y redis-server" >&2; exit 1; }; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }
	@$(PYTHON) -c 'import celery, redis' 2>/dev/null || $(PYTHON) -m pip install -q -e '$(REPO_ROOT)/agent_image[peer]'

bench-compare: bench-peer-deps ## The e2e no-op workload on the runtime and on Celery + Redis, one run -> bench-results/runtime.json (peer_* keys)
	$(PYTHON) $(REPO_ROOT)/bench/runtime_bench.py --out $(BENCH_RESULTS)/runtime.json --phases baseline,e2e,peer $(BENCH_ARGS)
