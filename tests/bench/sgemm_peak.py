"""The machine's float32 GEMM peak as numpy's BLAS reaches it (square 2048, all cores): the
yardstick for `mnist bench`'s GFLOP/s. Usage: python sgemm_peak.py [repeats]. Prints the median
and best GFLOP/s."""
import sys
import time

import numpy as np

n = 2048
repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 15
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
a @ b  # warm-up: thread pool, caches
rates = []
for _ in range(repeats):
    start = time.perf_counter()
    a @ b
    rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
rates.sort()
print(f"sgemm_peak n={n} median_gflop_s={rates[len(rates) // 2]:.1f} best_gflop_s={rates[-1]:.1f} blas={np.__version__}")
