"""``make bench``: every benchmark, each measured against its own baseline in the same run."""

from __future__ import annotations

import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore", category=DeprecationWarning)

import cluster_state  # noqa: E402
import estimator  # noqa: E402
import fanout  # noqa: E402
import ibm  # noqa: E402
import listing  # noqa: E402
import local  # noqa: E402
import redis_cost  # noqa: E402
import results_memory  # noqa: E402
import scale  # noqa: E402
import usage  # noqa: E402

if __name__ == "__main__":
    local.main()
    print()
    scale.main()
    print()
    redis_cost.main()
    print()
    ibm.main()
    print()
    fanout.main()
    usage.main()
    print()
    estimator.main()
    print()
    results_memory.main()
    print()
    listing.main()
    print()
    cluster_state.main()
