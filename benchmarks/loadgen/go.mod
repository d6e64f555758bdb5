module aifn.dev/benchmarks/loadgen

go 1.22
