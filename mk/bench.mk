##@ Benchmarks (local processes only: a throwaway PostgreSQL, one orchestrator, simulate agents on 127.0.0.1)

# Extra flags for bench/runtime_bench.py, e.g. BENCH_ARGS="--quick" (CI smoke) or "--agents 8 --tasks 20000".
BENCH_ARGS ?=
BENCH_RESULTS ?= $(REPO_ROOT)/bench-results

.PHONY: bench bench-runtime
bench: bench-runtime ## Run every benchmark

bench-runtime: ## Runtime throughput/latency/heartbeat bench -> bench-results/runtime.json (BENCH_ARGS=--quick)
	$(PYTHON) $(REPO_ROOT)/bench/runtime_bench.py --out $(BENCH_RESULTS)/runtime.json $(BENCH_ARGS)
