#!/usr/bin/env python3
"""Runs ../shared/bench/torch_mlp.py with its clock swapped for this
process's CPU time, so that its samples/s are samples per CPU-second, as
host/examples/train_cpu_time.rs reports tailor's: on a shared machine under
load, wall time mostly measures the other tenants.

    /tmp/torch-venv/bin/python scripts/torch-cpu-time.py --epochs 1 --no-test --threads 1 [--optimizer adam --shuffle]
"""
import os
import runpy
import sys
import time

time.perf_counter = time.process_time
script = os.environ.get("TORCH_MLP", os.path.join(os.path.dirname(__file__), "../../shared/bench/torch_mlp.py"))
sys.argv = [script] + sys.argv[1:]
runpy.run_path(script, run_name="__main__")
